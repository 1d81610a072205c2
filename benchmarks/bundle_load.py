#!/usr/bin/env python3
"""Slim bundles and meta-device loading (issue 17, item 3): sizes and load times, before and after, side by side.

* size: the bundle's model.safetensors (and whole folder) full against slim (``dkgzsl models slim``);
* load time, one process, the variants interleaved round by round (median and min of ``--runs``):
  - ``load_bundle``: the old path (``init="random"``: build the model with random init, copy the weights in)
    against the new one (meta device + assign), on the full bundle, and the new one on the slim bundle;
  - the model build alone (old: ``build`` + ``load_state_dict``; new: ``build(meta=True)`` + ``assign``) on
    tensors already read, to show what the meta device saves apart from reading and checking the file;
  - the timm backbone alone (``create_backbone``): random init + copy against the meta device + assign;
  - ``dkgzsl_app.load`` (bundle + backbone, what classify and the TUI call): old path (everything random init +
    copy on torch's threads), "meta bundle only" (the bundle on the meta device, the backbone the old way:
    dkgzsl before the backbone's meta build and the one-thread load), new, new on slim;
* classify outputs: ``--photos DIR`` (e.g. ``dkgzsl demo DIR --per-class 2``) classified with the full and the
  slim bundle: every prediction field compared (classes, scores, probabilities, confidences, top-k, open-set
  score and verdict), which must be identical.

    /tmp/helpers/quiet.sh python benchmarks/bundle_load.py --photos demo-photos --runs 9 \\
        --out benchmarks/results/bundle_load.json
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def summary(times: list[float]) -> dict:
    return {"median_ms": round(1e3 * statistics.median(times), 2), "min_ms": round(1e3 * min(times), 2),
            "runs_ms": [round(1e3 * t, 2) for t in times]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo-shapes", help="the bundle (a bundled name, a folder, local-dir: or hf-hub:)")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--photos", type=Path, help="photos to classify with the full and the slim bundle")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import dkgzsl_app
    from dkgzsl_app.models import bundle as bundle_io
    from dkgzsl_app.models.bundle import WEIGHTS_FILE, load_bundle
    from dkgzsl_app.models.parts import assign, build
    from dkgzsl_app.slim import write_slim
    from dkgzsl_app.sources import resolve_source

    full = Path(resolve_source(args.model, offline=True))
    tmp = Path(tempfile.mkdtemp(prefix="bundle-load-"))
    slim = tmp / "slim"
    t_slim = timed(lambda: write_slim(full, slim))
    result = {
        "model": args.model, "runs": args.runs, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "loadavg_before": open("/proc/loadavg").read().split()[:3],
        "size_bytes": {"full": {"weights": (full / WEIGHTS_FILE).stat().st_size, "folder": folder_bytes(full)},
                       "slim": {"weights": (slim / WEIGHTS_FILE).stat().st_size, "folder": folder_bytes(slim)}},
        "omitted_parts": load_bundle(slim).config.omitted_parts, "slim_write_s": round(t_slim, 3),
    }
    sb = result["size_bytes"]
    sb["weights_ratio_slim_over_full"] = round(sb["slim"]["weights"] / sb["full"]["weights"], 4)

    # -- load_bundle and the model build alone --------------------------------------------------------------
    from safetensors.torch import load as st_load

    config = bundle_io.load_config(full)
    tensors = st_load((full / WEIGHTS_FILE).read_bytes())
    where = str(full / "config.json")

    def build_old():
        m = build(config, where)
        m.load_state_dict(tensors, strict=True)

    def build_new():
        assign(build(config, where, meta=True), tensors)

    variants = {
        "load_bundle full, old (random init + copy)": lambda: load_bundle(full, init="random"),
        "load_bundle full, new (meta + assign)": lambda: load_bundle(full),
        "load_bundle slim, new (meta + assign)": lambda: load_bundle(slim),
        "model build only, old": build_old,
        "model build only, new": build_new,
    }
    times = {k: [] for k in variants}
    for fn in variants.values():
        fn()  # warm-up: imports, allocator
    for _ in range(args.runs):
        for k, fn in variants.items():
            times[k].append(timed(fn))
    result["load_bundle"] = {k: summary(v) for k, v in times.items()}

    # -- the timm backbone alone: random init + copy (old) against the meta device + assign -------------------
    from dkgzsl_app import classify as classify_mod
    from dkgzsl_app.models import backbone as backbone_mod

    name = config.backbone.name if config.backbone else "tf_efficientnet_lite0"
    bb_variants = {
        "create_backbone, old (random init + copy)": lambda: backbone_mod.create_backbone(name, init="random"),
        "create_backbone, new (meta + assign)": lambda: backbone_mod.create_backbone(name),
    }
    times = {k: [] for k in bb_variants}
    for fn in bb_variants.values():
        fn()
    for _ in range(args.runs):
        for k, fn in bb_variants.items():
            times[k].append(timed(fn))
    result["create_backbone"] = {k: summary(v) for k, v in times.items()}

    # -- dkgzsl_app.load: bundle + backbone ------------------------------------------------------------------
    orig, orig_bb, orig_threads = bundle_io.load_bundle, backbone_mod.create_backbone, classify_mod.one_thread

    def app_load(source, stage="new"):
        """stage: "old" (bundle and backbone random init + copy, torch's threads), "meta bundle" (the bundle on
        the meta device: dkgzsl before the backbone's meta build and the one-thread load), "new"."""
        if stage != "new":
            backbone_mod.create_backbone = functools.partial(orig_bb, init="random")
            classify_mod.one_thread = contextlib.nullcontext
        if stage == "old":
            bundle_io.load_bundle = functools.partial(orig, init="random")
        try:
            return dkgzsl_app.load(source, device="cpu", offline=True)
        finally:
            bundle_io.load_bundle, backbone_mod.create_backbone, classify_mod.one_thread = orig, orig_bb, orig_threads

    app_variants = {
        "dkgzsl_app.load full, old": lambda: app_load(args.model, "old"),
        "dkgzsl_app.load full, meta bundle only": lambda: app_load(args.model, "meta bundle"),
        "dkgzsl_app.load full, new": lambda: app_load(args.model),
        "dkgzsl_app.load slim, new": lambda: app_load(f"local-dir:{slim}"),
    }
    times = {k: [] for k in app_variants}
    for fn in app_variants.values():
        fn()
    for _ in range(args.runs):
        for k, fn in app_variants.items():
            times[k].append(timed(fn))
    result["dkgzsl_app_load"] = {k: summary(v) for k, v in times.items()}

    def ratio(table, old, new):
        return round(table[old]["median_ms"] / table[new]["median_ms"], 3)

    lb, al = result["load_bundle"], result["dkgzsl_app_load"]
    result["speedup_old_over_new"] = {
        "load_bundle full": ratio(lb, "load_bundle full, old (random init + copy)", "load_bundle full, new (meta + assign)"),
        "load_bundle full old / slim new": ratio(lb, "load_bundle full, old (random init + copy)",
                                                 "load_bundle slim, new (meta + assign)"),
        "model build only": ratio(lb, "model build only, old", "model build only, new"),
        "dkgzsl_app.load full": ratio(al, "dkgzsl_app.load full, old", "dkgzsl_app.load full, new"),
        "dkgzsl_app.load full old / slim new": ratio(al, "dkgzsl_app.load full, old", "dkgzsl_app.load slim, new"),
        "dkgzsl_app.load full, meta bundle only / new": ratio(al, "dkgzsl_app.load full, meta bundle only",
                                                              "dkgzsl_app.load full, new"),
        "create_backbone": ratio(result["create_backbone"], "create_backbone, old (random init + copy)",
                                 "create_backbone, new (meta + assign)"),
    }

    # -- classify: full against slim -------------------------------------------------------------------------
    if args.photos:
        from dkgzsl_app.images import collect_images

        paths = [str(p) for p in collect_images([str(args.photos)]).images]
        preds = {}
        for name, source in (("full", args.model), ("slim", f"local-dir:{slim}")):
            clf = dkgzsl_app.load(source, device="cpu", offline=True)
            t = time.perf_counter()
            got = clf.classify(paths)
            preds[name] = ([{k: v for k, v in dataclasses.asdict(p).items() if k not in ("model", "model_commit")}
                            for p in got], round(time.perf_counter() - t, 2))
        a, b = preds["full"][0], preds["slim"][0]
        diff = [x["path"] for x, y in zip(a, b) if x != y]
        result["classify"] = {"photos": len(paths), "identical": a == b and len(a) == len(paths),
                              "differing": diff[:10], "unknown": sum(bool(x["unknown"]) for x in a),
                              "seconds": {"full": preds["full"][1], "slim": preds["slim"][1]},
                              "compared": "every Prediction field but model/model_commit: top-k classes, scores, "
                                          "probabilities, confidences, unknown, open_set_score, calibration, "
                                          "temperature, precision"}
    result["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
