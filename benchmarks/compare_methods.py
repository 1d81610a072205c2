#!/usr/bin/env python3
"""Every method on the same data and the same protocol: the comparison table of issue 13.

Rows: the closed-form ridge reference (features → attributes, calibrated stacking), f-CLSWGAN + D3GZSL,
CE-GZSL + D3GZSL, DKGZSL on f-CLSWGAN and on CE-GZSL, MSDN and MSDN++. Sets: the two rendered demo sets
(``plain``, ``scenes``: every row; region methods read the 7×7 region map of tf_efficientnet_lite0, pooled
methods its mean over regions) and proxy xlsa17 features (``cub``, ``awa2``, ``sun``: the rows that need
no regions; MSDN/MSDN++ need region maps, which xlsa17 files do not hold). Every trained row selects its
epochs and calibration γ on validation classes carved from the seen classes (``select=val``, the default);
test photos are scored once, at the end. Rendered sets are scored on two fresh test renders (seeds 1 and 2,
20 photos per class) and the mean is reported.

    # rendered sets: render, extract (cached in WORK/cache), train, score; one JSON per (set, row)
    python benchmarks/compare_methods.py --work /tmp/cmp --sets plain,scenes
    # proxy sets: folders CUB/AWA2/SUN made by ../shared/bench/make_proxy_features.py (see --proxy-root)
    python benchmarks/compare_methods.py --work /tmp/cmp --sets awa2,sun,cub --proxy-root /tmp/proxy
    # the markdown table (docs/methods_comparison.md) and the JSON of every row
    python benchmarks/compare_methods.py --work /tmp/cmp --table docs/methods_comparison.md \
        --json benchmarks/results/compare_methods.json

A rerun skips (set, row) pairs already in WORK/results. Training uses ``train_bundle``'s defaults (2
threads, deterministic algorithms), the settings below (RECIPES), seed 0.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_ablation import ridge  # noqa: E402  (the benchmarks' closed-form reference, unchanged)

RENDERED = ("plain", "scenes")
PROXY = {"cub": "CUB", "awa2": "AWA2", "sun": "SUN"}
TEST_SEEDS = (1, 2)

# row → (label, TrainConfig fields, feature kind on the rendered sets); None: the ridge reference
ROWS = {
    "ridge": ("closed-form ridge (reference)", None, "pooled"),
    "d3gzsl": ("f-CLSWGAN + D3GZSL", {"method": "d3gzsl"}, "pooled"),
    "d3gzsl-ce": ("CE-GZSL + D3GZSL", {"method": "d3gzsl", "generator": "ce-gzsl"}, "pooled"),
    "dkgzsl": ("DKGZSL (f-CLSWGAN)", {"method": "dkgzsl"}, "regions"),
    "dkgzsl-ce": ("DKGZSL (CE-GZSL)", {"method": "dkgzsl", "generator": "ce-gzsl"}, "regions"),
    "msdn": ("MSDN", {"method": "msdn"}, "regions"),
    "msdnpp": ("MSDN++", {"method": "msdnpp"}, "regions"),
}
REGION_ONLY = {"msdn", "msdnpp"}

# the generative rows: the demo model's recipe (its card) at 20 epochs on rendered sets, the proxy
# benchmarks' settings (generator_quality.py) on xlsa17 proxies; MSDN/MSDN++: the authors' batch 50, lr 1e-4,
# 30 epochs (RMSprop, trainer/msdn.py)
RECIPES = {
    "rendered": {"hidden_dim": 512, "critic_hidden_dim": 512, "embed_dim": 256, "epochs": 20, "lr": 1e-3,
                 "cls_weight": 1.0, "gen_per_unseen": 20, "batch_size": 256},
    "proxy": {"hidden_dim": 512, "critic_hidden_dim": 512, "embed_dim": 512, "epochs": 6, "lr": 1e-3,
              "cls_weight": 1.0, "gen_per_unseen": 5, "batch_size": 256},
    "msdn": {"batch_size": 50, "lr": 1e-4, "epochs": 30},
}

# the seed papers' published numbers: THEIR code on REAL data (ResNet-101 features of the real data sets;
# DKGZSL image-level with fine-tuned regions), from ../shared/design/METHODS.md; (U, S, H, CZSL), None = not given
PUBLISHED = {
    "d3gzsl": {"cub": (None, None, 56.5, None)},
    "d3gzsl-ce": {"cub": (None, None, 67.8, None), "awa2": (None, None, 70.1, None)},
    "dkgzsl": {"cub": (None, None, 75.4, 85.2), "awa2": (None, None, 72.9, 79.2), "sun": (None, None, 44.3, 67.7)},
    "msdn": {"cub": (68.7, 67.5, 68.1, 76.1), "awa2": (62.0, 74.5, 67.7, 70.1), "sun": (52.2, 34.2, 41.3, 65.8)},
    "msdnpp": {"cub": (None, None, 70.6, 78.5), "awa2": (None, None, 72.5, 73.4), "sun": (None, None, 42.1, 67.5)},
}
PUBLISHED_WHAT = {"d3gzsl": "f-CLSWGAN+D3 (D3GZSL paper, Table 1)", "d3gzsl-ce": "CE-GZSL+D3 (D3GZSL paper, Table 1)",
                  "dkgzsl": "DKGZSL, ResNet-101", "msdn": "MSDN (CVPR 2022)", "msdnpp": "MSDN++"}


def dkgzsl_cli() -> str:
    return str(Path(sys.executable).with_name("dkgzsl"))


# ---------------------------------------------------------------- data
def render(work: Path, name: str) -> None:
    """``dkgzsl demo`` training (seed 0, 100 per class) and test (seeds 1, 2; 20 per class) photos."""
    scenes = ["--scenes"] if name == "scenes" else []
    jobs = [(work / name / "train-photos", ["--training", "--per-class", "100", "--seed", "0"])]
    jobs += [(work / name / f"test{s}-photos", ["--per-class", "20", "--seed", str(s)]) for s in TEST_SEEDS]
    for folder, args in jobs:
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run([dkgzsl_cli(), "demo", *scenes, *args, str(folder)], check=True)
            (folder / ".done").write_text("")


def rendered_sets(work: Path, name: str, cache) -> dict:
    """{"regions"|"pooled": (train FeatureSet, [test FeatureSet per seed])}, extracted once (region maps;
    the pooled features are their mean over regions, in float32). The training set is kept as a feature
    folder, each test render as ``test<seed>.npz`` (features, labels: plain arrays, no pickles)."""
    from dkgzsl_app.trainer.data import load_feature_folder

    root = work / name / "features"
    if not all((root / f"test{s}.npz").exists() for s in TEST_SEEDS):
        extract_rendered(work, name, cache, root)
    train = load_feature_folder(root / "train")
    tests = []
    for s in TEST_SEEDS:
        with np.load(root / f"test{s}.npz", allow_pickle=False) as z:
            tests.append(test_set(train, z["features"], z["labels"], f"{work / name}/test{s}-photos"))
    pooled = [test_set(t, t.features.mean(1, dtype=np.float32), t.labels, t.source) for t in [train, *tests]]
    pooled[0].trainval, pooled[0].test_seen, pooled[0].test_unseen = train.trainval, train.test_seen, train.test_unseen
    return {"regions": (train, tests), "pooled": (pooled[0], pooled[1:])}


def test_set(like, features, labels, source: str):
    """A FeatureSet of test rows with ``like``'s classes, attributes and split."""
    from dkgzsl_app.trainer.data import FeatureSet

    idx = np.arange(len(labels))
    seen_rows = like.seen[labels]
    return FeatureSet(features=features, labels=labels, class_names=like.class_names, attributes=like.attributes,
                      attribute_names=like.attribute_names, seen=like.seen, trainval=np.zeros(0, np.int64),
                      test_seen=idx[seen_rows], test_unseen=idx[~seen_rows], source=source)


def extract_rendered(work: Path, name: str, cache, root: Path) -> None:
    from dkgzsl_app.extract import extract_cached
    from dkgzsl_app.image_data import feature_set_from_images, labelled_photos
    from dkgzsl_app.models.backbone import create_backbone
    from dkgzsl_app.trainer.data import save_feature_folder

    bb = create_backbone("tf_efficientnet_lite0")
    train_dir = work / name / "train-photos"
    t = time.perf_counter()
    # as `dkgzsl train --images` does: fp32, default layout on the CPU
    fs = feature_set_from_images(train_dir, train_dir / "classes.csv", bb, cache=cache, kind="regions",
                                 workers=2)
    save_feature_folder(fs, root / "train")
    print(f"[{name}] training regions {fs.features.shape} in {time.perf_counter() - t:.0f} s", flush=True)
    index = {n: i for i, n in enumerate(fs.class_names)}
    for s in TEST_SEEDS:
        photos = labelled_photos(work / name / f"test{s}-photos")
        paths = [str(p) for c in sorted(photos) for p in photos[c]]
        labels = np.array([index[c] for c in sorted(photos) for _ in photos[c]], np.int64)
        # as `dkgzsl evaluate --images` does: fp32, channels_last on the CPU
        got = extract_cached(bb, paths, "cpu", 32, 2, cache, None, "fp32", None, "regions")
        assert not got.errors, got.errors
        feats = np.stack([got.features[i].numpy() for i in range(len(paths))]).astype(np.float16)
        np.savez(root / f"test{s}.npz", features=feats, labels=labels)
        print(f"[{name}] test seed {s} regions {feats.shape}", flush=True)


def combined(train, test):
    """One FeatureSet: ``train``'s rows as trainval, ``test``'s as the test split (for the ridge reference)."""
    from dkgzsl_app.trainer.data import FeatureSet

    n = len(train.labels)
    return FeatureSet(features=np.concatenate([train.features, test.features]),
                      labels=np.concatenate([train.labels, test.labels]), class_names=train.class_names,
                      attributes=train.attributes, attribute_names=train.attribute_names, seen=train.seen,
                      trainval=np.arange(n), test_seen=test.test_seen + n, test_unseen=test.test_unseen + n,
                      source=train.source)


# ---------------------------------------------------------------- one row
METRICS = ("U", "S", "H", "CZSL", "AUSUC")


def run_row(row: str, set_name: str, train, tests: list, runs: Path) -> dict:
    from dkgzsl_app.models.bundle import load_bundle
    from dkgzsl_app.trainer.config import TrainConfig
    from dkgzsl_app.trainer.evaluate import evaluate_bundle
    from dkgzsl_app.trainer.train import train_bundle

    label, fields, _ = ROWS[row]
    load0 = os.getloadavg()
    if fields is None:
        t = time.perf_counter()
        per = [ridge(train if test is train else combined(train, test), 0) for test in tests]  # proxies: one set
        secs, cpu, extra = time.perf_counter() - t, None, {"lambda": [p["lambda"] for p in per]}
    else:
        recipe = RECIPES["msdn"] if row in REGION_ONLY else RECIPES["proxy" if set_name in PROXY else "rendered"]
        cfg = TrainConfig(**recipe, **fields, seed=0)
        run = runs / f"{set_name}__{row}"
        shutil.rmtree(run, ignore_errors=True)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        out = train_bundle(train, cfg, run)
        secs = time.perf_counter() - t
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        bundle = load_bundle(out.bundle_dir)
        per = [evaluate_bundle(bundle, test) for test in tests]
        extra = {"selected_epoch": out.best_epoch, "gamma": bundle.config.calibration,
                 "settings": {**recipe, **fields, "seed": 0}}
        shutil.rmtree(run / "checkpoints", ignore_errors=True)
    res = {"set": set_name, "row": row, "label": label,
           **{k: float(np.mean([p[k] for p in per])) for k in METRICS},
           "per_test_set": [{k: float(p[k]) for k in METRICS} for p in per],
           "train_seconds": round(secs, 1), "train_cpu_seconds": None if cpu is None else round(cpu, 1),
           "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
           "data_sha256": train.sha256(), **extra}
    return res


# ---------------------------------------------------------------- table
def fmt(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def published_cell(row: str, set_name: str) -> str:
    p = PUBLISHED.get(row, {}).get(set_name)
    if not p:
        return "–"
    u, s, h, z = p
    parts = [f"U/S/H {u}/{s}/{h}" if u is not None else f"H {h}"]
    if z is not None:
        parts.append(f"CZSL {z}")
    return ", ".join(parts)


def table(results: dict) -> str:
    titles = {"plain": "Rendered demo set (`dkgzsl demo`): 38 seen + 10 unseen classes, 12 attributes",
              "scenes": "Rendered scenes set (`dkgzsl demo --scenes`): the same classes, small objects among distractors",
              "cub": "Proxy CUB (xlsa17 CUB attributes and splits, proxy features)",
              "awa2": "Proxy AWA2 (xlsa17 AWA2 attributes and splits, proxy features)",
              "sun": "Proxy SUN (xlsa17 SUN attributes and splits, proxy features)"}
    lines = []
    for set_name in (*RENDERED, *PROXY):
        rows = [results[(set_name, r)] for r in ROWS if (set_name, r) in results]
        if not rows:
            continue
        lines += [f"### {titles[set_name]}", ""]
        pub = set_name in PROXY
        head = "| method | features | U | S | H | CZSL | AUSUC | epoch | γ | train s |" + (
            " published by the authors, THEIR code on the REAL data set |" if pub else "")
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for r in rows:
            kind = ROWS[r["row"]][2] if set_name in RENDERED else "pooled"
            feats = "7×7 regions" if kind == "regions" else "pooled"
            gamma = r.get("gamma")
            cells = [r["label"], feats, *(fmt(r[k]) for k in METRICS), str(r.get("selected_epoch", "–")),
                     "–" if gamma is None else f"{gamma:.3f}", f"{r['train_seconds']:.0f}"]
            if pub:
                cells.append(published_cell(r["row"], set_name))
            lines.append("| " + " | ".join(cells) + " |")
        for r in ROWS:
            if (set_name, r) not in results and not (pub and r in REGION_ONLY):
                lines.append(f"| {ROWS[r][0]} | not run yet (rerun the command: it trains the rows missing) | "
                             + " | ".join(["–"] * 8) + (f" | {published_cell(r, set_name)} |" if pub else " |"))
        if pub:
            for r in REGION_ONLY:
                lines.append(f"| {ROWS[r][0]} | needs region maps (not in xlsa17 files) | " + " | ".join(["–"] * 8)
                             + f" | {published_cell(r, set_name)} |")
        lines.append("")
    return "\n".join(lines)


BEGIN, END = "<!-- compare_methods.py: table begins -->", "<!-- compare_methods.py: table ends -->"


def write_between_markers(path: Path, text: str) -> None:
    """Put ``text`` between the markers of ``path`` (the prose around them stays), or write a new file."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN) + len(BEGIN)] + "\n\n" + text + "\n" + old[old.index(END):]
    else:
        new = old + f"{BEGIN}\n\n{text}\n{END}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="renders, features, runs and per-row results")
    p.add_argument("--sets", default="", help="comma-separated: plain, scenes, cub, awa2, sun")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all)")
    p.add_argument("--proxy-root", type=Path, help="folder with CUB/, AWA2/, SUN/ proxy feature folders")
    p.add_argument("--cache", type=Path, help="feature cache folder (default WORK/cache; features.sqlite3 in it)")
    p.add_argument("--table", type=Path, help="write the markdown table of every result in WORK/results here")
    p.add_argument("--json", type=Path, help="write every result in WORK/results as one JSON file here")
    a = p.parse_args()

    done_dir = a.work / "results"
    done_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in a.rows.split(",") if r]
    for r in rows:
        if r not in ROWS:
            p.error(f"unknown row {r!r}; rows: {', '.join(ROWS)}")
    for set_name in filter(None, a.sets.split(",")):
        if set_name in RENDERED:
            from dkgzsl_app.cache import open_cache

            render(a.work, set_name)
            data = rendered_sets(a.work, set_name, open_cache((a.cache or a.work / "cache") / "features.sqlite3", warn=print,
                                                                     limit_bytes=8 << 30))
        elif set_name in PROXY:
            if a.proxy_root is None:
                p.error("--proxy-root is needed for the proxy sets")
            from dkgzsl_app.trainer.data import load_features

            fs = load_features(a.proxy_root / PROXY[set_name])
            data = {"pooled": (fs, [fs])}
        else:
            p.error(f"unknown set {set_name!r}")
        for r in rows:
            target = done_dir / f"{set_name}__{r}.json"
            if target.exists() or (set_name in PROXY and r in REGION_ONLY):
                continue
            train, tests = data[ROWS[r][2] if set_name in RENDERED else "pooled"]
            print(f"[{set_name}] {r} ...", flush=True)
            res = run_row(r, set_name, train, tests, a.work / "runs")
            target.write_text(json.dumps(res, indent=2))
            print(f"[{set_name}] {r}: " + " ".join(f"{k} {100 * res[k]:.1f}" for k in METRICS)
                  + f" ({res['train_seconds']:.0f} s)", flush=True)

    results = {}
    for f in sorted(done_dir.glob("*.json")):
        r = json.loads(f.read_text())
        results[(r["set"], r["row"])] = r
    if a.table:
        write_between_markers(a.table, table(results))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "recipes": RECIPES,
                                      "published": {k: {s: list(v) for s, v in d.items()} for k, d in PUBLISHED.items()},
                                      "rows": list(results.values())}, indent=2))
    if not (a.table or a.json):
        print(table(results))


if __name__ == "__main__":
    main()
