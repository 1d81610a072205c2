"""classify at camera-trap scale (issue 18): peak memory over 1,000 and 20,000 photos, and photos/s for
one and two processes, on the CPU with the bundled demo model.

Memory: a base set of demo photos is rendered and classified once (the feature cache is then warm); the
big folders are hard links to it (distinct paths, the same content, so every photo hits the cache and
the run measures everything but the backbone: digests, cache reads, the head, writing the rows). Each run
is `dkgzsl classify FOLDER -f jsonl -o FILE` in a fresh process; its peak RSS is ru_maxrss from wait4.
`--chunk-size` = the photo count (at the small size only) shows what holding the whole run at once costs
(the behaviour before streaming: features of every photo, then the head on all of them).

Speed: `--no-cache` on the base set (the backbone runs for every photo), one process (torch's default
threads) against `torchrun --nproc_per_node 2` (one thread each, torchrun's default), and, for the same
thread budget, one process with OMP_NUM_THREADS=1. Wall time includes start-up (imports, model load);
``photos_per_s_net`` subtracts the wall time of the same command on one photo.

    .venv/bin/python benchmarks/classify_scale.py            # → benchmarks/results/classify_scale.json
    .venv/bin/python benchmarks/classify_scale.py --quick    # 200 / 2,000 photos, a smaller speed set
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DKGZSL = [sys.executable, "-m", "dkgzsl_app"]


def run(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; its wall time, exit code and peak RSS (MiB, the process and the children it waited for)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    if p.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err}")
    return {"wall_s": round(wall, 1), "exit": p.returncode, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def linked_folder(base: list[Path], folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = base[i % len(base)]
        os.link(src, folder / f"{i:06d}_{src.name}")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/classify_scale.json"))
    ap.add_argument("--speed-photos", type=int, default=None, help="photos for the photos/s runs")
    ap.add_argument("--sizes", default=None, help="photo counts for the memory runs, e.g. 1000,20000")
    ap.add_argument("--photos", default=None, help="a base folder of photos already cached in --home (skips rendering)")
    ap.add_argument("--home", default=None, help="DKGZSL_HOME to use (its feature cache), copied")
    ap.add_argument("--no-speed", action="store_true", help="memory runs only")
    ap.add_argument("--no-memory", action="store_true", help="speed runs only")
    args = ap.parse_args()
    sizes = (200, 2000) if args.quick else (1000, 20000)
    if args.sizes:
        sizes = tuple(int(x) for x in args.sizes.split(","))
    speed_n = args.speed_photos or (96 if args.quick else 288)

    work = Path(tempfile.mkdtemp(prefix="dkgzsl-scale-"))
    env = {**os.environ, "DKGZSL_HOME": str(work / "home")}
    try:
        if args.home:
            shutil.copytree(args.home, work / "home")
        if args.photos:
            base_dir = Path(args.photos)
        else:
            base_dir = work / "base"
            per_class = max(1, -(-speed_n // 48))
            subprocess.run([*DKGZSL, "demo", str(base_dir), "--per-class", str(per_class), "--seed", "11"], env=env,
                           check=True, stdout=subprocess.DEVNULL)
        base = sorted(base_dir.iterdir())
        result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                              "load_avg_at_start": os.getloadavg()},
                  "base_photos": len(base), "memory": {}, "speed": {}}
        warm = run([*DKGZSL, "classify", str(base_dir), "-f", "jsonl", "-o", str(work / "warm.jsonl")], env)
        result["warm_up"] = warm
        for n in () if args.no_memory else sizes:
            folder = linked_folder(base, work / f"n{n}", n)
            streamed = run([*DKGZSL, "classify", str(folder), "-f", "jsonl", "-o", str(work / f"s{n}.jsonl")], env)
            streamed["photos_per_s"] = round(n / streamed["wall_s"], 1)
            same = (work / f"s{n}.jsonl").read_bytes().count(b"\n") == n
            result["memory"][str(n)] = {"streamed_chunk_256": streamed, "rows_ok": same}
            if n == sizes[0]:  # the whole run in one chunk (as before streaming); not at the large size: GBs
                result["memory"][str(n)]["one_chunk"] = run([*DKGZSL, "classify", str(folder), "-f", "jsonl", "-o",
                                                             str(work / f"w{n}.jsonl"), "--chunk-size", str(n)], env)
            print(n, result["memory"][str(n)], flush=True)
            shutil.rmtree(folder)
        if not args.no_memory:
            a, b = (result["memory"][str(n)]["streamed_chunk_256"]["peak_rss_mib"] for n in sizes)
            result["memory"]["peak_rss_ratio_large_to_small"] = round(b / a, 3)

        if not args.no_speed:
            speed_dir = base_dir
            count = len(base)
            cmd = ["classify", str(speed_dir), "-f", "jsonl", "--no-cache", "--chunk-size", "32"]
            one = run([*DKGZSL, *cmd, "-o", str(work / "p1.jsonl")], env)
            one1 = run([*DKGZSL, *cmd, "-o", str(work / "p1t.jsonl")], {**env, "OMP_NUM_THREADS": "1"})
            two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       "-m", "dkgzsl_app", *cmd, "-o", str(work / "p2.jsonl")], env)
            # start-up (imports, model load; torchrun: its rendezvous too) on one photo, subtracted for the net rate
            first = [str(base[0])]
            cmd1 = ["classify", *first, "-f", "jsonl", "--no-cache"]
            s1 = run([*DKGZSL, *cmd1, "-o", str(work / "q1.jsonl")], env)
            s2 = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                      "-m", "dkgzsl_app", *cmd1, "-o", str(work / "q2.jsonl")], env)
            for name, r, start in (("1_process_default_threads", one, s1), ("1_process_1_thread", one1, s1),
                                   ("2_processes_torchrun_1_thread_each", two, s2)):
                r["photos_per_s_wall"] = round(count / r["wall_s"], 2)
                r["startup_s"] = start["wall_s"]
                r["photos_per_s_net"] = round((count - 1) / max(0.1, r["wall_s"] - start["wall_s"]), 2)
                result["speed"][name] = r
            result["speed"]["photos"] = count
            result["speed"]["two_equal_one_1_thread"] = (work / "p2.jsonl").read_bytes() == (work / "p1t.jsonl").read_bytes()
        result["machine"]["load_avg_at_end"] = os.getloadavg()
        print(json.dumps(result, indent=2))
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
