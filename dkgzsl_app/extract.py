"""Backbone features for many photos: decoding and resizing in DataLoader workers, overlapped with the
forward pass; bad files become per-file errors; channels_last on the CPU and CUDA, autocast by
``precision`` (fp32 | bf16 | fp16, see ``precision.py``), and on CUDA a batch size that halves itself on
out-of-memory. ``kind`` picks the feature: ``pooled`` (D,) float32 (the default), or ``regions`` (R, C)
float16, the backbone's region/token map (EfficientNet 7x7 grid → R = 49; ViT tokens), halved to fp16 on
the device right after the forward pass so memory and cache bytes stay small."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from .cache import check_kind
from .images import ImageLoadError, load_rgb


class PhotoDataset(Dataset):
    """Item i → (tensor (3, H, W) or None, i, error message or "")."""

    def __init__(self, images: list, transform, draft: tuple[int, int] | None = None):
        self.images, self.transform, self.draft = images, transform, draft

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        item = self.images[i]
        try:
            im = item.convert("RGB") if hasattr(item, "convert") else load_rgb(item, draft=self.draft)
            return self.transform(im), i, ""
        except ImageLoadError as e:
            return None, i, str(e)
        except Exception as e:  # a transform failing on a pathological image must not end the run
            return None, i, f"could not be prepared ({type(e).__name__}: {e})"


def collate(batch):
    ok = [b for b in batch if b[0] is not None]
    x = torch.stack([b[0] for b in ok]) if ok else None  # (B, 3, H, W)
    return x, [b[1] for b in ok], {b[1]: b[2] for b in batch if b[0] is None}


@dataclass
class Extracted:
    features: dict[int, torch.Tensor] = field(default_factory=dict)  # image index → (D,) f32 | (R, C) f16
    errors: dict[int, str] = field(default_factory=dict)  # image index → reason


def default_channels_last(device) -> bool:
    """channels_last unless asked otherwise: on the CPU and CUDA (not MPS)."""
    return torch.device(device).type in ("cpu", "cuda")


def set_layout(model, channels_last: bool):
    """Put ``model``'s weights in the channels_last (or default) memory layout, unless they already are."""
    if getattr(model, "_dkgzsl_channels_last", False) != channels_last:
        model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        model._dkgzsl_channels_last = channels_last
    return model


def _photo_loader(backbone, transform, images: list, batch_size: int, workers: int, pin_memory: bool = False):
    """Batches (tensors, indices, errors) of ``images`` through ``transform``, decoded in ``workers`` processes
    when every image is a path (PIL images cannot be sent to them)."""
    # JPEG DCT-domain downscaling to no smaller than the resize step's target: far less decoding work
    c = backbone.config
    short = int(math.floor(min(c.input_size[-2:]) / c.crop_pct))
    ds = PhotoDataset(images, transform, draft=(short, short))
    can_fork = workers > 0 and all(isinstance(i, (str, bytes)) or hasattr(i, "__fspath__") for i in images)
    return DataLoader(ds, batch_size=batch_size, num_workers=workers if can_fork else 0, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False)


def extract(backbone, images: list, device: str = "cpu", batch_size: int = 32, workers: int = 2,
            on_batch: Callable[[int], None] | None = None, precision: str = "fp32",
            channels_last: bool | None = None, kind: str = "pooled") -> Extracted:
    """Backbone features for ``images`` (paths or PIL images), in input order by index: pooled (D,) float32,
    or with ``kind="regions"`` the region map (R, C) float16, each on the CPU.

    ``precision`` is a resolved one (fp32, bf16 or fp16; ``precision.resolve_precision``);
    ``channels_last`` defaults to True on the CPU and CUDA (False keeps the default layout: bit for bit
    the features of dkgzsl before issue 17, which ``train --images`` keeps for reproducible bundles)."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16 (resolved), not {precision!r}")
    check_kind(kind)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if channels_last is None:
        channels_last = default_channels_last(dev)
    model = set_layout(backbone.model.to(dev), channels_last)
    loader = _photo_loader(backbone, backbone.transform(), images, batch_size, workers, pin_memory=cuda)
    out = Extracted()
    for x, idx, errors in loader:
        out.errors.update(errors)
        if x is not None:
            for i, f in zip(idx, _forward(backbone, x, dev, precision, channels_last, kind)):
                out.features[i] = f
        if on_batch:
            on_batch(len(idx) + len(errors))
    return out


def extract_cached(backbone, images: list, device: str = "cpu", batch_size: int = 32, workers: int = 2,
                   cache=None, on_batch: Callable[[int], None] | None = None, precision: str = "fp32",
                   channels_last: bool | None = None, kind: str = "pooled") -> Extracted:
    """``extract`` through a FeatureCache: photos (paths) seen before with this backbone (and precision:
    bf16 and fp16 features are kept apart from fp32 ones; layout; kind) skip it."""
    from pathlib import Path

    from .cache import backbone_key, file_digest

    if cache is None:
        return extract(backbone, images, device, batch_size, workers, on_batch, precision, channels_last, kind)
    if channels_last is None:
        channels_last = default_channels_last(device)
    key = backbone_key(backbone.config, precision, channels_last, kind)
    digests: dict[int, str] = {}
    for i, im in enumerate(images):
        if isinstance(im, (str, Path)):
            try:
                digests[i] = file_digest(im)
            except OSError:
                pass  # extraction reports the reason
    hits = cache.get(sorted(set(digests.values())), key, kind)
    got = Extracted({i: torch.from_numpy(hits[d]) for i, d in digests.items() if d in hits})
    todo = [i for i in range(len(images)) if i not in got.features]
    if on_batch and got.features:
        on_batch(len(got.features))
    # all cached (a chunk of a warm run): no DataLoader, whose worker processes would start for nothing
    fresh = extract(backbone, [images[i] for i in todo], device, batch_size, workers, on_batch, precision,
                    channels_last, kind) if todo else Extracted()
    for j, f in fresh.features.items():
        got.features[todo[j]] = f
    got.errors = {todo[j]: reason for j, reason in fresh.errors.items()}
    new = {digests[todo[j]]: f.numpy() for j, f in fresh.features.items() if todo[j] in digests}
    if new:
        cache.put(new, key, kind)
    return got


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _forward(backbone, x: torch.Tensor, dev: torch.device, precision: str = "fp32",
             channels_last: bool = True, kind: str = "pooled") -> torch.Tensor:
    """Pooled features (B, D) float32, or regions (B, R, C) float16 (contiguous), on the CPU; on CUDA
    out-of-memory, split the batch in halves and retry."""
    try:
        with torch.inference_mode():
            x = x.to(dev, non_blocking=dev.type == "cuda")
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            dtype = _AUTOCAST.get(precision)
            with torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                pooled, regions = backbone.features(x)
            if kind == "regions":  # fp16 before the copy to the CPU: half the bytes to move and keep
                return regions.to(torch.float16, memory_format=torch.contiguous_format).cpu()
            return pooled.float().cpu()
    except torch.OutOfMemoryError:
        if len(x) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(x) // 2
        return torch.cat([_forward(backbone, x[:half], dev, precision, channels_last, kind),
                          _forward(backbone, x[half:], dev, precision, channels_last, kind)])


def photo_tensors(backbone, images: list, workers: int = 2,
                  on_batch: Callable[[int], None] | None = None) -> tuple[torch.Tensor, list[int], dict[int, str]]:
    """The photos as the backbone's eval transform prepares them, short of its float conversion and
    normalisation (``Backbone.uint8_transform``): (uint8 (N, 3, H, W) of the readable ones, their indices
    into ``images``, errors by index). For ``train --finetune-backbone``, which runs the backbone on them
    again every epoch; uint8 at the input size is a quarter of the float32 bytes (150 kB a 224 px photo)."""
    loader = _photo_loader(backbone, backbone.uint8_transform(), images, 32, workers)
    out = torch.empty((len(images), *backbone.config.input_size), dtype=torch.uint8)  # filled in place: no second copy
    ok, errors = [], {}
    for x, idx, errs in loader:
        errors.update(errs)
        if x is not None:
            out[idx] = x
            ok += idx
        if on_batch:
            on_batch(len(idx) + len(errs))
    keep = sorted(ok)
    return (out if len(keep) == len(images) else out[keep]), keep, errors
