"""MSDN (Chen et al., CVPR 2022): mutually semantic distillation on region features, the plug-in.

An embedding method: no generator. Region features F (B, R, C) (min-max scaled as every method scales its
features, then each region L2-normalised over channels, as the authors' code does) meet one learned
embedding v_a (d,) per attribute in two sub-nets:

* attribute → visual: each attribute attends over the regions (softmax_R of v_aᵀ W₂ f_r) → an
  attribute-based visual feature F_a = Σ_r α_ar f_r (B, A, C) and the attribute score
  s¹_a = Σ_r α_ar v_aᵀ W₁ f_r;
* visual → attribute: each region attends over the attribute embeddings (softmax_A of v_aᵀ W₄ f_r) → a
  visual-based attribute feature u_r = Σ_a β_ra v_a (B, R, d) and the attribute score
  s²_a = Σ_r β_ra f_rᵀ W₃ v_a.

Each sub-net scores class k by compatibility with its L2-normalised attribute vector: logits = s ā_kᵀ. At
inference the two are fused, s = (1 − w) s¹ + w s² (``msdn_fuse`` w; the authors evaluate with 0.9/0.1),
and ``class_scores`` is softmax(s Āᵀ / τ) over every row of the ``class_attributes`` buffer: the model scores
any attribute vector directly, so a class is added by appending its row (``classes_from_attributes``). GZSL
calibration is the app's, as for every method: γ is subtracted from seen classes' probabilities.

The attribute embeddings are learned from a random start (unit rows); initialising them from word vectors
of the attribute names (the paper's GloVe) is not implemented. Training (semantic distillation between the
sub-nets): ``trainer/msdn.py``. MSDN++ (``msdnpp.py``) has the same networks and adds causal attention in
training; ``forward`` takes the counterfactual attention it needs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

from ..networks import normalize_attributes

COUNTERFACTUALS = ("uniform", "random")


@dataclass
class Options:
    """MSDN's own settings, written into a bundle's ``config.options`` (names = TrainConfig fields)."""

    attr_embed_dim: int = 300  # d: width of the learned attribute embeddings (the paper's GloVe width)
    msdn_fuse: float = 0.1  # w: share of the visual→attribute sub-net in the fused prediction

    def validate(self) -> None:
        if self.attr_embed_dim < 1:
            raise ValueError("attr_embed_dim must be at least 1")
        if not 0.0 <= self.msdn_fuse <= 1.0:
            raise ValueError(f"msdn_fuse must lie in [0, 1], not {self.msdn_fuse}")

    def to_dict(self) -> dict:
        return asdict(self)


class MSDNOutput(NamedTuple):
    """Both sub-nets' attribute scores (B, A) and their attention: α (B, A, R) over regions per attribute,
    β (B, A, R) over attributes per region (each column sums to 1)."""

    s1: torch.Tensor
    s2: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    local: torch.Tensor  # (B, A, C) attribute-based visual features F_a


class MSDNModel(nn.Module):
    """The two sub-nets over region features, and the buffers inference needs (class attributes, scaling).

    Shapes: B batch, R regions, C channels, A attributes, d attribute-embedding width, K classes.
    """

    method = "msdn"
    feature_kind = "regions"
    classes_from_attributes = True  # class_scores reads every row of class_attributes: add-class appends rows

    def __init__(self, feature_dim: int, attr_dim: int, num_classes: int, options: Options | None = None):
        super().__init__()
        self.options = opts = options or Options()
        opts.validate()
        c, a, d = feature_dim, attr_dim, opts.attr_embed_dim
        self.attr_embed = nn.Parameter(F.normalize(torch.randn(a, d), dim=1))  # V (A, d), unit rows
        # score maps start random (scores O(1) for unit regions), attention maps at 0 (uniform attention),
        # as in the authors' initialisation
        self.w_score_av = nn.Parameter(torch.randn(d, c))  # W₁ (d, C)
        self.w_attn_av = nn.Parameter(torch.zeros(d, c))  # W₂ (d, C)
        self.w_score_va = nn.Parameter(torch.randn(c, d))  # W₃ (C, d)
        self.w_attn_va = nn.Parameter(torch.zeros(d, c))  # W₄ (d, C)
        self.register_buffer("class_attributes", torch.zeros(num_classes, attr_dim))  # (K, A), as given
        self.register_buffer("feature_min", torch.zeros(feature_dim))  # (C,)
        self.register_buffer("feature_scale", torch.ones(feature_dim))  # (C,)

    @classmethod
    def from_config(cls, config) -> "MSDNModel":
        if config.feature_kind != "regions":
            raise ValueError(f"{cls.method} consumes region features, but the config says {config.feature_kind!r}")
        return cls(config.feature_dim, config.attr_dim, config.num_classes, Options(**config.options))

    # ---- shared plumbing ---------------------------------------------------------------------------------
    def normalized_attributes(self, norm: str = "l2") -> torch.Tensor:
        """Class attribute vectors (K, A) as the compatibility uses them."""
        return normalize_attributes(self.class_attributes, norm)

    def scale_features(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw regions (B, R, C) → the training scaling (min-max per channel)."""
        return (raw.float() - self.feature_min) * self.feature_scale

    def regions(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw regions (B, R, C) → scaled, unit-norm regions (B, R, C)."""
        return F.normalize(self.scale_features(raw), dim=-1)

    # ---- the two sub-nets --------------------------------------------------------------------------------
    def forward(self, raw: torch.Tensor, counterfactual: str | None = None,
                generator: torch.Generator | None = None) -> MSDNOutput:
        """Both sub-nets on raw regions (B, R, C). ``counterfactual`` replaces the learned attention of both
        (MSDN++): "uniform" (1/R over regions, 1/A over attributes) or "random" (softmax of N(0, 1) logits
        drawn from ``generator``); the score maps stay the learned ones."""
        f = self.regions(raw)  # (B, R, C)
        v = self.attr_embed  # (A, d)
        score_av = torch.einsum("brc,ac->bar", f, v @ self.w_score_av)  # (B, A, R) v_aᵀ W₁ f_r
        score_va = torch.einsum("brc,ac->bar", f, (self.w_score_va @ v.t()).t())  # (B, A, R) f_rᵀ W₃ v_a
        if counterfactual is None:
            alpha = torch.softmax(torch.einsum("brc,ac->bar", f, v @ self.w_attn_av), dim=2)  # (B, A, R) over R
            beta = torch.softmax(torch.einsum("brc,ac->bar", f, v @ self.w_attn_va), dim=1)  # (B, A, R) over A
        elif counterfactual == "uniform":
            b, a, r = score_av.shape
            alpha = score_av.new_full((b, a, r), 1.0 / r)
            beta = score_av.new_full((b, a, r), 1.0 / a)
        elif counterfactual == "random":
            alpha = torch.softmax(torch.randn(score_av.shape, generator=generator, device=f.device), dim=2)
            beta = torch.softmax(torch.randn(score_av.shape, generator=generator, device=f.device), dim=1)
        else:
            raise ValueError(f"unknown counterfactual attention {counterfactual!r}: use "
                             f"{' or '.join(COUNTERFACTUALS)}")
        s1 = (alpha * score_av).sum(2)  # (B, A)
        s2 = (beta * score_va).sum(2)  # (B, A)
        local = torch.bmm(alpha, f)  # (B, A, C) attribute-based visual features
        return MSDNOutput(s1, s2, alpha, beta, local)

    def visual_attribute_features(self, raw: torch.Tensor) -> torch.Tensor:
        """The visual→attribute sub-net's features u_r = Σ_a β_ra v_a (B, R, d)."""
        return torch.einsum("bar,ad->brd", self(raw).beta, self.attr_embed)

    def compatibility(self, scores: torch.Tensor, attributes: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K) of attribute scores (B, A) against class vectors (K, A) (the model's when None),
        L2-normalised as the model was trained."""
        a = self.normalized_attributes() if attributes is None else normalize_attributes(attributes)
        return scores @ a.t()

    def fuse(self, out: MSDNOutput) -> torch.Tensor:
        """The fused attribute scores (B, A) inference uses."""
        w = self.options.msdn_fuse
        return (1.0 - w) * out.s1 + w * out.s2

    # ---- the model interface (models/methods) ------------------------------------------------------------
    def attribute_scores(self, raw: torch.Tensor) -> torch.Tensor:
        """The fused attribute scores (B, A): the class logits are these against each class vector."""
        return self.fuse(self(raw))

    def class_scores(self, raw: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        """Probabilities over every class of ``class_attributes`` (B, K) for raw regions (B, R, C)."""
        return torch.softmax(self.compatibility(self.attribute_scores(raw)) / tau, dim=1)

    def visual(self, raw: torch.Tensor) -> torch.Tensor:
        """A pooled feature (B, C): the mean of the attribute-based visual features (attention-weighted regions)."""
        return self(raw).local.mean(1)

    open_set_default = "attribute_cosine"  # the open-set score `train` fits a threshold for (models/openset.py)

    def open_set_scores(self, raw: torch.Tensor, tau: float = 1.0, attribute_norm: str = "l2") -> dict:
        """Open-set scores (B,), higher = more like the model's classes: msp, max_logit and energy of the class
        logits, and ``attribute_cosine``, the cosine of the fused attribute scores to the nearest class
        attribute vector (models/openset.py). ``attribute_norm`` is unused: MSDN compares L2-normalised rows."""
        return self.scores_with_open_set(raw, tau, attribute_norm)[1]

    def scores_with_open_set(self, raw: torch.Tensor, tau: float = 1.0, attribute_norm: str = "l2"):
        """(``class_scores``, ``open_set_scores``) from one forward pass (what classify needs per batch)."""
        from ..openset import logit_scores, nearest_cosine

        s = self.attribute_scores(raw)  # (B, A)
        logits = self.compatibility(s)
        out = logit_scores(logits, tau)
        out["attribute_cosine"] = nearest_cosine(s, self.class_attributes)
        return torch.softmax(logits / tau, dim=1), out

    def options_dict(self) -> dict:
        return self.options.to_dict()


MODEL = MSDNModel
