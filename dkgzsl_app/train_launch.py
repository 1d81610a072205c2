"""``dkgzsl train`` over several processes: ``--nproc N`` starts torchrun, and a rank that torchrun started joins
the group (trainer/distributed.py does the training side).

``dkgzsl train --nproc N ARGS`` runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m
dkgzsl_app train ARGS`` (the same command line without ``--nproc``); ``torchrun --nproc_per_node N -m
dkgzsl_app.trainer ARGS`` and ``torchrun ... -m dkgzsl_app train ARGS`` are the same run started by hand, and
on several machines with torchrun's rendezvous flags (README "Training on several processes").
"""
from __future__ import annotations

import os
import subprocess
import sys

from .models.errors import UsageError


def launched() -> bool:
    """Whether torchrun started this process as one of several ranks."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    except ValueError:
        return False


def forwarded_args(ctx, drop: tuple[str, ...] = ("nproc",)) -> list[str]:
    """The train command's options as given on the command line (not defaults), minus ``drop``, as argv."""
    args: list[str] = []
    for param in ctx.command.params:
        if param.name in drop or not getattr(param, "opts", None):
            continue
        source = getattr(ctx.get_parameter_source(param.name), "name", "DEFAULT")
        if source in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params.get(param.name)
        value = getattr(value, "value", value)  # enums
        if getattr(param, "is_flag", False) or isinstance(value, bool):
            off = getattr(param, "secondary_opts", None)
            if value:
                args.append(param.opts[0])
            elif off:
                args.append(off[0])
            continue
        args += [param.opts[0], str(value)]
    return args


def torchrun_command(ctx, nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "dkgzsl_app", "train", *forwarded_args(ctx)]


def launch(ctx, nproc: int) -> int:
    """Run this train command as ``nproc`` torchrun processes on this machine; their exit status."""
    if launched():
        raise UsageError("--nproc starts torchrun itself: under torchrun leave --nproc out (torchrun's "
                         "--nproc_per_node says how many processes).")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, said here so torchrun does not warn
    try:
        return subprocess.run(torchrun_command(ctx, nproc), env=env).returncode
    except KeyboardInterrupt:
        return 130


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
