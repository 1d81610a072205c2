#!/usr/bin/env python3
"""Training throughput on CPU (or --device cuda): generator iterations/s, real samples/s, seconds per
epoch and peak memory, for the f-CLSWGAN baseline and full D3GZSL side by side in one run (the ratio
is the cost of the D3GZSL losses).

Features are random, CUB-shaped by default (7057 trainval × 2048-d, 150 seen + 50 unseen classes,
312 attributes): throughput does not depend on their values.

    python benchmarks/train_throughput.py                       # paper widths (4096 / 2048)
    python benchmarks/train_throughput.py --hidden 1024 --embed 512
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import time

import numpy as np
import torch

from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.data import FeatureSet
from dkgzsl_app.trainer.loop import _Trainer
from dkgzsl_app.trainer.task import make_task


def feature_set(n: int, dim: int, seen: int, unseen: int, attrs: int, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    c = seen + unseen
    labels = rng.integers(0, seen, n)
    return FeatureSet(features=rng.random((n, dim), dtype=np.float32), labels=labels,
                      class_names=[f"c{i}" for i in range(c)], attributes=rng.random((c, attrs), dtype=np.float32),
                      attribute_names=[f"a{i}" for i in range(attrs)], seen=np.arange(c) < seen,
                      trainval=np.arange(n), test_seen=np.zeros(0, np.int64), test_unseen=np.zeros(0, np.int64))


def measure(fs, cfg: TrainConfig, iters: int, device: str) -> dict:
    task = make_task(fs, np.arange(len(fs.class_names)), fs.seen, fs.trainval)
    tr = _Trainer(task, cfg, device)
    tr.teacher_done = True  # teacher pre-training is a few plain epochs; not what we measure

    def one():
        for _ in range(cfg.critic_steps):
            tr.critic_step()
        idx = tr._batch()
        tr.generator_step(tr.y[idx], tr.attr[tr.y[idx]])
        tr.student_step(idx)

    for p in tr.model.teacher.parameters():
        p.requires_grad_(False)
    one()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        one()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    secs = (time.perf_counter() - t) / iters
    per_epoch = math.ceil(len(fs.trainval) / cfg.batch_size)
    return {"ablation": cfg.ablation, "s_per_iteration": round(secs, 4), "iterations_per_s": round(1 / secs, 2),
            "real_samples_per_s": round(cfg.batch_size * (cfg.critic_steps + 1) / secs, 1),
            "s_per_epoch": round(secs * per_epoch, 1), "iterations_per_epoch": per_epoch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=7057)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--seen", type=int, default=150)
    p.add_argument("--unseen", type=int, default=50)
    p.add_argument("--attrs", type=int, default=312)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--embed", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    fs = feature_set(a.n, a.dim, a.seen, a.unseen, a.attrs)
    rows = []
    for ablation in ("baseline", "both"):
        cfg = TrainConfig(ablation=ablation, batch_size=a.batch_size, hidden_dim=a.hidden, critic_hidden_dim=a.hidden,
                          embed_dim=a.embed)
        rows.append(measure(fs, cfg, a.iters, a.device))
        print(json.dumps(rows[-1]), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"settings": vars(a), "torch_threads": torch.get_num_threads(),
                      "d3gzsl_over_baseline_time": round(rows[1]["s_per_iteration"] / rows[0]["s_per_iteration"], 3),
                      "peak_rss_mb": round(peak, 1)}))


if __name__ == "__main__":
    main()
