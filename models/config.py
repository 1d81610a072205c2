"""Model configuration as dataclasses, serialised to a bundle's config.json.

A bundle is self-describing: everything needed to rebuild the networks (dims, hidden sizes,
temperatures) and to interpret their outputs (class and attribute names, seen mask, calibration,
feature scaling) lives here, so loading never guesses.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1


@dataclass
class GeneratorConfig:
    """f-CLSWGAN generator G([z, a]) and WGAN critic D([x, a]), with CE-GZSL's embedding net when ``kind`` says so."""

    noise_dim: int  # METHODS: dim(z) = attribute dim
    hidden_dim: int = 4096
    critic_hidden_dim: int = 4096
    leaky_slope: float = 0.2
    kind: str = "clswgan"  # clswgan | ce-gzsl: + CE-GZSL's embedding net h = E(x), which the unified classifier
    #   reads, and its comparator (models/cegzsl.py); the widths below are 0 for clswgan
    embed_dim: int = 0  # ce-gzsl: width of h
    proj_dim: int = 0  # ce-gzsl: width of the instance-level projection z
    comparator_dim: int = 0  # ce-gzsl: hidden width of the class-level comparator F([h, a])


CE_GZSL_KEYS = ("kind", "embed_dim", "proj_dim", "comparator_dim")  # GeneratorConfig's, written for ce-gzsl only
OPTIONAL_KEYS = ("confidence", "open_set", "omitted_parts")  # ModelConfig's, written only when set


@dataclass
class HeadConfig:
    """D3GZSL teacher/student/OOD head and the temperatures their losses use."""

    embed_dim: int = 2048
    tau_teacher: float = 1.0  # τ_o: teacher softmax temperature (pre-training CE, MSP score)
    tau_student: float = 1.0  # τ_s: student softmax temperature (L_cls, inference)
    tau_kl: float = 1.0  # temperature on the L2-normalised logits compared by L_kl
    tau_be: float = 1.0  # temperature on the cosines of L_be
    tau_od: float = 1.0  # temperature on the cosines of L_od
    kl_normalize: str = "both"  # "both" | "teacher": which logits L_kl L2-normalises
    ood_score: str = "msp"  # "msp" | "energy": the teacher's OOD score s̃
    pair_balance: bool = True  # L_be / L_od: average positive- and negative-pair means (see losses)
    od_target: str = "class"  # L_od positives: same class ("class", METHODS.md) or same side ("domain")


@dataclass
class BackboneConfig:
    """The image backbone whose features the head consumes (None for feature-file bundles)."""

    name: str
    pretrained_tag: str = ""
    input_size: list[int] = field(default_factory=lambda: [3, 224, 224])  # [3, H, W] the photos are resized and
    #   cropped to: timm's stock size, or train --image-size's (every bundle records it; classify rebuilds the
    #   backbone at it: models/backbone.py with_image_size)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    feature_layer: str = "pooled"


@dataclass
class ModelConfig:
    """Everything config.json holds. ``format_version`` guards against bundles we cannot read."""

    method: str  # what was trained: a name in models/methods (IMPLEMENTED); anything else is refused
    feature_dim: int  # D: the backbone's pooled width, or its region channel count C for feature_kind "regions"
    attribute_names: list[str]
    class_names: list[str]
    seen: list[bool]
    generator: GeneratorConfig
    head: HeadConfig
    calibration: float = 0.0  # γ subtracted from seen-class probabilities at inference
    attribute_norm: str = "l2"  # how class attribute vectors are normalised before G sees them
    feature_scaling: str = "minmax"  # per-dim min-max fitted on training features, then / global max
    backbone: BackboneConfig | None = None
    feature_kind: str = "pooled"  # what the model consumes: pooled (B, D) or regions (B, R, C) backbone features
    options: dict[str, Any] = field(default_factory=dict)  # the method's own settings (its Options dataclass)
    provenance: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION
    # optional, written only when set (older dkgzsl versions refuse unknown fields); models/openset.py:
    confidence: dict[str, Any] | None = None  # {"temperature": T, "photos", "fitted_on"}: the confidence's T
    open_set: dict[str, Any] | None = None  # {"score", "threshold", "keep", "photos", "fitted_on"}: rejection
    omitted_parts: list[str] | None = None  # a slim bundle: the training-only sub-modules it leaves out
    #   (e.g. ["critic", "teacher", "ood_head", "epsilon"]; models/parts.py); None: it holds every part

    @property
    def attr_dim(self) -> int:
        return len(self.attribute_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_seen(self) -> int:
        return sum(self.seen)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.generator.kind == "clswgan":  # f-CLSWGAN's config.json as before CE-GZSL: older versions read it
            for key in CE_GZSL_KEYS:
                del d["generator"][key]
        for key in OPTIONAL_KEYS:  # a bundle without them writes the config.json of before
            if d[key] is None:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from parsed JSON; raises KeyError/TypeError on missing or unknown fields."""
        data = dict(data)
        data["generator"] = _build(GeneratorConfig, data["generator"])
        data["head"] = _build(HeadConfig, data["head"])
        if data.get("backbone") is not None:
            data["backbone"] = _build(BackboneConfig, data["backbone"])
        return _build(cls, data)


def _build(cls, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)
