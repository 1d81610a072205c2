"""The one parser of ``--precision`` values (``auto``, ``fp32``, ``bf16``) and what ``auto`` means here.

The backbone's forward pass is the slow part of classifying photos. On the CPU it always runs in the
channels_last memory layout (features equal the default layout's within fp32 round-off: max relative
difference ~1e-6, measured in issue 17); the precision decides whether it also runs under bf16 autocast:

- ``fp32``: no autocast (the reference; ``evaluate`` and ``train --images`` use it by default);
- ``bf16``: bf16 autocast, through the backbone's mixed scheme where it has one (``mixed_bf16.py``:
  tf_efficientnet_lite0 keeps its stem, first stage and head in fp32), plain autocast for other backbones;
  the demo model's region features then differ from fp32 by ~3.4% relative L2, top-1 agreement ~99.5%;
- ``auto``: bf16 on a CPU that computes bf16 natively (AVX512_BF16 or AMX) for a backbone whose bf16
  accuracy was checked (``BF16_BACKBONES``), fp32 otherwise. A CPU without native bf16 emulates it in
  oneDNN, which is *slower* than fp32 channels_last (measured 0.7-0.8x on an AVX-512 CPU without
  AVX512_BF16), so ``auto`` never picks it there. On CUDA ``auto`` is fp16 AMP (as before issue 17).

Resolved precisions are ``fp32``, ``bf16`` and ``fp16`` (CUDA AMP); the feature cache keys non-fp32
features apart (``cache.backbone_key``), and predictions record the one that made their features.
"""
from __future__ import annotations

import functools

from .models.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16")
# Backbones whose bf16 features held accuracy against fp32: top-1 agreement >= 98.5% and U / S / H within 1
# point on 960 + 960 fresh demo photos, seeds 1 and 2, on a CPU with native bf16 (issue 17;
# benchmarks/results/precision_accuracy.json). Others get fp32 from ``auto``. tf_efficientnet_lite0 passes
# with its mixed scheme (stem, first stage and head in fp32, ``mixed_bf16.py``): 99.4% / 99.7%, U / S / H
# within 0.5 point; plain autocast gave 98.65% / 98.65% on today's demo model (DKGZSL), a thin margin, and
# missed the target with the D3GZSL demo model before it (98.0-98.2%).
BF16_BACKBONES: frozenset[str] = frozenset({"tf_efficientnet_lite0"})


def parse_precision(name: str | None = "auto") -> str:
    """``name`` normalised; UsageError (exit code 2) for anything but auto, fp32 or bf16."""
    value = (name or "auto").strip().lower()
    if value not in PRECISIONS:
        raise UsageError(f"--precision {name}: use auto, fp32 or bf16 (auto: bf16 where the CPU computes it "
                         "natively, fp32 otherwise).")
    return value


@functools.lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86: AVX512_BF16 or AMX; Arm: the bf16 extension).

    Emulated bf16 (oneDNN on plain AVX-512, e.g. ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is True
    there) is not enough: it is slower than fp32."""
    import platform

    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # a private probe that changed: fall through to /proc/cpuinfo
            pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = set()
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    flags.update(line.split(":", 1)[-1].split())
    except OSError:
        return False
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(name: str | None, device: str = "cpu", backbone: str | None = None) -> str:
    """The precision the backbone runs in on ``device``: fp32, bf16 or fp16 (CUDA AMP); see the module doc.
    ``backbone``: the name whose checked weights run (None for a bundle's fine-tuned copy: auto gives fp32)."""
    value = parse_precision(name)
    kind = str(device).split(":")[0]
    if value != "auto":
        return value
    if kind == "cuda":
        return "fp16"
    if kind == "cpu" and backbone in BF16_BACKBONES and cpu_native_bf16():
        return "bf16"
    return "fp32"
