"""Is the --scenes demo set harder for pooled features than the plain one? A closed-form ridge read-out.

Renders ``--per-class`` photos of every demo class in both styles (same seed, JPEG q90 as `dkgzsl demo`
writes them), extracts pooled features with the offline ``tf_efficientnet_lite0`` backbone (1280-d, fp32,
CPU), fits a ridge regression from the standardised pooled features of the 38 seen classes' photos to
their 12-d attribute vectors (λ chosen by group accuracy on 8 held-out seen classes, then refit on all
seen), and scores the photos of the 10 unseen classes: per attribute group (shape, colour, pattern) the
argmax within the group against the truth, and "all 3" (every group right: the class recognised by
composition). Chance is 0.25 per group. A third row reads the scenes photos cut to a square 1.4× the
class object's box (``render_scene(..., with_box=True)``): an oracle localisation, what a model that
finds the object could read from the same backbone.

    .venv/bin/python benchmarks/scenes_difficulty.py     # per class 8, seed 5 (~4 min wall on 2 shared cores)

Result (2026-11-28, per class 8, seed 5, 384 photos per row; 228 s wall, 97 s CPU, 2 shared cores):

    style                     λ    shape   colour  pattern    all 3   (unseen-class photos, n = 80 each)
    plain                   100    0.975    0.688    0.988    0.650
    scenes                    1    0.438    0.263    0.575    0.075
    scenes, object crop      10    0.875    0.487    0.950    0.438

(An earlier run with per class 10, plain and scenes only: plain 0.960 / 0.640 / 0.990 / 0.600, scenes
0.500 / 0.210 / 0.510 / 0.070.) On the scenes set the pooled feature mixes the object with distractors
in other classes' colours and patterns and with a busy background: shape and pattern fall to about 0.5,
colour to chance, composition ("all 3") from 0.65 to 0.08; cut to the object, the same backbone and
read-out get much of it back (0.44), so the information is there for a model that localises it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

GROUPS = ("shape", "colour", "pattern")


def features(paths: list[Path]) -> np.ndarray:
    from dkgzsl_app.extract import extract
    from dkgzsl_app.models.backbone import create_backbone

    bb = create_backbone("tf_efficientnet_lite0")
    out = extract(bb, [str(p) for p in paths], device="cpu", batch_size=32, workers=1)
    assert not out.errors, out.errors
    return np.stack([out.features[i].float().numpy() for i in range(len(paths))]).astype(np.float64)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """(D+1, A) weights of y ≈ [x, 1] W, the bias not penalised."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    reg = lam * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y)


def group_accuracy(pred: np.ndarray, truth: np.ndarray, attributes: list[str]) -> dict[str, float]:
    right = []
    for g in GROUPS:
        cols = [i for i, a in enumerate(attributes) if a.startswith(g + ":")]
        right.append(pred[:, cols].argmax(1) == truth[:, cols].argmax(1))
    acc = {g: float(r.mean()) for g, r in zip(GROUPS, right)}
    acc["all 3"] = float(np.logical_and.reduce(right).mean())
    return acc


def score(x: np.ndarray, names: list[str], lams=(1.0, 10.0, 100.0, 1000.0, 10000.0)) -> tuple[float, dict]:
    from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes

    by_name = {c.name: c for c in demo_classes()}
    y = np.array([by_name[n].attributes() for n in names])
    seen = np.array([by_name[n].seen for n in names])
    seen_names = sorted({n for n in names if by_name[n].seen})
    val_names = set(np.random.default_rng(0).choice(seen_names, 8, replace=False))
    val = np.array([n in val_names for n in names])
    mu, sd = x[seen].mean(0), x[seen].std(0) + 1e-6
    xs = (x - mu) / sd

    def fit_predict(train, test, lam):
        return np.hstack([xs[test], np.ones((test.sum(), 1))]) @ ridge(xs[train], y[train], lam)

    val_acc = {lam: np.mean(list(group_accuracy(fit_predict(seen & ~val, val, lam), y[val], ATTRIBUTES).values()))
               for lam in lams}
    lam = max(val_acc, key=val_acc.get)
    return lam, group_accuracy(fit_predict(seen, ~seen, lam), y[~seen], ATTRIBUTES)


def object_crops(out: Path, per_class: int, seed: int) -> list[Path]:
    """The scenes photos of ``write_test_photos(..., style="scenes")`` cut to a square 1.4× the object's
    box (an oracle localisation: what a model that finds the object could read)."""
    from dkgzsl_app.trainer.render import demo_classes, render_scene

    out.mkdir(parents=True)
    paths = []
    for c in demo_classes():
        for i in range(per_class):
            img, (x0, y0, x1, y1) = render_scene(c, seed * 1_000_003 + i, with_box=True)
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.7 * max(x1 - x0, y1 - y0)
            paths.append(out / f"{c.name}__{i:04d}.jpg")
            img.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half))).save(paths[-1], quality=90)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from dkgzsl_app.trainer.render import write_test_photos

    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for style in ("plain", "scenes"):
            paths = write_test_photos(Path(tmp) / style, args.per_class, args.seed, style=style)
            names = [p.name.split("__")[0] for p in paths]
            lam, acc = score(features(paths), names)
            rows.append((style, lam, acc, len(paths)))
        paths = object_crops(Path(tmp) / "crops", args.per_class, args.seed)
        lam, acc = score(features(paths), [p.name.split("__")[0] for p in paths])
        rows.append(("scenes, object crop", lam, acc, len(paths)))
    print(f"per class {args.per_class}, seed {args.seed}, {rows[0][3]} photos per style, "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"{'style':20} {'λ':>6}  " + "  ".join(f"{k:>7}" for k in (*GROUPS, "all 3")))
    for style, lam, acc, _ in rows:
        print(f"{style:20} {lam:>6g}  " + "  ".join(f"{v:7.3f}" for v in acc.values()))


if __name__ == "__main__":
    main()
