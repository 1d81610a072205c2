"""Deterministic training: what torch can pin, pinned while a run trains, and recorded in its provenance.

A training run draws every random number from its own seeded generator (loop._Trainer) and has no data
loader, so two runs with the same seed and data do the same arithmetic in the same order. What can still
change the last bits of a float32 result, and so (through 40 epochs of GAN training) which epoch
validation selects, is *how* each kernel sums:

- ``torch.use_deterministic_algorithms(True)`` refuses kernels whose result depends on scheduling
  (most are CUDA ones; on the CPU it changes nothing we measured, and costs nothing);
- the intra-op thread count: fixed while training (``threads``; 0 keeps torch's current setting);
- the CPU instruction set torch's kernels and MKL dispatch to (``cpu_capability``: AVX512 / AVX2 ...):
  recorded, not pinned (README "Reproducibility" gives the measurements).

``conditions()`` is the record a bundle's provenance carries: a rebuild is byte-identical only where
it matches (same torch, same CPU capability, same thread count, same data hash, same device type).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

# Environment variables that change which kernels run; recorded in provenance when set.
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
              "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # very old torch or an exotic build
        return "unknown"


def conditions(device: str = "cpu") -> dict:
    """What a byte-identical rebuild needs to match (besides the data hash and the training options)."""
    rec = {"torch": torch.__version__, "device": torch.device(device).type, "threads": torch.get_num_threads(),
           "cpu_capability": cpu_capability(), "deterministic": torch.are_deterministic_algorithms_enabled()}
    env = {k: os.environ[k] for k in KERNEL_ENV if os.environ.get(k)}
    if env:
        rec["kernel_env"] = env
    return rec


@contextmanager
def deterministic_training(threads: int = 0, device: str = "cpu") -> Iterator[dict]:
    """Within the block: deterministic algorithms on, ``threads`` intra-op threads (0: unchanged).

    Yields ``conditions()`` as they hold inside the block; the previous settings come back on exit.
    On CUDA, cuBLAS needs CUBLAS_WORKSPACE_CONFIG for deterministic results; it is set when missing (it
    only takes effect if CUDA has not created its cuBLAS handle yet) and kernels without a deterministic
    variant warn instead of failing.
    """
    if threads < 0:
        raise ValueError(f"threads must be 0 (keep torch's setting) or a positive count, not {threads}")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if threads:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=cuda)
        yield conditions(device)
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        if threads:
            torch.set_num_threads(old_threads)
