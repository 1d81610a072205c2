"""The training side of the method plug-ins (models/methods): which trainer trains which method.

A trainer is ``trainer.loop._Trainer`` (D3GZSL) or a subclass of it, or (MSDN, MSDN++: no generator)
a class with the same interface to ``fit`` (``trainer/msdn.py``); it says which backbone features it
trains on from photos (``feature_kind``) and what the user should be told about a configuration
(``notes``). Nothing outside this module and the trainers themselves looks at a method's name.
"""
from __future__ import annotations

import importlib

from ..models.methods import canonical_method

TRAINERS = {"d3gzsl": ("loop", "_Trainer"), "dkgzsl": ("dkgzsl", "DKGZSLTrainer"),
            "msdn": ("msdn", "MSDNTrainer"), "msdnpp": ("msdn", "MSDNPPTrainer")}


def trainer_class(method: str):
    """The trainer class of ``method`` (BundleError for one that is not implemented)."""
    module, name = TRAINERS[canonical_method(method)]
    return getattr(importlib.import_module(f".{module}", __package__), name)


def recommended(method: str) -> dict:
    """TrainConfig fields whose default differs for ``method`` (what its authors used; e.g. MSDN's batch 50)."""
    return dict(getattr(trainer_class(method), "recommended", {}))


def check_options(cfg) -> None:
    """UsageError for an option ``cfg.method`` does not read (attribute embeddings from a file, bf16 steps)."""
    from ..models.errors import UsageError

    if cfg.attr_embeddings and not getattr(trainer_class(cfg.method), "reads_attr_embeddings", False):
        raise UsageError(f"--attribute-embeddings: {cfg.method} does not embed attributes; the file starts the "
                         "attribute embeddings of MSDN and MSDN++ (--method msdn or msdnpp). Drop the option.")
    if cfg.mlp_precision != "fp32" and not hasattr(trainer_class(cfg.method), "precision"):
        raise UsageError(f"--mlp-precision {cfg.mlp_precision}: {cfg.method} trains in fp32 only (the option is for "
                         "the generative methods d3gzsl and dkgzsl). Drop the option.")


def feature_kind(cfg) -> str:
    """pooled | regions: what ``train --images`` extracts for ``cfg``."""
    return trainer_class(cfg.method).feature_kind(cfg)


def notes(cfg, kind: str) -> list[str]:
    """Notices for ``cfg`` on ``kind`` features (e.g. DKGZSL without regions runs without SOVR)."""
    return trainer_class(cfg.method).notes(cfg, kind)
