"""Mixed bf16 schemes: which parts of a backbone run in fp32 when its precision is bf16 (issue 17).

Plain bf16 autocast of the whole forward pass moves a backbone's features by several percent; for some
backbones that is too much for the model's decisions. A *scheme* keeps named parts of the network in fp32
(autocast off, inputs cast back to float32) and runs the rest under the caller's bf16 autocast. It is
chosen per backbone on accuracy against fp32 (``precision.BF16_BACKBONES`` lists the backbones whose
scheme, or plain autocast where there is none, held the targets) and costs little speed when the fp32
parts are a small share of the work.

``tf_efficientnet_lite0``: the stem (``conv_stem`` + ``bn1``: 3 → 32 channels at 112 px), the first stage
(``blocks.0``: one depthwise-separable block at 112 px) and the head (``conv_head`` + ``bn2``: 320 → 1280 at
7 px) in fp32, stages 1-6 in bf16. Measured on the demo model's 960 + 960 fresh demo photos (seeds 1, 2; a
CPU with native bf16), region features' relative L2 error from fp32 and top-1 agreement with fp32:

- plain bf16 autocast: 7.4% / 7.3%, agreement 98.65% / 98.65%;
- stem and head fp32: 7.2% / 7.1%, 98.96% / 98.85%;
- stem, first stage and head fp32 (this scheme): 3.4% / 3.4%, 99.37% / 99.69%, U / S / H within 0.5 point.

The first stage carries half the error (its 112 px activations are rounded to bf16 before 15 more
stages) and ~2.5% of the multiply-adds: per CPU second, one thread, this scheme runs 43.1 photos, stem and
head alone in fp32 45.2, plain bf16 50.4, fp32 channels_last 29.4 (benchmarks/results/precision_accuracy.json
has every scheme tried).

A scheme's ``tag`` goes into the feature cache's key (``cache.backbone_key``): a changed scheme must get a
new tag so that features made by the old one are not served for it. Nothing here imports torch at module
level (``dkgzsl --help`` stays torch-free).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    """The forward pass as consecutive segments of the model's modules (dotted names: ``blocks.0`` is the
    first stage of ``blocks``), each run in fp32 or in the caller's autocast precision; run one after the
    other, the modules are the backbone's ``forward_features``."""

    tag: str  # names this scheme in cache keys: change it whenever the segments change
    segments: tuple[tuple[tuple[str, ...], bool], ...]  # ((module names, fp32?), ...) in forward order

    @property
    def fp32_modules(self) -> tuple[str, ...]:
        return tuple(name for names, fp32 in self.segments if fp32 for name in names)


# timm's EfficientNet.forward_features is conv_stem, bn1, blocks (stages 0-6 in turn), conv_head, bn2 (checked
# bit for bit by tests/test_mixed_bf16.py against the installed timm).
_EFFICIENTNET_LITE0 = Scheme("efficientnet-lite0-stem-stage0-head-fp32-v1", (
    (("conv_stem", "bn1", "blocks.0"), True),
    (tuple(f"blocks.{i}" for i in range(1, 7)), False),
    (("conv_head", "bn2"), True),
))

SCHEMES: dict[str, Scheme] = {"tf_efficientnet_lite0": _EFFICIENTNET_LITE0}


def scheme_for(backbone_name: str | None) -> Scheme | None:
    """The mixed scheme a backbone's bf16 forward pass uses, or None (plain bf16 autocast)."""
    return SCHEMES.get(backbone_name or "")


def cache_tag(backbone_name: str | None, precision: str) -> str | None:
    """What the feature cache key adds for this backbone and resolved precision: the scheme's tag for bf16
    with a scheme, else None (the key stays as it was)."""
    scheme = scheme_for(backbone_name) if precision == "bf16" else None
    return scheme.tag if scheme else None


def forward_features(model, x, scheme: Scheme):
    """``model.forward_features(x)`` with ``scheme``'s fp32 segments out of autocast (their input cast to
    float32); the other segments run under whatever autocast the caller has on. Without autocast the result
    equals ``model.forward_features(x)`` bit for bit."""
    import torch

    for names, fp32 in scheme.segments:
        if fp32:
            with torch.autocast(x.device.type, enabled=False):
                x = x.float()
                for name in names:
                    x = model.get_submodule(name)(x)
        else:
            for name in names:
                x = model.get_submodule(name)(x)
    return x


def features(backbone, x, precision: str):
    """``backbone.features(x)`` (pooled, regions) for a resolved ``precision``: through the backbone's mixed
    scheme when the precision is bf16 and it has one, else the plain forward pass (the caller's autocast)."""
    scheme = scheme_for(backbone.config.name) if precision == "bf16" else None
    if scheme is None:
        return backbone.features(x)
    return backbone.from_map(forward_features(backbone.model, x, scheme))
