#!/usr/bin/env python3
"""DKGZSL training throughput on cached region features beside D3GZSL's on pooled ones (CPU by default).

One epoch of each configuration, side by side in one run, each in its own process (so that peak memory,
ru_maxrss, is its own): real training images per second (an epoch's photos / its wall time, the SOVR
snapshot of v included for DKGZSL) and peak resident memory. Features are random, demo-shaped by default
(3800 training photos of 38 seen + 10 unseen classes, 12 attributes, tf_efficientnet_lite0: 49 regions ×
1280 channels, pooled 1280; the demo recipe's widths 512 / 256): throughput does not depend on values.

    python benchmarks/dkgzsl_throughput.py --out benchmarks/results/dkgzsl_throughput.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = {
    "d3gzsl/pooled": dict(method="d3gzsl"),
    "dkgzsl/pooled (KTN/MFU)": dict(method="dkgzsl"),
    "dkgzsl/regions": dict(method="dkgzsl"),
    "dkgzsl/regions no-ARA": dict(method="dkgzsl", ara=False),
}


def run_one(name: str, a) -> dict:
    import numpy as np
    import torch

    from dkgzsl_app.trainer.config import TrainConfig
    from dkgzsl_app.trainer.data import FeatureSet
    from dkgzsl_app.trainer.methods import trainer_class
    from dkgzsl_app.trainer.task import make_task

    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    c = a.seen + a.unseen
    regions = "regions" in name
    shape = (a.n, a.regions, a.dim) if regions else (a.n, a.dim)
    feats = rng.random(shape, dtype=np.float32).astype(np.float16 if regions else np.float32)
    fs = FeatureSet(features=feats, labels=rng.integers(0, a.seen, a.n), class_names=[f"c{i}" for i in range(c)],
                    attributes=(rng.random((c, a.attrs)) < 0.3).astype(np.float32),
                    attribute_names=[f"a{i}" for i in range(a.attrs)], seen=np.arange(c) < a.seen,
                    trainval=np.arange(a.n), test_seen=np.zeros(0, np.int64), test_unseen=np.zeros(0, np.int64))
    cfg = TrainConfig(hidden_dim=a.hidden, critic_hidden_dim=a.hidden, embed_dim=a.embed, batch_size=a.batch_size,
                      teacher_epochs=1, gen_per_unseen=20, **CONFIGS[name])
    task = make_task(fs, np.arange(c), fs.seen, fs.trainval)
    tr = trainer_class(cfg.method)(task, cfg, "cpu")
    t = time.perf_counter()
    tr.train_teacher()
    warm = time.perf_counter() - t
    t = time.perf_counter()
    row = tr.run_epoch()
    secs = time.perf_counter() - t
    assert all(np.isfinite(v) for v in row.values())
    return {"config": name, "s_per_epoch": round(secs, 2), "images_per_s": round(a.n / secs, 1),
            "warmup_s_per_epoch": round(warm, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3800)
    p.add_argument("--regions", type=int, default=49)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--seen", type=int, default=38)
    p.add_argument("--unseen", type=int, default=10)
    p.add_argument("--attrs", type=int, default=12)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", help=argparse.SUPPRESS)
    p.add_argument("--out")
    a = p.parse_args()
    if a.only:
        print(json.dumps(run_one(a.only, a)))
        return
    rows = []
    for name in CONFIGS:
        settings = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k not in ("only", "out")]
        args = [sys.executable, __file__, "--only", name, *settings]
        rows.append(json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout))
        print(rows[-1], flush=True)
    base = rows[0]["images_per_s"]
    for r in rows:
        r["speed_vs_d3gzsl"] = round(r["images_per_s"] / base, 3)
    print(json.dumps(rows, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"settings": vars(a), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
