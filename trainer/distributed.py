"""Training over several processes (torchrun): one global batch, sharded, with the result of one process.

Launched by torchrun (``WORLD_SIZE`` > 1) a run joins a process group (gloo on the CPU, NCCL on CUDA, where
rank r trains on ``cuda:LOCAL_RANK``); outside torchrun nothing here runs and training is exactly as before.

How the work is split, so that N processes compute the single-process run's global batch:

* every rank builds the same model (same seed) and draws every random number (batch indices, noise,
  interpolation weights) from its own copy of the run's seeded generator with the single-process shapes, so
  the random stream is that of one process;
* the per-sample networks (the critic, the generator, the teacher, the student, CE-GZSL's embedding net,
  DKGZSL's SOVR, MSDN's and MSDN++'s whole model, a backbone being fine-tuned) run on this rank's rows
  only: a forward pre-hook cuts each batch input to the rank's contiguous slice (``Scatter``) and a
  forward hook all-gathers the outputs back into the whole batch (``Gather``). The loss code after them is
  unchanged and sees the whole batch on every rank, so batch means, the pairwise L_be and L_od, class means
  and the contrastive losses are the single-process ones (up to float reassociation);
* gradients: ``Gather``'s backward hands a rank the gradient of its own rows times N, ``Scatter``'s backward
  all-gathers the rows' gradients and divides by N (so a replicated input, such as WGAN-GP's interpolates,
  gets its whole gradient on every rank, and the penalty's double backward works); each optimiser's step
  first all-reduces its parameters' gradients and divides by N. A parameter's gradient is then the sum of
  the ranks' shares of the batch plus, once, whatever the replicated loss code contributes;
* the backbone being fine-tuned (``per_rank``: trainer/backbone_ft.py) runs in eval mode, BatchNorm on its
  frozen running statistics, so a photo's features do not depend on the other photos of the batch and the
  split is exact; its snapshots of the training photos' features are split the same way;
* a call that draws random numbers of the batch's shape (MSDN++'s random counterfactual attention) runs
  whole on every rank, so that the draws are the single-process ones;
* everything else (losses, optimiser steps, validation) runs replicated, identically on every rank.
  ``check_identical`` compares the ranks' weights after every epoch (bit for bit) and stops a run whose ranks
  drifted apart.

Only rank 0 writes: checkpoints, ``metrics.jsonl``, the bundle, progress. ``--resume``: rank 0 reads the
checkpoint and broadcasts it, so the other ranks (on other machines too) start from the same state.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.distributed as dist

# The networks that run sharded (per-sample forwards; their outputs are all-gathered): attribute names of the
# model (ZSLModel, DKGZSLModel: SOVR included). Others (the OOD head, ε) run replicated. A trainer whose whole
# model is one per-sample network (MSDN, MSDN++: ``shard_model = True``) has the model's forward sharded; a
# backbone being fine-tuned runs sharded through ``per_rank``.
SHARDED = ("generator", "critic", "teacher", "student", "contrastive", "sovr")


def world_size() -> int:
    """The launch's process count (torchrun's ``WORLD_SIZE``; 1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def launched() -> bool:
    """Whether this process is one of several that torchrun started."""
    return world_size() > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0, or not distributed: the process that logs and writes files."""
    return rank() == 0


@dataclass
class Launch:
    rank: int
    world: int
    local_rank: int
    device: str  # this rank's training device
    backend: str


def init(device: str = "cpu", timeout_minutes: float = 30.0) -> Launch | None:
    """Join torchrun's process group; None when not launched by torchrun (``WORLD_SIZE`` unset or 1).

    ``device``: the run's ``--device`` as parsed (devices.parse_device): ``cuda`` becomes this rank's GPU
    ``cuda:LOCAL_RANK`` (modulo the GPUs visible), with the NCCL backend; anything else keeps gloo."""
    if not launched():
        return None
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda:{local % torch.cuda.device_count()}"
    cuda = torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return Launch(dist.get_rank(), dist.get_world_size(), local, device, backend)


def teardown() -> None:
    """Meet the other ranks and leave the group (no-op outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ---- the global batch, sharded ----------------------------------------------------------------------------

def rows(n: int, r: int | None = None, world: int | None = None) -> tuple[int, int]:
    """Rank ``r``'s contiguous share [lo, hi) of a batch of ``n`` rows (sizes differ by at most one)."""
    r = rank() if r is None else r
    world = (dist.get_world_size() if active() else 1) if world is None else world
    return n * r // world, n * (r + 1) // world


def shard(idx: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch (``idx`` itself outside torchrun)."""
    if not active():
        return idx
    lo, hi = rows(len(idx))
    return idx[lo:hi]


def _all_gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The whole batch (n, ...) from every rank's rows (``rows``), in rank order."""
    world = dist.get_world_size()
    width = -(-n // world)
    if n % world == 0:  # equal shares: straight into the whole batch's rows, no padding, no copy
        full = local.new_empty((n, *local.shape[1:]))
        dist.all_gather(list(full.split(width)), local.contiguous())
        return full
    pad = local.new_zeros((width, *local.shape[1:]))
    pad[:len(local)] = local
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad.contiguous())
    return torch.cat([p[:hi - lo] for p, (lo, hi) in zip(parts, (rows(n, r, world) for r in range(world)))])


class Gather(torch.autograd.Function):
    """Rows of this rank (k, ...) → the whole batch (n, ...); backward: N × the gradient of this rank's rows."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, n: int) -> torch.Tensor:
        ctx.n = n
        return _all_gather_rows(local, n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return Scatter.apply(grad) * dist.get_world_size(), None


class Scatter(torch.autograd.Function):
    """The whole batch (n, ...), the same on every rank → this rank's rows; backward: all ranks' row gradients
    gathered, divided by N."""

    @staticmethod
    def forward(ctx, full: torch.Tensor) -> torch.Tensor:
        ctx.n = len(full)
        lo, hi = rows(len(full))
        return full[lo:hi].clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return Gather.apply(grad, ctx.n) / dist.get_world_size()


def gather(local: torch.Tensor, n: int) -> torch.Tensor:
    return Gather.apply(local, n)


def scatter(full: torch.Tensor) -> torch.Tensor:
    return Scatter.apply(full)


@dataclass
class Sharding:
    """The hooks of one run (``attach``): sharded networks and gradient-averaging optimisers."""
    handles: list = field(default_factory=list)

    def _pre(self, module, args, kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        n = len(tensors[0]) if not _replicated and tensors and tensors[0].dim() else 0  # whole(): replicated
        if any(isinstance(a, torch.Generator) for a in (*args, *kwargs.values())):
            n = 0  # draws random numbers of the batch's shape (MSDN++'s random counterfactual): replicated, so
            #        that every rank draws the single-process stream
        if n == 0 or any(t.dim() == 0 or len(t) != n for t in tensors):
            module._ddp_rows.append(None)  # not a batch call: replicated
            return None
        module._ddp_rows.append(n)
        cut = lambda a: scatter(a) if isinstance(a, torch.Tensor) else a  # noqa: E731
        return tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}

    def _post(self, module, args, kwargs, output):
        n = module._ddp_rows.pop()
        if n is None:
            return None
        if isinstance(output, torch.Tensor):
            return gather(output, n)
        if isinstance(output, tuple) and all(isinstance(o, torch.Tensor) for o in output):
            parts = [gather(o, n) for o in output]
            return type(output)(*parts) if hasattr(output, "_fields") else tuple(parts)  # NamedTuple (MSDNOutput)
        if dataclasses.is_dataclass(output) and all(isinstance(getattr(output, f.name), (torch.Tensor, type(None)))
                                                    for f in dataclasses.fields(output)):  # SOVROutput
            return dataclasses.replace(output, **{f.name: gather(getattr(output, f.name), n)
                                                  for f in dataclasses.fields(output)
                                                  if getattr(output, f.name) is not None})
        raise TypeError(f"{type(module).__name__}: a sharded network must return tensors, not {type(output)}")

    def shard_module(self, module: torch.nn.Module) -> None:
        module._ddp_rows = []
        self.handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
        self.handles.append(module.register_forward_hook(self._post, with_kwargs=True))

    def average_on_step(self, opt: torch.optim.Optimizer) -> None:
        self.handles.append(opt.register_step_pre_hook(lambda o, *_: average_gradients(
            [p for g in o.param_groups for p in g["params"]])))

    def replicated(self):
        """Within the block the networks run whole on every rank (validation: every rank scores alike): ``whole``."""
        return whole()

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


_replicated = False  # within ``whole()``: sharded networks and per_rank run every row on every rank


@contextmanager
def whole() -> Iterator[None]:
    """Within the block the sharded networks and ``per_rank`` compute every row on every rank (no split)."""
    global _replicated
    before, _replicated = _replicated, True
    try:
        yield
    finally:
        _replicated = before


def per_rank(fn, idx: torch.Tensor) -> torch.Tensor:
    """``fn(idx)`` (a per-row function of the rows ``idx``, returning (len(idx), ...)) computed as this rank's
    share ``fn(idx[lo:hi])`` and all-gathered into the whole batch, with the same gradients as ``gather``
    (the backbone being fine-tuned, its snapshots and the starting features). Every rank must call it with
    the same ``idx``; outside torchrun, within ``Sharding.replicated`` or for fewer rows than ranks it is
    ``fn(idx)``."""
    if not active() or _replicated or len(idx) < dist.get_world_size():
        return fn(idx)
    lo, hi = rows(len(idx))
    return gather(fn(idx[lo:hi]), len(idx))


def average_gradients(params) -> None:
    """Sum the parameters' gradients over the ranks (in place, one all-reduce per tensor: no flattening copy of
    a generator's or critic's millions of weights) and divide by N."""
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            if not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def attach(trainer) -> Sharding | None:
    """Under torchrun: shard ``trainer``'s per-sample networks and make each of its optimisers average the
    gradients over the ranks before stepping. None (nothing attached) outside torchrun."""
    if not active():
        return None
    s = Sharding()
    for name in SHARDED:
        module = getattr(trainer.model, name, None)
        if isinstance(module, torch.nn.Module):
            s.shard_module(module)
    if getattr(trainer, "shard_model", False):  # MSDN, MSDN++: the model's forward is per-sample
        s.shard_module(trainer.model)
    for name in trainer.optimizer_names:
        s.average_on_step(getattr(trainer, name))
    return s


# ---- rank 0's files, every rank's state ------------------------------------------------------------------

def broadcast(obj):
    """Rank 0's ``obj`` on every rank (``obj`` itself outside torchrun)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` outside torchrun)."""
    if not active():
        return [obj]
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, obj)
    return every


def load_state(path, resume: bool):
    """The checkpoint to resume from (rank 0 reads ``path``; the others receive it), or None."""
    from .checkpoint import load_checkpoint

    state = None
    if is_main() and resume and path is not None and path.exists():
        state = load_checkpoint(path)
    return broadcast(state)


def fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (every tensor's bytes, in order)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_identical(module: torch.nn.Module, what: str) -> None:
    """Raise when the ranks' copies of ``module`` differ (they must stay bit-identical)."""
    if not active():
        return
    mine = fingerprint(module)
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if len(set(every)) != 1:
        raise RuntimeError(f"torchrun ranks diverged after {what}: their weights differ "
                           f"({', '.join(f[:8] for f in every)})")
