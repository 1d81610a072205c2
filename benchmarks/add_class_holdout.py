"""Hold out an unseen class of the demo model, add it back from its attribute row, and measure.

For each held-out class H (default: every unseen class of demo-shapes):
  1. write a copy of the bundle without H (its row dropped from C_s, the OOD head's input, the class
     attributes and the class list; re-saved with save_bundle);
  2. classify freshly rendered test photos (`dkgzsl demo` with another seed) with that copy;
  3. add H back with userclasses.add_classes from its attribute row, and classify again.
Reports H's recall after adding it (and with the original bundle, for reference), and seen / other-unseen
accuracy before and after (calibrated top-1, the bundle's γ). Backbone features are computed once
(feature cache); CPU only.

    .venv/bin/python benchmarks/add_class_holdout.py [--per-class 20] [--seed 7] [--classes a,b]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def holdout_bundle(bundle, name: str, out: Path) -> Path:
    """Save ``bundle`` without class ``name``."""
    import dataclasses

    from dkgzsl_app.models.bundle import save_bundle
    from dkgzsl_app.models.networks import ZSLModel

    cfg = bundle.config
    i = cfg.class_names.index(name)
    keep = [j for j in range(cfg.num_classes) if j != i]
    new_cfg = dataclasses.replace(cfg, class_names=[cfg.class_names[j] for j in keep],
                                  seen=[cfg.seen[j] for j in keep], weights_sha256="",
                                  provenance={**cfg.provenance, "holdout": name})
    state = dict(bundle.model.state_dict())
    state["student.head.weight"] = state["student.head.weight"][keep]
    state["student.head.bias"] = state["student.head.bias"][keep]
    state["ood_head.weight"] = state["ood_head.weight"][:, keep]
    state["class_attributes"] = state["class_attributes"][keep]
    model = ZSLModel.from_config(new_cfg)
    model.load_state_dict(state)
    return save_bundle(model, new_cfg, out, [bundle.origins[j] for j in keep])


def accuracy(preds, truth: list[str], names: set[str]) -> float:
    pairs = [(p.top[0].name, t) for p, t in zip(preds, truth) if t in names and p.top]
    return sum(a == t for a, t in pairs) / max(1, len(pairs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7, help="rendering seed (training used 0, the README demo 1)")
    ap.add_argument("--classes", default="", help="comma-separated unseen classes to hold out (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "add_class_holdout.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dkgzsl-holdout-"))
    os.environ["DKGZSL_HOME"] = str(work / "home")  # a private registry and feature cache

    import torch

    import dkgzsl_app
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.classify import DEFAULT_MODEL, resolve_source
    from dkgzsl_app.models.bundle import load_bundle
    from dkgzsl_app.trainer.render import write_test_photos
    from dkgzsl_app.userclasses import add_classes

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    bundle = load_bundle(resolve_source(DEFAULT_MODEL))
    cfg = bundle.config
    unseen = [n for n, s in zip(cfg.class_names, cfg.seen) if not s]
    chosen = args.classes.split(",") if args.classes else unseen
    t0 = time.perf_counter()
    photos = sorted(str(p) for p in write_test_photos(work / "photos", args.per_class, args.seed))
    truth = [Path(p).name.split("__")[0] for p in photos]
    cache = FeatureCache(work / "features.sqlite3")
    full = dkgzsl_app.load(DEFAULT_MODEL, device="cpu")
    ref = full.classify(photos, top_k=1, workers=2, cache=cache)
    seen = {n for n, s in zip(cfg.class_names, cfg.seen) if s}
    extract_s = time.perf_counter() - t0
    rows = []
    for name in chosen:
        folder = holdout_bundle(bundle, name, work / f"without-{name}")
        clf = dkgzsl_app.load(f"local-dir:{folder}", device="cpu")
        before = clf.classify(photos, top_k=1, workers=0, cache=cache)
        values = dict(zip(cfg.attribute_names, bundle.model.class_attributes[cfg.class_names.index(name)].tolist()))
        t = time.perf_counter()
        add_classes(f"local-dir:{folder}", {name: values}, warn=lambda m: None)
        add_s = time.perf_counter() - t
        clf.reload_classes()
        after = clf.classify(photos, top_k=1, workers=0, cache=cache)
        others = set(unseen) - {name}
        row = {"class": name, "recall_added": accuracy(after, truth, {name}),
               "recall_original_bundle": accuracy(ref, truth, {name}),
               "seen_acc_before": accuracy(before, truth, seen), "seen_acc_after": accuracy(after, truth, seen),
               "other_unseen_acc_before": accuracy(before, truth, others),
               "other_unseen_acc_after": accuracy(after, truth, others),
               "add_seconds": round(add_s, 3)}
        row["seen_acc_change"] = row["seen_acc_after"] - row["seen_acc_before"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    result = {"benchmark": "add_class_holdout", "model": DEFAULT_MODEL, "photos_per_class": args.per_class,
              "render_seed": args.seed, "photos": len(photos), "feature_extraction_seconds": round(extract_s, 1),
              "calibration": cfg.calibration, "held_out": rows,
              "mean": {k: round(mean(k), 4) for k in ("recall_added", "recall_original_bundle", "seen_acc_before",
                                                     "seen_acc_after", "seen_acc_change", "other_unseen_acc_before",
                                                     "other_unseen_acc_after", "add_seconds")},
              "original_bundle": {"seen_acc": accuracy(ref, truth, seen), "unseen_acc": accuracy(ref, truth, set(unseen))},
              "device": "cpu", "threads": torch.get_num_threads(), "python": platform.python_version(),
              "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["mean"], indent=2))
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
