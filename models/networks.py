"""The networks: f-CLSWGAN generator and critic, D3GZSL teacher, student, OOD head and ε (CE-GZSL: models/cegzsl.py).

Shapes: B batch, D feature dim, A attribute dim, Z noise dim, S seen classes, C all classes,
E embedding dim, H hidden dim.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .cegzsl import ContrastiveEmbedding, model_kwargs


def normalize_attributes(values: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """Attribute rows (K, A) as G consumes them: ``l2`` (unit rows) or ``none``."""
    if norm == "l2":
        return F.normalize(values, dim=1)
    if norm == "none":
        return values
    raise ValueError(f"unknown attribute normalisation {norm!r}: use 'l2' or 'none'")


class Generator(nn.Module):
    """G([z, a]) → Linear H → LeakyReLU → Linear D → ReLU (Xian et al. 2018)."""

    def __init__(self, attr_dim: int, noise_dim: int, hidden_dim: int, feature_dim: int, slope: float = 0.2):
        super().__init__()
        self.noise_dim = noise_dim
        self.fc1 = nn.Linear(noise_dim + attr_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, feature_dim)
        self.slope = slope

    def forward(self, noise: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.fc1(torch.cat([noise, attributes], dim=1)), self.slope)  # (B, H)
        return F.relu(self.fc2(h))  # (B, D)

    def sample(self, attributes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Features for each row of ``attributes`` (B, A) with fresh noise z ~ N(0, I)."""
        z = torch.randn(attributes.shape[0], self.noise_dim, generator=generator,
                        device=attributes.device, dtype=attributes.dtype)  # (B, Z)
        return self(z, attributes)


class _LeakyReLUFirstOrder(torch.autograd.Function):
    """LeakyReLU whose backward is differentiable in the incoming gradient only: the slope mask is a constant
    of the double backward, as it is mathematically (the second derivative is 0 almost everywhere). Autograd's
    own LeakyReLU differentiates the mask too, into a zero gradient that it then carries through the layer
    below (two matrix products of zeros per gradient penalty). Same forward, backward and double-backward
    kernels as F.leaky_relu otherwise, so the values are bit for bit those of autograd's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.x, ctx.slope = x.detach(), slope  # not save_for_backward: no gradient path back into x's mask
        return F.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return torch.ops.aten.leaky_relu_backward(grad, ctx.x, ctx.slope, False), None


class Critic(nn.Module):
    """WGAN critic D([x, a]) → Linear H → LeakyReLU → Linear 1."""

    def __init__(self, attr_dim: int, hidden_dim: int, feature_dim: int, slope: float = 0.2):
        super().__init__()
        self.fc1 = nn.Linear(feature_dim + attr_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 1)
        self.slope = slope

    def forward(self, features: torch.Tensor, attributes: torch.Tensor, first_order: bool = False) -> torch.Tensor:
        """Scores (B,). ``first_order``: for the gradient penalty, whose double backward then does no work on the
        activation's (zero) second derivative (``_LeakyReLUFirstOrder``); the same values either way."""
        pre = self.fc1(torch.cat([features, attributes], dim=1))  # (B, H)
        h = _LeakyReLUFirstOrder.apply(pre, self.slope) if first_order else F.leaky_relu(pre, self.slope)
        return self.fc2(h).squeeze(1)  # (B,)


class EmbeddingClassifier(nn.Module):
    """C ∘ E: E = Linear D→E + ReLU, C = Linear E→K. Used for the teacher (K = S) and student (K = C).

    (Not the app's ``dkgzsl_app.classify.Classifier``, which wraps a whole bundle for photos.)
    """

    def __init__(self, feature_dim: int, embed_dim: int, num_outputs: int):
        super().__init__()
        self.embed = nn.Linear(feature_dim, embed_dim)
        self.head = nn.Linear(embed_dim, num_outputs)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.embed(x))  # (B, E)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (embedding (B, E), logits (B, K))."""
        e = self.embedding(x)
        return e, self.head(e)


class LearnableSigmoid(nn.Module):
    """ε(s) = σ(w (s + b)): maps the teacher's OOD score to an ID-ness c ∈ (0, 1)."""

    def __init__(self, weight: float = 10.0, bias: float = -0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(float(weight)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.weight * (s + self.bias))


class ZSLModel(nn.Module):
    """All trainable parts of a generative GZSL model with the D3GZSL unified classifier: the ``d3gzsl``
    method (models/methods/d3gzsl.py) and the base of ``dkgzsl``.

    Buffers carry what inference needs besides weights: the class attribute matrix and the
    feature scaling fitted on the training features.

    ``ce_dims`` (embed, proj, comparator widths) adds CE-GZSL's embedding net ``contrastive``
    (models/cegzsl.py); the student then reads h = E(v) (``student_features``), the teacher still v.
    None (f-CLSWGAN) builds exactly the networks of before.
    """

    method = "d3gzsl"
    feature_kind = "pooled"  # consumes pooled backbone features (B, D)

    def __init__(self, feature_dim: int, attr_dim: int, num_seen: int, num_classes: int,
                 noise_dim: int, hidden_dim: int, critic_hidden_dim: int, embed_dim: int,
                 slope: float = 0.2, ce_dims: tuple[int, int, int] | None = None):
        super().__init__()
        self.generator = Generator(attr_dim, noise_dim, hidden_dim, feature_dim, slope)
        self.critic = Critic(attr_dim, critic_hidden_dim, feature_dim, slope)
        self.teacher = EmbeddingClassifier(feature_dim, embed_dim, num_seen)  # φ = C_o ∘ E_o
        student_in = ce_dims[0] if ce_dims else feature_dim  # CE-GZSL: ψ reads h (B, H)
        self.student = EmbeddingClassifier(student_in, embed_dim, num_classes)  # ψ = C_s ∘ E_s
        self.ood_head = nn.Linear(num_classes, 2)  # H: softmax ψ(x) → ĥ
        self.epsilon = LearnableSigmoid()
        self.generator_kind = "ce-gzsl" if ce_dims else "clswgan"
        self.contrastive = ContrastiveEmbedding(feature_dim, attr_dim, *ce_dims, slope) if ce_dims else None
        self.register_buffer("class_attributes", torch.zeros(num_classes, attr_dim))  # (C, A), as given
        self.register_buffer("feature_min", torch.zeros(feature_dim))  # (D,)
        self.register_buffer("feature_scale", torch.ones(feature_dim))  # (D,)

    @classmethod
    def from_config(cls, config) -> "ZSLModel":
        if config.options:
            raise ValueError(f"d3gzsl takes no options, got {', '.join(sorted(config.options))}")
        return cls(config.feature_dim, config.attr_dim, config.num_seen, config.num_classes,
                   config.generator.noise_dim, config.generator.hidden_dim,
                   config.generator.critic_hidden_dim, config.head.embed_dim,
                   config.generator.leaky_slope, **model_kwargs(config.generator))

    def normalized_attributes(self, norm: str = "l2") -> torch.Tensor:
        """Class attribute vectors (C, A) as G consumes them."""
        return normalize_attributes(self.class_attributes, norm)

    def scale_features(self, raw: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, D) (or (B, R, D) regions) → the scale G and ψ work in (the training scaling)."""
        return (raw - self.feature_min) * self.feature_scale

    def visual(self, raw: torch.Tensor) -> torch.Tensor:
        """The feature v (B, D) that generation and classification work in, for raw backbone features."""
        return self.scale_features(raw)

    def student_features(self, v: torch.Tensor) -> torch.Tensor:
        """What the unified classifier reads for features v (B, D) in v-space, real or generated: v itself
        (f-CLSWGAN), or CE-GZSL's embedding h = E(v) (B, H)."""
        return v if self.contrastive is None else self.contrastive.embedding(v)

    def attribute_scores(self, raw: torch.Tensor) -> torch.Tensor | None:
        """The model's own attribute read-out (B, A), or None: D3GZSL has none."""
        return None

    def options_dict(self) -> dict:
        """The method's options as a bundle records them (``config.options``): D3GZSL has none."""
        return {}

    def training_only_parts(self) -> tuple[str, ...]:
        """Sub-modules that classify, evaluate, add-class, open-set scoring and explanations never read: what a
        slim bundle leaves out (models/parts.py). The critic, the teacher, the OOD head H and ε; with CE-GZSL
        its projection and comparator (the student reads only E's embedding h). G stays: add-class and the
        ``prototype`` open-set score generate features."""
        parts = ("critic", "teacher", "ood_head", "epsilon")
        if self.contrastive is not None:
            parts += ("contrastive.project", "contrastive.compare1", "contrastive.compare2")
        return parts

    def class_scores(self, raw: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        """Unified-classifier probabilities over all classes (B, C) for raw backbone features."""
        _, logits = self.student(self.student_features(self.visual(raw)))
        return torch.softmax(logits / tau, dim=1)

    open_set_default = "prototype"  # the open-set score `train` fits a threshold for (models/openset.py)

    def open_set_scores(self, raw: torch.Tensor, tau: float = 1.0, attribute_norm: str = "l2") -> dict:
        """Open-set scores (B,) for raw backbone features, higher = more like the model's classes: msp,
        max_logit and energy of the unified classifier, and ``prototype``, the cosine of v to the nearest
        class's mean generated feature (models/openset.py)."""
        return self.scores_with_open_set(raw, tau, attribute_norm)[1]

    def scores_with_open_set(self, raw: torch.Tensor, tau: float = 1.0, attribute_norm: str = "l2"):
        """(``class_scores``, ``open_set_scores``) from one forward pass (what classify needs per batch)."""
        from .openset import generated_prototypes, logit_scores, nearest_cosine

        v = self.visual(raw)
        _, logits = self.student(self.student_features(v))
        out = logit_scores(logits, tau)
        out["prototype"] = nearest_cosine(v, generated_prototypes(self, attribute_norm))
        return torch.softmax(logits / tau, dim=1), out
