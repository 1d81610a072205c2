"""``dkgzsl train`` over several processes: ``--nproc N`` starts torchrun, and a rank that torchrun started joins
the group (trainer/distributed.py does the training side).

``dkgzsl train --nproc N ARGS`` starts N processes of ``python -m dkgzsl_app train ARGS`` (the same command
line without ``--nproc``) with the environment ``torchrun --standalone --nproc_per_node N`` gives its workers
(RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT on a free local port), and stops them all when one fails:
the user sees rank 0's own message, not torchrun's failure report. ``torchrun --nproc_per_node N -m
dkgzsl_app.trainer ARGS`` (or ``-m dkgzsl_app train ARGS``) is the same run started by torchrun, and on
several machines with its rendezvous flags (README "Training on several processes").
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from .models.errors import UsageError


def launched() -> bool:
    """Whether torchrun started this process as one of several ranks."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    except ValueError:
        return False


def forwarded_args(ctx, drop: tuple[str, ...] = ("nproc",)) -> list[str]:
    """The train command's options as given on the command line (not defaults), minus ``drop``, as argv."""
    from .cli_util import given_options

    return given_options(ctx, drop)


def worker_command(ctx) -> list[str]:
    """What each process runs: this train command without ``--nproc``."""
    return [sys.executable, "-m", "dkgzsl_app", "train", *forwarded_args(ctx)]


def worker_envs(nproc: int, port: int) -> list[dict]:
    """torchrun's environment for each of ``nproc`` processes on this machine (env:// rendezvous)."""
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0", "ROLE_RANK": "0"}
    base.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default; training sets its own count (--threads)
    return [{**base, "RANK": str(r), "LOCAL_RANK": str(r), "ROLE_WORLD_SIZE": str(nproc)} for r in range(nproc)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_all(cmd: list[str], envs: list[dict]) -> int:
    """Start one process per environment, as torchrun --standalone would (rank 0's output is the run's; the
    others print nothing but their own errors); when one fails, stop the others. The first failure's exit
    status, 0 when all succeed (no torchrun failure report: rank 0 has said what went wrong)."""
    procs = [subprocess.Popen(cmd, env=env) for env in envs]
    status = 0
    try:
        while procs:
            for p in list(procs):
                code = p.poll()
                if code is None:
                    continue
                procs.remove(p)
                if code != 0 and status == 0:
                    status = code if code > 0 else 128 - code  # killed by a signal: 128 + its number
                    for q in procs:
                        q.terminate()
            time.sleep(0.2)
    except KeyboardInterrupt:
        status = 130
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    return status


def launch(ctx, nproc: int) -> int:
    """Run this train command as ``nproc`` processes on this machine; their exit status."""
    if launched():
        raise UsageError("--nproc starts the processes itself: under torchrun leave --nproc out (torchrun's "
                         "--nproc_per_node says how many processes).")
    return run_all(worker_command(ctx), worker_envs(nproc, free_port()))


def join(device: str):
    """Under torchrun: join the process group; (is rank 0, this rank's device). Outside: (True, ``device``)."""
    from .trainer import distributed

    run = distributed.init(device)
    if run is None:
        return True, device
    return run.rank == 0, run.device


def leave() -> None:
    from .trainer import distributed

    distributed.teardown()
