"""CE-GZSL (Han et al., CVPR 2021) as a generator choice: the embedding net, its comparator and its two losses.

CE-GZSL is f-CLSWGAN's generator and critic plus an embedding net E that maps a visual feature x (B, D) to an
embedding h = ReLU(W₁x) (B, H) and a projection z = l2norm(W₂h) (B, P). E is trained on real seen features
with two contrastive losses, and G receives the same losses through its fake features:

* instance level (``instance_contrastive_loss``): supervised contrastive loss on z, positives = other samples
  of the same class (temperature 0.1);
* class level (``class_contrastive_loss``): a comparator F([h, a]) → score for every seen class's attribute
  vector a; cross-entropy of the scores / temperature (0.1) against the sample's class.

In dkgzsl it is not a method of its own but a generator under a method (``d3gzsl``, ``dkgzsl``): the bundle's
``config.generator.kind`` says ``ce-gzsl`` and ``generator.embed_dim``/``proj_dim``/``comparator_dim`` give the
widths. The method's unified classifier (the student ψ) then reads h = E(v) instead of v, as CE-GZSL's final
classifier does; the teacher φ keeps reading v (trainer/cegzsl.py says why).

Shapes: B batch, D feature dim, A attribute dim, H embedding dim (h), P projection dim (z), F comparator hidden
dim, S seen classes.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

GENERATORS = ("clswgan", "ce-gzsl")  # the generator kinds a bundle's config.generator.kind may name


class ContrastiveEmbedding(nn.Module):
    """E: x → (h = ReLU(embed(x)), z = l2norm(project(h))), and the comparator F([h, a]) → score."""

    def __init__(self, feature_dim: int, attr_dim: int, embed_dim: int, proj_dim: int, comparator_dim: int,
                 slope: float = 0.2):
        super().__init__()
        self.embed = nn.Linear(feature_dim, embed_dim)
        self.project = nn.Linear(embed_dim, proj_dim)
        self.compare1 = nn.Linear(embed_dim + attr_dim, comparator_dim)
        self.compare2 = nn.Linear(comparator_dim, 1)
        self.slope = slope

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """h (B, H): what the unified classifier reads."""
        return F.relu(self.embed(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h (B, H), z (B, P) with unit rows)."""
        h = self.embedding(x)
        return h, F.normalize(self.project(h), dim=1)

    def compare(self, h: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """Comparator scores (B, K) of every embedding h (B, H) against every class attribute row (K, A).

        F's first layer on [h, a] is W_h h + W_a a + b, so it is computed as one (B, F) and one (K, F) product
        broadcast to (B, K, F): the same numbers as concatenating every pair, without the (B·K, H + A) copy."""
        w_h, w_a = self.compare1.weight.split([h.shape[1], attributes.shape[1]], dim=1)  # (F, H), (F, A)
        pair = (h @ w_h.T)[:, None, :] + (attributes @ w_a.T + self.compare1.bias)[None, :, :]  # (B, K, F)
        return self.compare2(F.leaky_relu(pair, self.slope)).squeeze(2)  # (B, K)


def instance_contrastive_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) on unit rows z (N, P) with labels (N,).

    For anchor i: −mean over positives p (same label, p ≠ i) of log softmax_j≠i(zᵢ·zⱼ / t)[p]; anchors without
    a positive are left out (CE-GZSL's "clear" variant), and the loss is the mean over the others (0 when no
    anchor has a positive)."""
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))  # (N, N), self-pairs excluded
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)  # (N, N)
    pos = (labels[:, None] == labels[None, :]) & ~eye  # (N, N)
    n_pos = pos.sum(1)  # (N,)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp_min(1)  # (N,)
    return per_anchor[has].mean()


def class_contrastive_loss(scores: torch.Tensor, targets: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Class-level loss: cross-entropy of comparator scores (B, K) / t against each sample's class (B,)."""
    return F.cross_entropy(scores / temperature, targets)


def model_kwargs(generator_config) -> dict:
    """What a method's model takes for a bundle's GeneratorConfig: nothing for ``clswgan`` (the networks as
    before), ``ce_dims`` (embed, proj, comparator widths) for ``ce-gzsl``. ValueError for another kind."""
    kind = getattr(generator_config, "kind", "clswgan")
    if kind == "clswgan":
        return {}
    if kind == "ce-gzsl":
        dims = (generator_config.embed_dim, generator_config.proj_dim, generator_config.comparator_dim)
        if min(dims) < 1:
            raise ValueError(f"generator ce-gzsl needs positive embed_dim, proj_dim and comparator_dim, got {dims}")
        return {"ce_dims": dims}
    raise ValueError(f"unknown generator kind {kind!r}; dkgzsl knows {', '.join(GENERATORS)}")
