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

Choosing RefitConfig.weight_decay on SEEN classes only (no photo of an unseen class is rendered or read):

    .venv/bin/python benchmarks/add_class_holdout.py --select-weight-decay 0.001,0.01,0.03,0.1,0.3,1
        → benchmarks/results/add_class_weight_decay_seen.json

Each seen class S in turn is held out and added back with each weight; the score is the harmonic mean of
S's recall and the accuracy on the other seen classes (photos rendered with --seed, seen classes only).
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
    if cfg.seen[i]:  # the teacher scores seen classes only, in class order
        seen_keep = [r for r, j in enumerate(j for j in range(cfg.num_classes) if cfg.seen[j]) if j != i]
        state["teacher.head.weight"] = state["teacher.head.weight"][seen_keep]
        state["teacher.head.bias"] = state["teacher.head.bias"][seen_keep]
    model = ZSLModel.from_config(new_cfg)
    model.load_state_dict(state)
    return save_bundle(model, new_cfg, out, [bundle.origins[j] for j in keep])


def full_head_refit(bundle, values, steps: int = 200, lr: float = 1e-3):
    """The alternative not taken: refit every row of C_s (built-in rows from the bundle, the new row from
    the same start as ours) by Adam on the same generated features; returns the head (C + 1 rows)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from dkgzsl_app.classes.refit import RefitConfig, generated_embeddings

    cfg, model = bundle.config, bundle.model
    c, k = cfg.num_classes, RefitConfig().per_class(cfg.num_classes)
    attrs = np.concatenate([model.class_attributes.numpy(), np.asarray([values], np.float32)])
    e = generated_embeddings(model, attrs, cfg.attribute_norm, cfg.weights_sha256, k).clone()
    y = torch.arange(c + 1).repeat_interleave(k)
    old = model.student.head
    head = torch.nn.Linear(old.in_features, c + 1)
    with torch.no_grad():
        head.weight[:c], head.bias[:c] = old.weight, old.bias
        head.weight[c] = F.normalize(e[c * k:].mean(0), dim=0) * old.weight.norm(dim=1).median()
        head.bias[c] = old.bias.median()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(head(e) / cfg.head.tau_student, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def full_head_accuracy(clf, head, photos, truth, cache, names: list[str], groups: dict) -> dict:
    import torch

    got = clf.features(photos, workers=0, cache=cache)
    order = sorted(got.features)
    x = torch.stack([got.features[i] for i in order])
    cfg, m = clf.base_bundle.config, clf.base_bundle.model
    seen = torch.tensor(list(cfg.seen) + [False], dtype=torch.float32)
    with torch.no_grad():
        probs = torch.softmax(head(m.student.embedding(m.scale_features(x))) / cfg.head.tau_student, 1)
    pred = (probs - cfg.calibration * seen).argmax(1)
    out = {}
    for key, members in groups.items():
        pairs = [(names[int(pred[j])], truth[i]) for j, i in enumerate(order) if truth[i] in members]
        out[key] = sum(a == t for a, t in pairs) / max(1, len(pairs))
    return out


def accuracy(preds, truth: list[str], names: set[str]) -> float:
    pairs = [(p.top[0].name, t) for p, t in zip(preds, truth) if t in names and p.top]
    return sum(a == t for a, t in pairs) / max(1, len(pairs))


def calibrated_top1(clf, x):
    """Calibrated top-1 class index of feature rows ``x`` (N, F) under the classifier's current view."""
    import torch

    cfg, m = clf.bundle.config, clf.model
    seen = torch.tensor(cfg.seen, dtype=torch.float32)
    with torch.no_grad():
        logits = m.student(m.scale_features(x))[1]  # (N, C)
        return (torch.softmax(logits / cfg.head.tau_student, 1) - cfg.calibration * seen).argmax(1)


def select_weight_decay(args, weights: list[float]) -> None:
    """Hold out each seen class, add it back with each L2 weight, score on seen-class photos only."""
    import functools

    import torch

    import dkgzsl_app
    import dkgzsl_app.classes.refit as refit
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.classes import add_classes, remove_classes
    from dkgzsl_app.models.bundle import load_bundle
    from dkgzsl_app.sources import DEFAULT_MODEL, resolve_source
    from dkgzsl_app.trainer.render import demo_classes, render

    work = Path(args.work or tempfile.mkdtemp(prefix="dkgzsl-holdout-"))
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    os.environ["DKGZSL_HOME"] = str(home)
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    bundle = load_bundle(resolve_source(DEFAULT_MODEL))
    cfg = bundle.config
    seen = [n for n, s in zip(cfg.class_names, cfg.seen) if s]
    chosen = args.classes.split(",") if args.classes else seen
    assert set(chosen) <= set(seen), "--select-weight-decay holds out seen classes only"
    photo_dir = work / f"seen-photos-{args.per_class}-{args.seed}"
    photo_dir.mkdir(parents=True, exist_ok=True)
    for c in demo_classes():  # seen classes only: the selection never sees an unseen class's photo
        if c.name in seen:
            for i in range(args.per_class):
                path = photo_dir / f"{c.name}__{i:04d}.jpg"
                if not path.is_file():
                    render(c, args.seed * 1_000_003 + i).save(path, quality=90)
    photos = sorted(str(p) for p in photo_dir.glob("*.jpg"))
    truth = [Path(p).name.split("__")[0] for p in photos]
    t0 = time.perf_counter()
    full = dkgzsl_app.load(DEFAULT_MODEL, device="cpu")
    got = full.features(photos, workers=2, cache=FeatureCache(work / "features.sqlite3"))
    x = torch.stack([got.features[i] for i in range(len(photos))])  # (N, F)
    extract_s = time.perf_counter() - t0
    real_fit = refit.fit_user_rows
    per_weight = {w: [] for w in weights}
    for name in chosen:
        folder = holdout_bundle(bundle, name, home / f"without-{name}")
        src = f"local-dir:{folder}"
        clf = dkgzsl_app.load(src, device="cpu")
        values = dict(zip(cfg.attribute_names, bundle.model.class_attributes[cfg.class_names.index(name)].tolist()))
        own = torch.tensor([t == name for t in truth])
        for w in weights:
            refit.fit_user_rows = functools.partial(real_fit, rc=refit.RefitConfig(weight_decay=w))
            try:
                add_classes(src, {name: values}, warn=lambda note: None)
            finally:
                refit.fit_user_rows = real_fit
            clf.reload_classes()
            names = clf.class_names
            pred = [names[i] for i in calibrated_top1(clf, x).tolist()]
            hits = torch.tensor([p == t for p, t in zip(pred, truth)], dtype=torch.float32)
            row = {"class": name, "recall_added": float(hits[own].mean()), "other_seen_acc": float(hits[~own].mean())}
            per_weight[w].append(row)
            remove_classes(src, [name])
        print(name, [(w, round(per_weight[w][-1]["recall_added"], 3)) for w in weights], flush=True)

    def h(a: float, b: float) -> float:
        return 2 * a * b / (a + b) if a + b else 0.0

    summary = []
    for w in weights:
        rows = per_weight[w]
        rec = sum(r["recall_added"] for r in rows) / len(rows)
        acc = sum(r["other_seen_acc"] for r in rows) / len(rows)
        summary.append({"weight_decay": w, "recall_added": round(rec, 4), "other_seen_acc": round(acc, 4),
                        "harmonic_mean": round(h(rec, acc), 4)})
    best = max(summary, key=lambda r: (r["harmonic_mean"], r["weight_decay"]))
    result = {"benchmark": "add_class_holdout --select-weight-decay (seen classes only)", "model": DEFAULT_MODEL,
              "held_out": chosen, "photos_per_class": args.per_class, "render_seed": args.seed,
              "photos": len(photos), "criterion": "harmonic mean of the held-out seen class's recall and the "
              "accuracy on the other seen classes (calibrated top-1), averaged over held-out classes",
              "sweep": summary, "chosen": best["weight_decay"], "feature_extraction_seconds": round(extract_s, 1),
              "per_class": {str(w): per_weight[w] for w in weights}}
    out = ROOT / "benchmarks" / "results" / "add_class_weight_decay_seen.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"chosen: {best['weight_decay']}; written to {out}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7, help="rendering seed (training used 0, the README demo 1)")
    ap.add_argument("--classes", default="", help="comma-separated unseen classes to hold out (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "add_class_holdout.json"))
    ap.add_argument("--compare-full-head", action="store_true",
                    help="also refit the whole head (Adam, 200 steps) for each held-out class and score it")
    ap.add_argument("--work", default="", help="keep photos and the feature cache here (reused between runs)")
    ap.add_argument("--select-weight-decay", default="",
                    help="comma-separated L2 weights: choose RefitConfig.weight_decay on held-out SEEN classes")
    args = ap.parse_args()
    if args.select_weight_decay:
        select_weight_decay(args, [float(w) for w in args.select_weight_decay.split(",")])
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="dkgzsl-holdout-"))
    work.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    os.environ["DKGZSL_HOME"] = str(home)  # a private, empty class registry

    import torch

    import dkgzsl_app
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.sources import DEFAULT_MODEL, resolve_source
    from dkgzsl_app.models.bundle import load_bundle
    from dkgzsl_app.trainer.render import write_test_photos
    from dkgzsl_app.classes import add_classes

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    bundle = load_bundle(resolve_source(DEFAULT_MODEL))
    cfg = bundle.config
    unseen = [n for n, s in zip(cfg.class_names, cfg.seen) if not s]
    chosen = args.classes.split(",") if args.classes else unseen
    t0 = time.perf_counter()
    photo_dir = work / f"photos-{args.per_class}-{args.seed}"
    if not photo_dir.is_dir():
        write_test_photos(photo_dir, args.per_class, args.seed)
    photos = sorted(str(p) for p in photo_dir.glob("*.jpg"))
    truth = [Path(p).name.split("__")[0] for p in photos]
    cache = FeatureCache(work / "features.sqlite3")
    full = dkgzsl_app.load(DEFAULT_MODEL, device="cpu")
    ref = full.classify(photos, top_k=1, workers=2, cache=cache)
    seen = {n for n, s in zip(cfg.class_names, cfg.seen) if s}
    extract_s = time.perf_counter() - t0
    rows = []
    for name in chosen:
        folder = holdout_bundle(bundle, name, home / f"without-{name}")
        clf = dkgzsl_app.load(f"local-dir:{folder}", device="cpu")
        before = clf.classify(photos, top_k=1, workers=0, cache=cache)
        values = dict(zip(cfg.attribute_names, bundle.model.class_attributes[cfg.class_names.index(name)].tolist()))
        t = time.perf_counter()
        notes: list[str] = []
        add_classes(f"local-dir:{folder}", {name: values}, warn=notes.append)
        add_s = time.perf_counter() - t
        clf.reload_classes()
        after = clf.classify(photos, top_k=1, workers=0, cache=cache)
        others = set(unseen) - {name}
        row = {"class": name, "recall_added": accuracy(after, truth, {name}),
               "recall_original_bundle": accuracy(ref, truth, {name}),
               "seen_acc_before": accuracy(before, truth, seen), "seen_acc_after": accuracy(after, truth, seen),
               "other_unseen_acc_before": accuracy(before, truth, others),
               "other_unseen_acc_after": accuracy(after, truth, others),
               "add_seconds": round(add_s, 3), "warnings": notes}
        row["seen_acc_change"] = row["seen_acc_after"] - row["seen_acc_before"]
        if args.compare_full_head:
            base = clf.base_bundle
            t = time.perf_counter()
            head = full_head_refit(base, list(values.values()))
            full = full_head_accuracy(clf, head, photos, truth, cache, base.config.class_names + [name],
                                      {"recall_added": {name}, "seen_acc_after": seen, "other_unseen_acc_after": others})
            row["full_head_refit"] = {**full, "seen_acc_change": full["seen_acc_after"] - row["seen_acc_before"],
                                      "seconds": round(time.perf_counter() - t, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    result = {"benchmark": "add_class_holdout", "model": DEFAULT_MODEL, "photos_per_class": args.per_class,
              "render_seed": args.seed, "photos": len(photos), "feature_extraction_seconds": round(extract_s, 1),
              "calibration": cfg.calibration, "held_out": rows,
              "mean": {k: round(mean(k), 4) for k in ("recall_added", "recall_original_bundle", "seen_acc_before",
                                                     "seen_acc_after", "seen_acc_change", "other_unseen_acc_before",
                                                     "other_unseen_acc_after", "add_seconds")},
              "full_head_refit_mean": {k: round(sum(r["full_head_refit"][k] for r in rows) / len(rows), 4)
                                       for k in ("recall_added", "seen_acc_after", "seen_acc_change",
                                                 "other_unseen_acc_after", "seconds")}
              if args.compare_full_head else None,
              "original_bundle": {"seen_acc": accuracy(ref, truth, seen), "unseen_acc": accuracy(ref, truth, set(unseen))},
              "device": "cpu", "threads": torch.get_num_threads(), "python": platform.python_version(),
              "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["mean"], indent=2))
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
