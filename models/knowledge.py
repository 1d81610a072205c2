"""DKGZSL knowledge guidance: KTN (attributes → hierarchical visual knowledge), MFU (fusion), the generator.

Shapes: B batch, K classes, A attribute dim, Z noise dim, H generator hidden dim, D feature dim.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


class KTN(nn.Module):
    """Knowledge transfer network: a → k1 = LeakyReLU(W1 a) (hidden level), k2 = ReLU(W2 k1) (feature level).

    k2 is trained (by the trainer) to reconstruct the real refined features of the class.
    """

    def __init__(self, attr_dim: int, hidden_dim: int, feature_dim: int, slope: float = 0.2):
        super().__init__()
        self.fc1 = nn.Linear(attr_dim, hidden_dim)  # W1
        self.fc2 = nn.Linear(hidden_dim, feature_dim)  # W2
        self.slope = slope

    def forward(self, attributes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attributes (K, A) → (k1 (K, H), k2 (K, D))."""
        k1 = F.leaky_relu(self.fc1(attributes), self.slope)  # (K, H)
        return k1, F.relu(self.fc2(k1))  # (K, D)


class MFU(nn.Module):
    """Meta-fusion unit: out = h + gate ⊙ LayerNorm(k), gate = σ(w_h ⊙ h + w_k ⊙ n + b), all channel-wise.

    5·dim parameters (LayerNorm affine, w_h, w_k, b), no dim×dim matrix. w_h = w_k = 0 and
    b = logit(0.2) at the start, so the gate is 0.2 everywhere: knowledge enters gently.
    """

    GATE_INIT = 0.2

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.w_h = nn.Parameter(torch.zeros(dim))
        self.w_k = nn.Parameter(torch.zeros(dim))
        self.b = nn.Parameter(torch.full((dim,), math.log(self.GATE_INIT / (1 - self.GATE_INIT))))

    def gate(self, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The gate (B, dim) in (0, 1) for layer activations h (B, dim) and knowledge k (B, dim)."""
        return self._gate(h, self.norm(k))

    def _gate(self, h: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.w_h * h + self.w_k * n + self.b)  # (B, dim)

    def forward(self, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """h (B, dim), k (B, dim) → h + gate ⊙ LayerNorm(k) (B, dim)."""
        n = self.norm(k)  # (B, dim)
        return h + self._gate(h, n) * n


class KnowledgeGenerator(nn.Module):
    """G([z, a]) with KTN knowledge fused into both layers; the public interface of networks.Generator.

    k1, k2 = KTN(a); h = LeakyReLU(MFU1(fc1([z, a]), k1)); x = ReLU(MFU2(fc2(h), k2)).
    """

    def __init__(self, attr_dim: int, noise_dim: int, hidden_dim: int, feature_dim: int, slope: float = 0.2,
                 ktn_hidden: int | None = None):
        super().__init__()
        if ktn_hidden is not None and ktn_hidden != hidden_dim:
            # k1 is added to G's hidden layer, so the KTN's hidden level must have G's hidden size
            raise ValueError(f"ktn_hidden = {ktn_hidden} must equal the generator's hidden_dim = {hidden_dim} "
                             f"(or be None): the KTN's first level fuses into G's hidden layer")
        self.noise_dim = noise_dim
        self.fc1 = nn.Linear(noise_dim + attr_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, feature_dim)
        self.ktn = KTN(attr_dim, hidden_dim, feature_dim, slope)
        self.mfu1 = MFU(hidden_dim)
        self.mfu2 = MFU(feature_dim)
        self.slope = slope

    @torch.no_grad()
    def close_fusion(self) -> None:
        """Zero both MFUs' LayerNorm gains, so fusion adds exactly 0 until training opens it (their gradients
        are not 0): G then computes its own two layers alone, e.g. a map written into them (g_init_ridge)."""
        for mfu in (self.mfu1, self.mfu2):
            mfu.norm.weight.zero_()

    def knowledge(self, attributes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The KTN's (k1 (B, H), k2 (B, D)) for attributes (B, A)."""
        return self.ktn(attributes)

    def forward(self, noise: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """Noise (B, Z), attributes (B, A) → features (B, D)."""
        k1, k2 = self.ktn(attributes)  # (B, H), (B, D)
        h = F.leaky_relu(self.mfu1(self.fc1(torch.cat([noise, attributes], dim=1)), k1), self.slope)  # (B, H)
        return F.relu(self.mfu2(self.fc2(h), k2))  # (B, D)

    def sample(self, attributes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Features for each row of ``attributes`` (B, A) with fresh noise z ~ N(0, I)."""
        z = torch.randn(attributes.shape[0], self.noise_dim, generator=generator,
                        device=attributes.device, dtype=attributes.dtype)  # (B, Z)
        return self(z, attributes)
