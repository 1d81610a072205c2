"""Evaluate a bundle on the test split of a FeatureSet: S, U, H (calibrated and not), CZSL, AUSUC."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.errors import DataError
from .metrics import (calibrated_predictions, czsl_accuracy, evaluate_gzsl, gzsl_accuracy, harmonic_mean,
                      per_class_accuracy, plot_seen_unseen_curve, seen_unseen_curve)
from .train import scores_for


def _stored(fs, idx) -> np.ndarray:
    """Features of images ``idx`` as stored: pooled float32 (N, D), regions float16 (N, R, C)."""
    return np.ascontiguousarray(fs.features[idx], np.float32 if fs.kind == "pooled" else np.float16)


def evaluate_bundle(bundle, fs, gamma: float | None = None, curve_png: Path | None = None) -> dict:
    """Score ``fs``'s test images with ``bundle``; classes are matched by name.

    Returns a JSON-ready dict. ``gamma`` overrides the bundle's calibration.
    """
    cfg = bundle.config
    if fs.kind != cfg.feature_kind:
        raise DataError(f"{fs.source}: {fs.kind} features, but the bundle's {cfg.method} model consumes "
                        f"{cfg.feature_kind} features; extract {cfg.feature_kind} features (dkgzsl evaluate "
                        "--images does it for the bundle) or evaluate a bundle trained on these.")
    if len(fs.attribute_names) != cfg.attr_dim or fs.features.shape[-1] != cfg.feature_dim:
        raise DataError(f"{fs.source}: features are {fs.features.shape[-1]}-d with {len(fs.attribute_names)} "
                        f"attributes, the bundle expects {cfg.feature_dim}-d with {cfg.attr_dim}.")
    index = {n: i for i, n in enumerate(cfg.class_names)}
    missing = [n for n in fs.class_names if n not in index]
    if missing:
        raise DataError(f"{fs.source}: {len(missing)} classes unknown to the bundle "
                        f"(e.g. {', '.join(missing[:3])}); evaluate with the data set it was trained on.")
    to_bundle = np.array([index[n] for n in fs.class_names])
    idx = np.concatenate([fs.test_seen, fs.test_unseen])
    labels = to_bundle[fs.labels[idx]]
    seen = np.array(cfg.seen)
    raw = torch.from_numpy(_stored(fs, idx))
    scores = scores_for(bundle.model, raw, cfg.head.tau_student)
    g = cfg.calibration if gamma is None else float(gamma)
    res = evaluate_gzsl(scores, labels, seen, g, with_ausuc=True)
    s0, u0, h0 = gzsl_accuracy(scores, labels, seen, 0.0)
    out = {"gamma": g, "S": res.seen_acc, "U": res.unseen_acc, "H": res.harmonic,
           "S_uncalibrated": s0, "U_uncalibrated": u0, "H_uncalibrated": h0,
           "CZSL": czsl_accuracy(scores, labels, seen), "AUSUC": res.ausuc,
           "n_test_seen": int(len(fs.test_seen)), "n_test_unseen": int(len(fs.test_unseen))}
    if cfg.open_set:
        out["open_set"] = open_set_figures(bundle, raw, scores, labels, seen, g)
    if curve_png is not None:
        gammas, s, u = seen_unseen_curve(scores, labels, seen)
        plot_seen_unseen_curve(gammas, s, u, curve_png, title=f"{cfg.method}", mark=(res.unseen_acc, res.seen_acc))
    return out


def open_set_figures(bundle, raw: torch.Tensor, scores: np.ndarray, labels: np.ndarray, seen: np.ndarray,
                     gamma: float) -> dict:
    """What the bundle's open-set threshold (config.open_set) costs on the test split, whose photos all belong
    to the model's classes: the share of seen- and unseen-class photos flagged "unknown", and S / U / H when a
    flagged photo counts as wrong (what classify reports with rejection on)."""
    from ..models.openset import score_photos

    cfg = bundle.config
    name, threshold = cfg.open_set["score"], float(cfg.open_set["threshold"])
    flagged = score_photos(bundle.model, cfg, raw)[1][name].numpy() < threshold
    pred = np.where(flagged, -1, calibrated_predictions(scores, seen, gamma))  # -1: flagged, never a class
    on_seen = seen[labels]
    s = per_class_accuracy(pred, labels, np.flatnonzero(seen))
    u = per_class_accuracy(pred, labels, np.flatnonzero(~seen))
    share = lambda m: float(flagged[m].mean()) if m.any() else float("nan")  # noqa: E731
    return {"score": name, "threshold": threshold, "flagged_seen": share(on_seen), "flagged_unseen": share(~on_seen),
            "S": s, "U": u, "H": harmonic_mean(s, u)}
