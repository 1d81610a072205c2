"""Resumable training checkpoints, written atomically.

Checkpoints are produced locally by `dkgzsl train` (never downloaded) and read back with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from ..models.atomic import atomic_write_bytes
from ..models.errors import DataError

CKPT_FORMAT = 1


class Resumable:
    """A trainer's checkpoint: config, model, the optimizers named in ``optimizer_names``, the random generator
    ``rng``, ``epoch``, ``teacher_done`` and ``history``. Every method's trainer inherits it; a trainer with more
    state extends ``state``/``restore`` (e.g. DKGZSL re-snapshots v after restoring SOVR)."""

    optimizer_names: tuple[str, ...] = ()

    def state(self) -> dict:
        return {"format": CKPT_FORMAT, "config": self.cfg.to_dict(), "model": self.model.state_dict(),
                **{name: getattr(self, name).state_dict() for name in self.optimizer_names},
                "rng": self.rng.get_state().cpu(), "epoch": self.epoch, "teacher_done": self.teacher_done,
                "history": json.dumps(self.history)}

    def restore(self, st: dict, path: Path) -> None:
        if st.get("format") != CKPT_FORMAT or st.get("config") != self.cfg.to_dict():
            raise ValueError(f"{path} was written by a run with other settings; use another run folder "
                             "or drop --resume to start afresh")
        self.model.load_state_dict(st["model"])
        for name in self.optimizer_names:
            getattr(self, name).load_state_dict(st[name])
        self.rng.set_state(st["rng"])
        self.epoch, self.teacher_done = int(st["epoch"]), bool(st["teacher_done"])
        self.history = json.loads(st["history"])


def save_checkpoint(state: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise DataError(f"{path}: unreadable checkpoint ({e}). Delete it to start this run afresh.") from None
