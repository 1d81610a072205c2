"""DKGZSL (dynamic knowledge-guided generation; METHODS.md): the plug-in.

On region features (B, R, C), SOVR refines them into the feature v (B, C) in which generation and
classification happen: FDE suppresses background regions, ARA attends one query per attribute over the
refined regions (attribute-localised features and attribute scores). The knowledge transfer network KTN
maps a class's attribute vector to one knowledge vector per generator layer and meta-fusion units (MFU)
inject them into G (``models/knowledge.py``). Critic, teacher, student, OOD head and ε are D3GZSL's
(``models.networks.ZSLModel``), trained on v. Each part can be switched off (``Options``); on pooled
features (B, D) there are no regions to refine and DKGZSL is KTN/MFU + D3GZSL on the pooled feature
(``fde`` and ``ara`` are then recorded as False). Training: ``trainer/dkgzsl.py``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..cegzsl import model_kwargs
from ..knowledge import KnowledgeGenerator
from ..networks import ZSLModel
from ..sovr import SOVR, SOVROutput

MASKS = ("soft", "topk")


@dataclass
class Options:
    """DKGZSL's own settings, written into a bundle's ``config.options``."""

    fde: bool = True  # feature denoising encoder (regions only)
    ara: bool = True  # attribute-region attention (regions only)
    ktn: bool = True  # knowledge transfer network + meta-fusion units in G
    fde_mask: str = "soft"  # soft | topk
    fde_topk: int = 0  # regions kept by the top-k mask
    attn_dim: int = 128  # width of FDE's and ARA's attention

    def validate(self) -> None:
        if self.fde_mask not in MASKS:
            raise ValueError(f"fde_mask must be one of {', '.join(MASKS)}, not {self.fde_mask!r}")
        if self.fde_mask == "topk" and self.fde_topk < 1:
            raise ValueError("fde_mask 'topk' needs fde_topk of at least 1")
        if self.attn_dim < 1:
            raise ValueError("attn_dim must be at least 1")

    def for_kind(self, feature_kind: str) -> "Options":
        """What actually runs on ``feature_kind`` features: no SOVR parts without regions."""
        if feature_kind == "regions":
            return self
        return Options(**{**asdict(self), "fde": False, "ara": False})

    def to_dict(self) -> dict:
        return asdict(self)


class DKGZSLModel(ZSLModel):
    """D3GZSL's networks with a knowledge-guided generator, and SOVR in front of everything on regions."""

    method = "dkgzsl"

    def __init__(self, feature_dim: int, attr_dim: int, num_seen: int, num_classes: int, noise_dim: int,
                 hidden_dim: int, critic_hidden_dim: int, embed_dim: int, slope: float = 0.2,
                 options: Options | None = None, feature_kind: str = "pooled",
                 ce_dims: tuple[int, int, int] | None = None):
        super().__init__(feature_dim, attr_dim, num_seen, num_classes, noise_dim, hidden_dim, critic_hidden_dim,
                         embed_dim, slope, ce_dims=ce_dims)
        self.options = opts = (options or Options()).for_kind(feature_kind)
        opts.validate()
        self.feature_kind = feature_kind
        if opts.ktn:
            self.generator = KnowledgeGenerator(attr_dim, noise_dim, hidden_dim, feature_dim, slope)
        self.sovr = (SOVR(feature_dim, attr_dim, opts.attn_dim, opts.fde, opts.ara, opts.fde_mask, opts.fde_topk)
                     if feature_kind == "regions" else None)

    @classmethod
    def from_config(cls, config) -> "DKGZSLModel":
        return cls(config.feature_dim, config.attr_dim, config.num_seen, config.num_classes,
                   config.generator.noise_dim, config.generator.hidden_dim, config.generator.critic_hidden_dim,
                   config.head.embed_dim, config.generator.leaky_slope, Options(**config.options),
                   config.feature_kind, **model_kwargs(config.generator))

    def refine(self, raw: torch.Tensor) -> SOVROutput:
        """SOVR on raw region features (B, R, C) (scaled first); on pooled features v is the scaled feature."""
        x = self.scale_features(raw)
        return self.sovr(x) if self.sovr is not None else SOVROutput(v=x)

    def visual(self, raw: torch.Tensor) -> torch.Tensor:
        return self.refine(raw).v

    def attribute_scores(self, raw: torch.Tensor) -> torch.Tensor | None:
        """ARA's attribute scores (B, A), or None without ARA."""
        return self.refine(raw).attribute_scores

    def options_dict(self) -> dict:
        return self.options.to_dict()


MODEL = DKGZSLModel
