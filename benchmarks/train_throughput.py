#!/usr/bin/env python3
"""Training throughput on CPU (or --device cuda): generator iterations/s, real samples/s, seconds per
epoch and peak memory per method, each row in its own process (so peak memory, ru_maxrss, is its own).

Rows: ``d3gzsl-baseline`` (f-CLSWGAN + L_cls only), ``d3gzsl`` (full D3GZSL), ``dkgzsl`` (DKGZSL on pooled
features: KTN/MFU + D3GZSL), ``d3gzsl-ce`` / ``dkgzsl-ce`` (CE-GZSL's generator). An iteration is what
``run_epoch`` does per generator update: ``critic_steps`` critic steps, one generator step, one student step
(the teacher is frozen, as after its warm-up). Real samples/s counts the real rows the iteration reads:
batch × (critic_steps + 1).

Features are random, CUB-shaped by default (7057 trainval × 2048-d, 150 seen + 50 unseen classes,
312 attributes): throughput does not depend on their values.

``--before REV`` also measures every row with the training code of git revision REV (its ``dkgzsl_app``,
``models`` and ``trainer`` trees, exported with ``git archive`` into a temporary package), interleaved with
the current tree's rows, so that the two are measured side by side under the same load; the JSON then holds
each row's speed-up. ``--set key=value`` (repeatable) adds the current tree's rows with these TrainConfig
fields (e.g. ``--set mlp_precision=bf16``, an option the older code does not have), beside those without.

    python benchmarks/train_throughput.py --batch-size 256 --threads 2        # paper widths (4096 / 2048)
    python benchmarks/train_throughput.py --batch-size 256 --threads 2 --before HEAD~1 \\
        --out benchmarks/results/train_throughput.json
    python benchmarks/train_throughput.py --hidden 1024 --embed 512
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = {  # name -> TrainConfig fields
    "d3gzsl-baseline": dict(method="d3gzsl", ablation="baseline"),
    "d3gzsl": dict(method="d3gzsl"),
    "dkgzsl": dict(method="dkgzsl"),
    "d3gzsl-ce": dict(method="d3gzsl", generator="ce-gzsl"),
    "dkgzsl-ce": dict(method="dkgzsl", generator="ce-gzsl"),
}


def feature_set(n: int, dim: int, seen: int, unseen: int, attrs: int, seed: int = 0):
    import numpy as np

    from dkgzsl_app.trainer.data import FeatureSet

    rng = np.random.default_rng(seed)
    c = seen + unseen
    labels = rng.integers(0, seen, n)
    return FeatureSet(features=rng.random((n, dim), dtype=np.float32), labels=labels,
                      class_names=[f"c{i}" for i in range(c)], attributes=rng.random((c, attrs), dtype=np.float32),
                      attribute_names=[f"a{i}" for i in range(attrs)], seen=np.arange(c) < seen,
                      trainval=np.arange(n), test_seen=np.zeros(0, np.int64), test_unseen=np.zeros(0, np.int64))


def measure(fs, cfg, iters: int, device: str) -> dict:
    """Seconds per generator iteration of ``cfg``'s trainer on ``fs`` (after one warm-up iteration)."""
    import math

    import numpy as np
    import torch

    from dkgzsl_app.trainer.cegzsl import with_generator
    from dkgzsl_app.trainer.methods import trainer_class
    from dkgzsl_app.trainer.task import make_task

    task = make_task(fs, np.arange(len(fs.class_names)), fs.seen, fs.trainval)
    tr = with_generator(trainer_class(cfg.method), cfg)(task, cfg, device)
    tr.teacher_done = True  # teacher pre-training is a few plain epochs; not what we measure
    for p in tr.model.teacher.parameters():
        p.requires_grad_(False)

    def one():  # run_epoch's iteration
        for _ in range(cfg.critic_steps):
            tr.critic_step()
        idx = tr._batch()
        tr.generator_step(tr.y[idx], tr.attr[tr.y[idx]], tr.x[idx])
        tr.student_step(idx)

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    one()  # warm-up
    sync()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(iters):
        one()
    sync()
    secs = (time.perf_counter() - t) / iters
    cpu = (time.process_time() - c) / iters  # all threads' CPU time: less sensitive to other processes' load
    per_epoch = math.ceil(len(fs.trainval) / cfg.batch_size)
    return {"s_per_iteration": round(secs, 4), "cpu_s_per_iteration": round(cpu, 4), "iterations_per_s": round(1 / secs, 3),
            "real_samples_per_s": round(cfg.batch_size * (cfg.critic_steps + 1) / secs, 1),
            "s_per_epoch": round(secs * per_epoch, 1), "iterations_per_epoch": per_epoch}


def child(spec: dict) -> dict:
    """One row in this process: the measurement and this process's peak memory."""
    import resource

    import torch

    from dkgzsl_app.trainer.config import TrainConfig

    a = spec["args"]
    if a["threads"]:
        torch.set_num_threads(a["threads"])
    fs = feature_set(a["n"], a["dim"], a["seen"], a["unseen"], a["attrs"])
    cfg = TrainConfig(batch_size=a["batch_size"], hidden_dim=a["hidden"], critic_hidden_dim=a["hidden"],
                      embed_dim=a["embed"], **ROWS[spec["row"]], **spec["overrides"])
    out = {"row": spec["row"], "code": spec["code"], **measure(fs, cfg, a["iters"], a["device"])}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if a["device"].startswith("cuda"):
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    out["torch_threads"] = torch.get_num_threads()
    out["loop_source"] = sys.modules["dkgzsl_app.trainer.loop"].__file__  # which tree's training code ran
    return out


def export_revision(rev: str, into: Path) -> Path:
    """``rev``'s dkgzsl_app package (with its models/ and trainer/ trees mapped in, as pyproject's package-dir
    does) under ``into``; returns the directory to put first on PYTHONPATH."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "dkgzsl_app", "models", "trainer"],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    pkg = into / "dkgzsl_app"
    for sub in ("models", "trainer"):  # dkgzsl_app/models and /trainer are symlinks to these in the repository
        link = pkg / sub
        if link.is_symlink() or link.exists():
            link.unlink()
        (into / sub).rename(link)
    return into


def run_child(spec: dict, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"row {spec['row']} ({spec['code']}) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def parse_set(values: list[str]) -> dict:
    out = {}
    for v in values:
        k, _, raw = v.partition("=")
        try:
            out[k] = json.loads(raw)
        except json.JSONDecodeError:
            out[k] = raw
    return out


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
    p.add_argument("--rows", default="d3gzsl-baseline,d3gzsl,dkgzsl", help=f"comma-separated, of {', '.join(ROWS)}")
    p.add_argument("--before", metavar="REV", help="also measure each row with the code of git revision REV")
    p.add_argument("--repeats", type=int, default=1, help="measure each (row, code) this many times (the best counts)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="also measure the current tree's rows with this TrainConfig field (repeatable)")
    p.add_argument("--out", type=Path, help="write the rows and settings as JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))), flush=True)
        return
    rows = [r for r in a.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}: use {', '.join(ROWS)}")
    settings = {k: v for k, v in vars(a).items() if k not in ("child", "out")}
    overrides = parse_set(a.set)
    flags = set(open("/proc/cpuinfo").read().split()) if os.path.exists("/proc/cpuinfo") else set()
    settings["cpu_bf16"] = sorted(flags & {"avx512_bf16", "amx_bf16"})  # bf16 matrix units: what bf16 needs to pay off
    load_before = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        codes = [("current", None, {})]
        if overrides:  # the current tree with the options too, beside it without them
            codes.append(("current+" + ",".join(a.set), None, overrides))
        if a.before:
            codes.insert(0, (f"before:{a.before}", str(export_revision(a.before, Path(tmp))), {}))
        for _ in range(a.repeats):
            for row in rows:
                for code, path, over in codes:
                    spec = {"row": row, "code": code, "overrides": over, "args": vars(a) | {"out": None}}
                    results.append(run_child(spec, path))
                    print(json.dumps(results[-1]), flush=True)
    best = {}
    for r in results:
        key = (r["row"], r["code"])
        if key not in best or r["s_per_iteration"] < best[key]["s_per_iteration"]:
            best[key] = r
    summary = {"settings": settings, "overrides": overrides, "loadavg_before": load_before,
               "loadavg_after": open("/proc/loadavg").read().split()[:3] if load_before else None,
               "runs": results, "best": list(best.values())}
    if a.before:  # per code variant and row: its speed-up and peak memory against the older code's
        base = f"before:{a.before}"
        summary["speedup"] = {code: {row: round(best[(row, base)]["s_per_iteration"]
                                                / best[(row, code)]["s_per_iteration"], 3) for row in rows}
                              for code, _, _ in codes[1:]}
        summary["peak_rss_ratio"] = {code: {row: round(best[(row, code)]["peak_rss_mb"]
                                                       / best[(row, base)]["peak_rss_mb"], 3) for row in rows}
                                     for code, _, _ in codes[1:]}
    print(json.dumps({k: summary[k] for k in summary if k not in ("runs", "best")}), flush=True)
    if a.out:
        a.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
