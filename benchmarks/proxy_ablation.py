#!/usr/bin/env python3
"""The paper's ablation (baseline, +ID²SD, +O²DBD, both) on an xlsa17 feature folder, side by side with a
closed-form ridge regression (features → attributes, calibrated stacking), in one run.

Every method selects its epochs and calibration γ on a validation split carved from the seen
classes (dkgzsl's default protocol); the test split is scored once, at the end.

    python benchmarks/proxy_ablation.py /tmp/proxy/CUB --epochs 8 --hidden 1024 --embed 512 \
        --out benchmarks/results/proxy_cub.json

Make proxy features with ../shared/bench/make_proxy_features.py (quote its seed with the numbers).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.data import carve_validation, load_features
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.metrics import choose_gamma, czsl_accuracy, evaluate_gzsl
from dkgzsl_app.trainer.train import train_bundle


def ridge_scores(fs, train_idx, eval_idx, classes, lam: float = 1.0) -> np.ndarray:
    """Cosine between ridge-predicted attributes and class attributes, softmax-free scores (N, C)."""
    x = fs.features[train_idx].astype(np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x = (x - mu) / sd
    a = fs.attributes[fs.labels[train_idx]].astype(np.float64)
    w = np.linalg.solve(x.T @ x + lam * len(x) * np.eye(x.shape[1]), x.T @ a)  # (D, A)
    p = ((fs.features[eval_idx] - mu) / sd) @ w
    p /= np.linalg.norm(p, axis=1, keepdims=True) + 1e-12
    att = fs.attributes[classes].astype(np.float64)
    att /= np.linalg.norm(att, axis=1, keepdims=True) + 1e-12
    return p @ att.T


def ridge(fs, seed: int) -> dict:
    vs = carve_validation(fs, seed)
    classes = np.flatnonzero(fs.seen)
    remap = np.full(len(fs.class_names), -1)
    remap[classes] = np.arange(len(classes))
    ev = np.concatenate([vs.val_seen, vs.val_unseen])
    best = None
    for lam in (0.01, 0.1, 1.0, 10.0):
        s = ridge_scores(fs, vs.train, ev, classes, lam)
        gamma, h = choose_gamma(s, remap[fs.labels[ev]], vs.seen[classes])
        if best is None or h > best[2]:
            best = (lam, gamma, h)
    lam, gamma, _ = best
    test = np.concatenate([fs.test_seen, fs.test_unseen])
    s = ridge_scores(fs, fs.trainval, test, np.arange(len(fs.class_names)), lam)
    r = evaluate_gzsl(s, fs.labels[test], fs.seen, gamma)
    return {"U": r.unseen_acc, "S": r.seen_acc, "H": r.harmonic, "CZSL": czsl_accuracy(s, fs.labels[test], fs.seen),
            "AUSUC": r.ausuc, "gamma": gamma, "lambda": lam}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--embed", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--gen-per-unseen", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3, help="generator/critic Adam lr (paper: 1e-4)")
    p.add_argument("--cls-weight", type=float, default=1.0, help="β of f-CLSWGAN's classification loss (paper: 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ablations", default="baseline,id,od,both")
    p.add_argument("--out", type=Path)
    a = p.parse_args()

    fs = load_features(a.features)
    rows = {"ridge": ridge(fs, a.seed)}
    print(f"ridge: {rows['ridge']}", flush=True)
    for abl in a.ablations.split(","):
        cfg = TrainConfig(ablation=abl, epochs=a.epochs, hidden_dim=a.hidden, critic_hidden_dim=a.hidden,
                          embed_dim=a.embed, batch_size=a.batch_size, gen_per_unseen=a.gen_per_unseen, seed=a.seed,
                          lr=a.lr, cls_weight=a.cls_weight)
        run = Path(tempfile.mkdtemp(prefix=f"dkgzsl-{abl}-"))
        t = time.perf_counter()
        out = train_bundle(fs, cfg, run)
        secs = time.perf_counter() - t
        r = evaluate_bundle(load_bundle(out.bundle_dir), fs)
        rows[abl] = {**{k: r[k] for k in ("U", "S", "H", "CZSL", "AUSUC", "gamma", "H_uncalibrated")},
                     "selected_epoch": out.best_epoch, "train_seconds": round(secs, 1),
                     "val_H_cal": [round(h.get("val_H_cal", 0.0), 4) for h in out.select_history if "val_H_cal" in h]}
        print(f"{abl}: {rows[abl]}", flush=True)
        shutil.rmtree(run)
    result = {"features": str(a.features), "data_sha256": fs.sha256(), "settings": vars(a) | {"out": str(a.out)},
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": rows}
    print(f"\n| method | U | S | H | CZSL | AUSUC | epochs | train s |\n|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100*r['U']:.1f} | {100*r['S']:.1f} | {100*r['H']:.1f} | {100*r['CZSL']:.1f} | "
              f"{100*r['AUSUC']:.1f} | {r.get('selected_epoch', '-')} | {r.get('train_seconds', '-')} |")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
