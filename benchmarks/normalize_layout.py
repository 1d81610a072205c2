#!/usr/bin/env python3
"""Normalising a batch of uint8 photos (extraction's ``Backbone.normalize``), side by side in one process: the
old order (to channels_last first, then float / 255 − mean ÷ std out of place) against the new one (normalise in
place in the loader's NCHW layout, then to channels_last). Per-channel arithmetic on channels_last's interleaved
channels runs in inner loops of 3 elements. Both give the same tensor bit for bit (checked). Medians of --runs,
variants taking turns, on --threads torch threads (1: one forward stream's share on 2 cores).

    /tmp/helpers/quiet.sh python benchmarks/normalize_layout.py --out benchmarks/results/normalize_layout.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def old():
        return x.contiguous(memory_format=torch.channels_last).float().div(255).sub(mean).div(std)

    def new():
        y = x.to(torch.float32, copy=True).div_(255).sub_(mean).div_(std)
        return y.contiguous(memory_format=torch.channels_last)

    a, b = old(), new()
    same = torch.equal(a, b) and a.stride() == b.stride()
    times = {"old: channels_last, then out of place": [], "new: NCHW in place, then channels_last": []}
    for _ in range(args.runs):
        for name, fn in zip(times, (old, new)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: round(1e3 * statistics.median(v), 2) for k, v in times.items()}
    o, n = med.values()
    result = {"batch": [args.batch_size, 3, args.size, args.size], "threads": args.threads, "runs": args.runs,
              "median_ms_per_batch": med, "ms_per_photo_saved": round((o - n) / args.batch_size, 3),
              "old_over_new": round(o / n, 2), "bit_identical": same,
              "loadavg": open("/proc/loadavg").read().split()[:3]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
