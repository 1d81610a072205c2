#!/usr/bin/env python3
"""Decoding workers kept across classify's chunks (issue 17, ``extract.decode_pool``), and the next chunk extracted
while this one is scored (``stream.classify_chunks`` overlap), against a DataLoader per chunk and chunks one after
the other (dkgzsl before them), side by side in one process: ``stream.classify_photos`` as ``dkgzsl classify PHOTOS
-f jsonl -o FILE`` runs it (chunks of 256, a cold feature cache read and written, rows written), the two variants
taking turns ``--rounds`` times (each with a fresh cache), images/s (median), CPU seconds per photo (this process
and its workers), worker processes started, and whether the two wrote the same file byte for byte.

    dkgzsl demo --per-class 20 --seed 1 /tmp/demo960
    /tmp/helpers/quiet.sh python benchmarks/decode_pool.py /tmp/demo960 --precision fp32 \\
        --out benchmarks/results/decode_pool.json
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path, help="a folder of photos (e.g. dkgzsl demo --per-class 20 DIR)")
    ap.add_argument("--model", default="demo-shapes")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    import dkgzsl_app
    from dkgzsl_app import extract, stream
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.images import collect_images

    paths = [str(p) for p in collect_images([str(args.photos)]).images]
    clf = dkgzsl_app.load(args.model, device="cpu", offline=True, precision=args.precision)
    clf.classify(paths[:2], workers=0)  # the head's one-off set-up is not per photo
    work = Path(tempfile.mkdtemp(prefix="decode-pool-"))
    started = {"n": 0}
    real_loader = extract.DataLoader

    def counting(*a, **k):
        started["n"] += k.get("num_workers", 0)
        return real_loader(*a, **k)

    extract.DataLoader = counting
    real_pool, real_chunks = extract.decode_pool, stream.classify_chunks
    sequential = functools.partial(real_chunks, overlap=False)
    variants = {"per chunk (before)": (lambda w: stream._null(), sequential), "pool": (real_pool, sequential),
                "pool + overlap (after)": (real_pool, real_chunks)}
    result = {"photos": len(paths), "model": args.model, "precision": clf.precision, "workers": args.workers,
              "batch_size": args.batch_size, "chunk": args.chunk, "torch_threads": torch.get_num_threads(),
              "cpus": os.cpu_count(), "loadavg_before": open("/proc/loadavg").read().split()[:3], "runs": {}}
    files = {}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            extract.decode_pool, stream.classify_chunks = variants[name]
            started["n"] = 0
            cache = FeatureCache(work / f"cache-{r}-{len(name)}.sqlite3")  # cold: a fresh cache every run
            out = work / f"{r}-{len(name)}.jsonl"
            c0, t0 = cpu_seconds(), time.perf_counter()
            summary = stream.classify_photos(clf, paths, [], "jsonl", out, model="bench", batch_size=args.batch_size,
                                             workers=args.workers, cache=cache, chunk=args.chunk, progress=False)
            t, c = time.perf_counter() - t0, cpu_seconds() - c0
            cache.close()
            assert summary.rows == len(paths)
            files.setdefault(name, out.read_bytes())
            result["runs"].setdefault(name, []).append({"images_per_s": round(len(paths) / t, 2), "seconds": round(t, 2),
                                                        "cpu_ms_per_image": round(1e3 * c / len(paths), 1),
                                                        "worker_processes_started": started["n"]})
    extract.decode_pool, stream.classify_chunks, extract.DataLoader = real_pool, real_chunks, real_loader
    result["median_images_per_s"] = {k: statistics.median(x["images_per_s"] for x in v) for k, v in result["runs"].items()}
    m = result["median_images_per_s"]
    result["after_over_before"] = round(m["pool + overlap (after)"] / m["per chunk (before)"], 3)
    result["pool_over_before"] = round(m["pool"] / m["per chunk (before)"], 3)
    result["same_file"] = len(set(files.values())) == 1
    result["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
