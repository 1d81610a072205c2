"""The one parser of ``--device`` values: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
from __future__ import annotations

import re

from .models.errors import UsageError

_VALID = "auto, cpu, cuda, cuda:N or mps"
_FORM = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def parse_device(name: str = "auto") -> str:
    """A torch device string for ``name``; ``auto`` picks CUDA, then Apple's MPS, then the CPU.

    Raises UsageError (exit code 2) for an unknown name or a device this machine does not have."""
    name = (name or "auto").strip().lower()
    if not _FORM.match(name):
        raise UsageError(f"--device {name}: use {_VALID}.")
    if name == "cpu":
        return name  # no torch import needed
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if name == "mps":
        if not has_mps:
            raise UsageError("--device mps: this torch build or machine has no Apple MPS device. Use --device cpu.")
        return name
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: this torch build sees no CUDA device. Use --device cpu.")
    if ":" in name:
        index, count = int(name.split(":")[1]), torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"--device {name}: there are {count} CUDA device(s), numbered 0 to {count - 1}.")
    return name
