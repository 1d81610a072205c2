#!/usr/bin/env python3
"""Training over torchrun processes on the CPU (gloo): samples/s for 1 and N processes and the scaling ratio.

Each run is ``tests/ddp_worker.py`` (``loop.fit`` on a synthetic pooled feature set, no files but its result):
one process alone, then ``torchrun --standalone --nproc_per_node N`` of the same global batch; runs alternate
(1, N, 1, N, ...) and the best of ``--repeats`` counts. samples/s = real training features through the
generator phase (epochs × training images) per second of ``fit`` (the teacher warm-up included; process
start and imports excluded); rank 0's CPU time (its own process) says how much work one rank does, which
a busy machine's wall time hides. Every process gets ``--threads`` intra-op threads (OMP_NUM_THREADS and the
training thread count), so N processes use N × threads cores.

    python benchmarks/train_ddp.py                                    # d3gzsl, 1024-d features, hidden 1024
    python benchmarks/train_ddp.py --method dkgzsl --nproc 2 --threads 1 --out benchmarks/results/train_ddp.json
    python benchmarks/train_ddp.py --method msdn --regions 49 --dim 512 --batch 50 --append benchmarks/results/train_ddp.json

``--regions R``: region features (N, R, dim + 1) (``make_region_set``: MSDN, MSDN++, DKGZSL with SOVR); the
default 0 is pooled features. ``--append FILE`` adds this run to FILE's ``runs`` list (kept entries untouched);
``--out FILE`` writes this run alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "ddp_worker.py"


def one_run(tmp: Path, nproc: int, spec: dict, threads: int) -> dict:
    name = f"p{nproc}"
    spec = {**spec, "out": str(tmp / f"{name}.pt"), "threads": threads}
    (tmp / f"{name}.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(WORKER), str(tmp / f"{name}.json")]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *cmd[1:]]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    res = torch.load(tmp / f"{name}.pt", weights_only=True)  # tensors and plain containers only
    return {"seconds": res["seconds"], "cpu_seconds": res["cpu_seconds"], "samples_per_s": res["samples"] / res["seconds"],
            "scores": res["scores"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="d3gzsl")
    p.add_argument("--generator", default="clswgan")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    p.add_argument("--dim", type=int, default=1024, help="feature width")
    p.add_argument("--hidden", type=int, default=1024, help="generator/critic hidden width")
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--classes", type=int, default=40)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--attrs", type=int, default=16, help="attributes per class")
    p.add_argument("--regions", type=int, default=0, help="region features with this many regions (0: pooled)")
    p.add_argument("--out", type=Path)
    p.add_argument("--append", type=Path, help="add the run to this file's 'runs' list")
    a = p.parse_args()
    data_args = {"dim": a.dim, "per_class": a.per_class, "n_classes": a.classes, "n_unseen": max(1, a.classes // 4),
                 "n_attr": a.attrs}
    if a.regions:
        data_args.update(regions=a.regions, distractors=min(4, a.regions - 1))
    spec = {"method": a.method, "epochs": a.epochs, "data_args": data_args,
            **({"data": "regions"} if a.regions else {}),
            "config": {"batch_size": a.batch, "hidden_dim": a.hidden, "critic_hidden_dim": a.hidden,
                       "embed_dim": a.embed, "teacher_epochs": 1, "generator": a.generator}}
    load_before = open("/proc/loadavg").read().split()[:3]
    runs: dict[int, list[dict]] = {1: [], a.nproc: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeats):
            for n in (1, a.nproc):
                runs[n].append(one_run(Path(tmp), n, spec, a.threads))
                print(f"{n} process(es): {runs[n][-1]['samples_per_s']:.1f} samples/s "
                      f"({runs[n][-1]['seconds']:.2f} s, rank 0's CPU time {runs[n][-1]['cpu_seconds']:.2f} s)", flush=True)
    best = {n: max(rs, key=lambda r: r["samples_per_s"]) for n, rs in runs.items()}
    agree = float((best[1]["scores"] - best[a.nproc]["scores"]).abs().max())
    out = {
        "benchmark": "train_ddp", "method": a.method, "generator": a.generator, "nproc": a.nproc,
        "threads_per_process": a.threads, "backend": "gloo", "device": "cpu",
        "shape": {"dim": a.dim, "hidden": a.hidden, "embed": a.embed, "classes": a.classes,
                  "per_class": a.per_class, "batch": a.batch, "epochs": a.epochs, "attrs": a.attrs,
                  **({"regions": a.regions} if a.regions else {})},
        "samples_per_s": {str(n): round(b["samples_per_s"], 2) for n, b in best.items()},
        "all_samples_per_s": {str(n): [round(r["samples_per_s"], 2) for r in rs] for n, rs in runs.items()},
        "scaling": round(best[a.nproc]["samples_per_s"] / best[1]["samples_per_s"], 3),
        "rank0_cpu_seconds": {str(n): round(b["cpu_seconds"], 2) for n, b in best.items()},
        "max_probability_difference": agree,
        "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "loadavg_before": load_before, "loadavg_after": open("/proc/loadavg").read().split()[:3],
    }
    print(json.dumps(out, indent=2))
    if a.out:
        a.out.write_text(json.dumps(out, indent=2) + "\n")
    if a.append:
        doc = json.loads(a.append.read_text()) if a.append.exists() else {"benchmark": "train_ddp", "runs": []}
        doc["runs"].append(out)
        a.append.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
