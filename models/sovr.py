"""SOVR, semantic-oriented visual refinement (DKGZSL): FDE denoising + ARA attribute-region attention.

Works on region features (B, R, C): a ResNet 7×7×C grid flattened to R = 49 regions, or ViT patch
tokens, already scaled to about [0, 1] per channel. Shapes: B batch, R regions, C channels,
A attributes, K classes, d attention dim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MASKS = ("soft", "topk")


class FDE(nn.Module):
    """Feature denoising encoder: a per-region mask from additive attention against the global token.

    s_i = q·tanh(W_r r_i + W_g g) + b, with g the mean region; the mask is m = σ(s) ("soft") or σ(s) on
    the ``topk`` highest scores and 0 elsewhere ("topk"). refined r_i = m_i r_i. At initialisation q is
    small and b = 0.5, so every m ≈ σ(0.5) ≈ 0.62: nothing is suppressed before training.
    """

    def __init__(self, dim: int, attn_dim: int = 128, mask: str = "soft", topk: int = 0):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"unknown FDE mask {mask!r}: use 'soft' or 'topk'")
        if mask == "topk" and int(topk) < 1:
            raise ValueError(f"FDE mask 'topk' needs topk >= 1 (the regions kept), got {topk}")
        self.mask = mask
        self.topk = int(topk)
        self.region_proj = nn.Linear(dim, attn_dim, bias=False)  # W_r
        self.global_proj = nn.Linear(dim, attn_dim)  # W_g (its bias is the additive-attention bias)
        self.query = nn.Parameter(torch.randn(attn_dim) * (0.1 / math.sqrt(attn_dim)))  # q: small
        self.bias = nn.Parameter(torch.tensor(0.5))  # b: σ(0.5) ≈ 0.62 at the start

    def scores(self, regions: torch.Tensor) -> torch.Tensor:
        """Region scores s (B, R) for regions (B, R, C)."""
        g = regions.mean(1)  # (B, C)
        e = torch.tanh(self.region_proj(regions) + self.global_proj(g).unsqueeze(1))  # (B, R, d)
        return e @ self.query + self.bias  # (B, R)

    def forward(self, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Regions (B, R, C) → (refined m_i r_i (B, R, C), mask weights m (B, R) in [0, 1])."""
        s = self.scores(regions)  # (B, R)
        m = torch.sigmoid(s)  # (B, R)
        if self.mask == "topk":
            n_regions = regions.shape[1]
            if self.topk > n_regions:
                raise ValueError(f"FDE topk = {self.topk} but the input has only {n_regions} regions: "
                                 f"use topk between 1 and {n_regions}")
            keep = torch.zeros_like(m).scatter(1, s.topk(self.topk, dim=1).indices, 1.0)  # (B, R) 0/1
            m = m * keep
        return m.unsqueeze(-1) * regions, m


class ARA(nn.Module):
    """Attribute-region attention: one learned query per attribute attends over the regions.

    attention = softmax_R(Q Kᵀ/√d + log(w + 1e-6)) with K = W_k regions and w the optional FDE weights
    (suppressed regions get attended less); local = attention · regions; score_a = ⟨local_a, W_s[a]⟩ + b_s[a].
    """

    def __init__(self, dim: int, num_attributes: int, attn_dim: int = 128):
        super().__init__()
        self.attn_dim = attn_dim
        self.queries = nn.Parameter(torch.randn(num_attributes, attn_dim))  # Q (A, d)
        self.key_proj = nn.Linear(dim, attn_dim, bias=False)  # W_k (a key bias would cancel in the softmax)
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's default range, one read-out row per attribute
        self.score_weight = nn.Parameter(torch.empty(num_attributes, dim).uniform_(-bound, bound))  # W_s (A, C)
        self.score_bias = nn.Parameter(torch.empty(num_attributes).uniform_(-bound, bound))  # b_s (A,)

    def forward(self, regions: torch.Tensor, weights: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Regions (B, R, C), weights (B, R) or None → (local (B, A, C), scores (B, A), attention (B, A, R))."""
        keys = self.key_proj(regions)  # (B, R, d)
        logits = torch.einsum("ad,brd->bar", self.queries, keys) / math.sqrt(self.attn_dim)  # (B, A, R)
        if weights is not None:
            logits = logits + torch.log(weights + 1e-6).unsqueeze(1)  # (B, 1, R) broadcast over A
        attention = torch.softmax(logits, dim=-1)  # (B, A, R), rows sum to 1
        local = torch.bmm(attention, regions)  # (B, A, C)
        scores = torch.einsum("bac,ac->ba", local, self.score_weight) + self.score_bias  # (B, A)
        return local, scores, attention


@dataclass
class SOVROutput:
    """What SOVR returns: the refined feature and, where the parts are on, their diagnostics.

    v (B, C); attribute_scores (B, A) (ARA on); region_weights (B, R) (FDE on); attention (B, A, R) (ARA on).
    """
    v: torch.Tensor
    attribute_scores: torch.Tensor | None = None
    region_weights: torch.Tensor | None = None
    attention: torch.Tensor | None = None


class SOVR(nn.Module):
    """FDE and ARA pooled into one refined visual feature v (B, C), the space G and ψ work in.

    v = Σ m_i r_i / (Σ m_i + 1e-6) with FDE, else the mean region; with ARA, v = (v + mean_a local_a) / 2,
    where ARA attends over the unmasked regions with the FDE weights as a log-prior. Both off: the mean.
    """

    def __init__(self, dim: int, num_attributes: int, attn_dim: int = 128, fde: bool = True,
                 ara: bool = True, mask: str = "soft", topk: int = 0):
        super().__init__()
        self.fde = FDE(dim, attn_dim, mask, topk) if fde else None
        self.ara = ARA(dim, num_attributes, attn_dim) if ara else None

    def forward(self, regions: torch.Tensor) -> SOVROutput:
        """Regions (B, R, C) → SOVROutput."""
        weights = None
        if self.fde is not None:
            refined, weights = self.fde(regions)  # (B, R, C), (B, R)
            v = refined.sum(1) / (weights.sum(1, keepdim=True) + 1e-6)  # (B, C)
        else:
            v = regions.mean(1)  # (B, C)
        if self.ara is None:
            return SOVROutput(v=v, region_weights=weights)
        local, scores, attention = self.ara(regions, weights)  # (B, A, C), (B, A), (B, A, R)
        v = (v + local.mean(1)) / 2
        return SOVROutput(v=v, attribute_scores=scores, region_weights=weights, attention=attention)


def attribute_logits(scores: torch.Tensor, class_attributes: torch.Tensor) -> torch.Tensor:
    """Compatibility logits (B, K) = predicted attribute scores (B, A) @ class attributes (K, A)ᵀ (MSDN)."""
    return scores @ class_attributes.t()
