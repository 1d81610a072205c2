"""Resumable training checkpoints, written atomically.

Checkpoints are produced locally by `dkgzsl train` (never downloaded) and read back with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from ..models.atomic import atomic_write_bytes
from ..models.errors import DataError


def save_checkpoint(state: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise DataError(f"{path}: unreadable checkpoint ({e}). Delete it to start this run afresh.") from None
