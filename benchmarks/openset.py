#!/usr/bin/env python3
"""Open-set rejection and the readable confidence on the bundled demo model (issue 16).

Three sets of photos, none used in training (the demo model trained on rendered photos of seed 0):

* calibration: ``dkgzsl demo --training --per-class 20 --seed 7`` (SEEN classes only): every score's
  threshold is fitted on these, keeping 95% (``models/openset.fit_threshold``), the way
  ``scripts/calibrate_demo_openset.sh`` fitted the bundle's own (score ``prototype``);
* in-domain test: fresh demo photos of all 48 classes, seen and unseen, seeds 1 and 2 (``--per-class``);
* out-of-domain: real photos: tests/assets/*.jpg, photos shipped in installed packages (textual_image's
  gracehopper.jpg, scikit-image's data folder when installed) and every photo under ``--extra`` folders.

For each open-set score (msp, max_logit, energy, prototype): the share of in-domain photos flagged
``unknown`` (target ≤ 5%), of real photos flagged (target ≥ 90%), and the AUROC between the two sets; the
bundle as shipped (its recorded threshold, through ``Classifier.classify``) too. For the confidence: the
expected calibration error (15 bins) of the new confidence (softmax((p − γ·seen)/T), T the bundle's) and of
the old score (p − γ·seen, clipped to [0, 1]) on the in-domain photos, with the reliability diagram's bins.

    python benchmarks/openset.py --per-class 10 --extra /path/to/skimage/data \
        --out benchmarks/results/openset_demo.json

(scikit-image's photos without installing it: ``pip download scikit-image --no-deps -d W`` and
``unzip -j W/*.whl 'skimage/data/*' -d EXTRA``; the benchmark skips its non-photos: see ``NOT_PHOTOS``.)
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = (".jpg", ".jpeg", ".png")
# scikit-image data files that are not photographs (drawings, masks, synthetic or tiny images)
NOT_PHOTOS = {"chessboard_GRAY.png", "chessboard_RGB.png", "color.png", "horse.png", "logo.png",
              "microaneurysms.png", "phantom.png", "clock_motion.png"}


def real_photos(extra: list[str]) -> list[str]:
    """Out-of-domain real photos: the repository's CC0 test photos, photos in installed packages, --extra."""
    out = sorted(str(p) for p in (ROOT / "tests" / "assets").glob("*.jpg"))
    for site in {p for p in sys.path if p.endswith("site-packages")}:
        out += sorted(glob.glob(os.path.join(site, "textual_image", "*.jpg")))
        out += sorted(p for p in glob.glob(os.path.join(site, "skimage", "data", "*"))
                      if p.lower().endswith(SUFFIXES) and os.path.basename(p) not in NOT_PHOTOS)
    for folder in extra:
        out += sorted(p for p in glob.glob(os.path.join(folder, "*"))
                      if p.lower().endswith(SUFFIXES) and os.path.basename(p) not in NOT_PHOTOS)
    return out


def auroc(pos, neg) -> float:
    """P(score of an in-domain photo > score of an out-of-domain one), ties counted half."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def labels_of(paths: list[str], names: list[str]) -> torch.Tensor:
    index = {n: i for i, n in enumerate(names)}
    return torch.tensor([index[Path(p).parent.name] if Path(p).parent.name in index
                         else index[Path(p).name.split("__")[0]] for p in paths])


def extract_sets(clf, cache, args, t0: float) -> tuple[dict, dict]:
    """Render the calibration and in-domain photos, find the real ones, and extract every set's features."""
    from dkgzsl_app.trainer.render import write_test_photos, write_training_folder

    with tempfile.TemporaryDirectory() as tmp:
        cal_dir = Path(tmp) / "cal"
        write_training_folder(cal_dir, args.calibration_per_class, 7)
        sets = {"calibration": sorted(str(p) for p in cal_dir.glob("*/*.jpg"))}
        for s in args.seeds:
            sets[f"demo_seed{s}"] = [str(p) for p in write_test_photos(Path(tmp) / f"s{s}", args.per_class, s)]
        sets["real"] = real_photos(args.extra)
        feats = {}
        for name, paths in sets.items():
            got = clf.features(paths, batch_size=32, workers=2, cache=cache)
            assert not got.errors, got.errors
            feats[name] = torch.stack([got.features[i] for i in range(len(paths))])
            print(f"{name}: {len(paths)} photos ({time.time() - t0:.0f} s)", flush=True)
    return sets, feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=10, help="in-domain test photos per class and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--calibration-per-class", type=int, default=20)
    ap.add_argument("--keep", type=float, default=0.95)
    ap.add_argument("--extra", action="append", default=[], help="a folder of more out-of-domain real photos")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "openset_demo.json")
    ap.add_argument("--features", type=Path, default=None,
                    help="a .pt file of the sets' backbone features: read when it exists (no rendering, no "
                         "backbone), else written after extraction")
    args = ap.parse_args()

    import dkgzsl_app
    from dkgzsl_app.models.openset import (confidence, expected_calibration_error, fit_threshold, score_photos)

    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.locations import feature_cache_file

    t0 = time.time()
    cache = FeatureCache(feature_cache_file())  # features once per photo: the shipped-threshold pass reuses them
    clf = dkgzsl_app.load("demo-shapes", device="cpu", precision="fp32")
    cfg = clf.bundle.config
    model = clf.model
    seen = torch.tensor(cfg.seen, dtype=torch.float32)
    if args.features is not None and args.features.exists():
        saved = torch.load(args.features, weights_only=True)  # tensors and plain containers only
        sets = {k: v["paths"] for k, v in saved.items()}
        feats = {k: v["features"] for k, v in saved.items()}
        print(f"features of {', '.join(f'{k} ({len(v)})' for k, v in sets.items())} from {args.features}")
    else:
        sets, feats = extract_sets(clf, cache, args, t0)
        if args.features is not None:
            torch.save({k: {"paths": sets[k], "features": feats[k]} for k in sets}, args.features)
    scored = {name: score_photos(model, cfg, x) for name, x in feats.items()}
    score_names = list(scored["calibration"][1])
    # the bundle as shipped: its own score and recorded threshold, as Classifier.classify applies them
    shipped = {name: float((scored[name][1][cfg.open_set["score"]] < cfg.open_set["threshold"]).float().mean())
               for name in sets if name != "calibration"} if cfg.open_set else {}
    demo_sets = [n for n in sets if n.startswith("demo_")]

    per_score = {}
    for s in score_names:
        thr = fit_threshold(scored["calibration"][1][s].numpy(), args.keep)
        row = {"threshold": thr}
        for name in demo_sets + ["real"]:
            row[f"flagged_{name}"] = float((scored[name][1][s] < thr).float().mean())
        demo_all = torch.cat([scored[n][1][s] for n in demo_sets])
        row["flagged_demo"] = float((demo_all < thr).float().mean())
        row["auroc_demo_vs_real"] = auroc(demo_all, scored["real"][1][s])
        per_score[s] = row

    temperature = float((cfg.confidence or {}).get("temperature") or 0.0)
    calib = {}
    for name in demo_sets + ["all_demo"]:
        members = demo_sets if name == "all_demo" else [name]
        probs = torch.cat([scored[n][0] for n in members])
        labels = torch.cat([labels_of(sets[n], cfg.class_names) for n in members])
        score = probs - cfg.calibration * seen
        correct = (score.argmax(1) == labels).numpy()
        new = confidence(probs, seen, cfg.calibration, temperature).max(1).values.numpy()
        old = score.max(1).values.clamp(0, 1).numpy()
        e_new, bins_new = expected_calibration_error(new, correct)
        e_old, bins_old = expected_calibration_error(old, correct)
        calib[name] = {"photos": int(len(labels)), "accuracy": float(correct.mean()), "ece_confidence": e_new,
                       "ece_old_score": e_old, "mean_confidence": float(new.mean()),
                       "mean_old_score": float(old.mean()), "reliability_confidence": bins_new,
                       "reliability_old_score": bins_old}

    result = {
        "bundle": "demo-shapes", "weights_sha256": cfg.weights_sha256, "open_set": cfg.open_set,
        "confidence": cfg.confidence, "calibration_gamma": cfg.calibration,
        "photos": {k: len(v) for k, v in sets.items()},
        "real_photos": [os.path.relpath(p, ROOT) if p.startswith(str(ROOT)) else os.path.basename(p)
                        for p in sets["real"]],
        "keep": args.keep, "scores": per_score,
        "shipped_threshold_flagged": shipped, "ece": calib,
        "command": "python benchmarks/openset.py " + " ".join(sys.argv[1:]),
        "features_from": str(args.features) if args.features is not None else None,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "seconds": round(time.time() - t0, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for s, row in per_score.items():
        print(f"{s:17s} thr {row['threshold']:9.4f}  flagged demo {row['flagged_demo']:.3f}  "
              f"real {row['flagged_real']:.3f}  AUROC {row['auroc_demo_vs_real']:.3f}")
    print("shipped threshold flagged:", shipped)
    c = calib["all_demo"]
    print(f"ECE on {c['photos']} demo photos: confidence {c['ece_confidence']:.3f}, old score {c['ece_old_score']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
