"""Backbone features for many photos: decoding and resizing in DataLoader workers, overlapped with the
forward pass; bad files become per-file errors; channels_last on the CPU and CUDA, autocast by
``precision`` (fp32 | bf16 | fp16, see ``precision.py``), and on CUDA a batch size that halves itself on
out-of-memory. ``kind`` picks the feature: ``pooled`` (D,) float32 (the default), or ``regions`` (R, C)
float16, the backbone's region/token map (EfficientNet 7x7 grid → R = 49; ViT tokens), halved to fp16 on
the device right after the forward pass so memory and cache bytes stay small."""
from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from . import mixed_bf16
from .cache import check_kind
from .images import ImageLoadError, load_rgb


class PhotoDataset(Dataset):
    """Item i → (tensor (3, H, W) or None, i, error message or "")."""

    def __init__(self, images: list, transform, draft: tuple[int, int] | None = None):
        self.images, self.transform, self.draft = images, transform, draft

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.prepare(self.images[i], i)

    def prepare(self, item, i: int):
        """(tensor or None, ``i``, error message or "") for one photo (a path or a PIL image)."""
        try:
            im = item.convert("RGB") if hasattr(item, "convert") else load_rgb(item, draft=self.draft)
            return self.transform(im), i, ""
        except ImageLoadError as e:
            return None, i, str(e)
        except Exception as e:  # a transform failing on a pathological image must not end the run
            return None, i, f"could not be prepared ({type(e).__name__}: {e})"


def collate(batch):
    ok = [b for b in batch if b[0] is not None]
    x = torch.stack([b[0] for b in ok]) if ok else None  # (B, 3, H, W)
    return x, [b[1] for b in ok], {b[1]: b[2] for b in batch if b[0] is None}


@dataclass
class Extracted:
    features: dict[int, torch.Tensor] = field(default_factory=dict)  # image index → (D,) f32 | (R, C) f16
    errors: dict[int, str] = field(default_factory=dict)  # image index → reason


def default_channels_last(device) -> bool:
    """channels_last unless asked otherwise: on the CPU and CUDA (not MPS)."""
    return torch.device(device).type in ("cpu", "cuda")


def set_layout(model, channels_last: bool):
    """Put ``model``'s weights in the channels_last (or default) memory layout, unless they already are."""
    if getattr(model, "_dkgzsl_channels_last", False) != channels_last:
        model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        model._dkgzsl_channels_last = channels_last
    return model


def _photo_loader(backbone, transform, images: list, batch_size: int, workers: int, pin_memory: bool = False):
    """Batches (tensors, indices, errors) of ``images`` through ``transform``, decoded in ``workers`` processes
    when every image is a path (PIL images cannot be sent to them)."""
    # JPEG DCT-domain downscaling to no smaller than the resize step's target: far less decoding work
    c = backbone.config
    short = int(math.floor(min(c.input_size[-2:]) / c.crop_pct))
    ds = PhotoDataset(images, transform, draft=(short, short))
    can_fork = workers > 0 and all(isinstance(i, (str, bytes)) or hasattr(i, "__fspath__") for i in images)
    pool = _DECODE_POOL.get()
    if pool is not None and can_fork and workers == pool.workers:  # decode_pool: the run's workers, kept
        return pool.loader(transform, ds.draft, images, batch_size, pin_memory)
    return DataLoader(ds, batch_size=batch_size, num_workers=workers if can_fork else 0, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False)


_DECODE_POOL: contextvars.ContextVar = contextvars.ContextVar("dkgzsl_decode_pool", default=None)


class _KeyedPhotos(PhotoDataset):
    """The decode pool's dataset: item (i, path) → what ``PhotoDataset`` gives for ``path``, indexed ``i``. The
    workers get the photos with each batch's indices, so one set of workers serves any number of photo lists."""

    def __init__(self, transform, draft):
        super().__init__([], transform, draft)

    def __getitem__(self, key):
        return self.prepare(key[1], key[0])


class _Batches:
    """A batch sampler whose batches are set before each pass over the loader (``DecodePool.loader``)."""

    def __init__(self):
        self.batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class DecodePool:
    """DataLoader worker processes kept for many ``extract`` calls (``decode_pool``): ``dkgzsl classify``
    extracts a chunk of photos at a time, and a DataLoader per chunk started (forked) its workers anew for every
    chunk and left them idle while the chunk's first batch was decoded. Batches, their order, errors and
    progress are those of a DataLoader per call."""

    def __init__(self, workers: int):
        self.workers = workers
        self._key = self._loader = self._batches = None

    def loader(self, transform, draft, images: list, batch_size: int, pin_memory: bool):
        """An iterable of ``images``' batches (tensors, indices into ``images``, errors), as ``_photo_loader``."""
        key = (repr(transform), draft, pin_memory)
        if key != self._key:  # another transform (another backbone): its own workers
            self.close()
            self._batches = _Batches()
            self._loader = DataLoader(_KeyedPhotos(transform, draft), batch_sampler=self._batches,
                                      num_workers=self.workers, collate_fn=collate, pin_memory=pin_memory,
                                      persistent_workers=True)
            self._key = key
        self._batches.batches = [[(i, images[i]) for i in range(s, min(s + batch_size, len(images)))]
                                 for s in range(0, len(images), batch_size)]
        return self._loader

    def close(self) -> None:
        """Stop the workers (they exit; none is left behind)."""
        it = getattr(self._loader, "_iterator", None)
        if it is not None:
            it._shutdown_workers()
        self._key = self._loader = self._batches = None


@contextlib.contextmanager
def decode_pool(workers: int):
    """``extract`` calls in this block (in this thread) decode photos in one set of ``workers`` worker processes,
    started with the first call and stopped when the block ends (an error or Ctrl-C included). With no workers
    (decoding in the calling process) the block changes nothing and yields None."""
    if workers <= 0:
        yield None
        return
    pool = DecodePool(workers)
    token = _DECODE_POOL.set(pool)
    try:
        yield pool
    finally:
        _DECODE_POOL.reset(token)
        pool.close()


def _uint8_transform(backbone):
    """``backbone.uint8_transform()``, or the float ``transform()`` for an eval transform it cannot split."""
    from .models.errors import BundleError

    try:
        return backbone.uint8_transform()
    except BundleError:
        return backbone.transform()


def extract(backbone, images: list, device: str = "cpu", batch_size: int = 32, workers: int = 2,
            on_batch: Callable[[int], None] | None = None, precision: str = "fp32",
            channels_last: bool | None = None, kind: str = "pooled") -> Extracted:
    """Backbone features for ``images`` (paths or PIL images), in input order by index: pooled (D,) float32,
    or with ``kind="regions"`` the region map (R, C) float16, each on the CPU.

    ``precision`` is a resolved one (fp32, bf16 or fp16; ``precision.resolve_precision``);
    ``channels_last`` defaults to True on the CPU and CUDA (False keeps the default layout: bit for bit
    the features of dkgzsl before issue 17, which ``train --images`` keeps for reproducible bundles)."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16 (resolved), not {precision!r}")
    check_kind(kind)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if channels_last is None:
        channels_last = default_channels_last(dev)
    model = set_layout(backbone.model.to(dev), channels_last)
    # uint8 photos from the loader (a quarter of the bytes between processes), made float and normalised a
    # batch at a time on the device: bit for bit what the eval transform computes photo by photo
    loader = _photo_loader(backbone, _uint8_transform(backbone), images, batch_size, workers, pin_memory=cuda)
    out = Extracted()
    streams, threads = forward_streams(dev, channels_last)
    if streams == 1:
        for x, idx, errors in loader:
            out.errors.update(errors)
            if x is not None:
                for i, f in zip(idx, _forward(backbone, x, dev, precision, channels_last, kind)):
                    out.features[i] = f
            if on_batch:
                on_batch(len(idx) + len(errors))
        return out
    import collections
    from concurrent.futures import ThreadPoolExecutor

    def collect(idx, future, n) -> None:
        if future is not None:
            for i, f in zip(idx, future.result()):
                out.features[i] = f
        if on_batch:
            on_batch(n)

    pending: collections.deque = collections.deque()  # (indices, future | None, photos) in batch order
    with torch_threads(threads):  # what the pool's threads start with (and this one, collating)
        pool = ThreadPoolExecutor(streams, "dkgzsl-forward", initializer=torch.set_num_threads, initargs=(threads,))
        try:
            for x, idx, errors in loader:
                out.errors.update(errors)
                future = None if x is None else pool.submit(_forward, backbone, x, dev, precision, channels_last, kind)
                pending.append((idx, future, len(idx) + len(errors)))
                while len(pending) > streams:  # a batch queued behind each running one: no stream waits for the next
                    collect(*pending.popleft())
            while pending:
                collect(*pending.popleft())
            pool.shutdown()
        except BaseException:  # an error or Ctrl-C: queued batches are dropped, running ones finish on their own
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return out


MAX_STREAMS = 2


@contextlib.contextmanager
def torch_threads(n: int):
    """torch on ``n`` intra-op threads while the block runs, the count before restored after (nothing changes
    when it is ``n`` already)."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stream_threads(device):
    """torch's threads cut to one forward stream's share (``forward_streams``) while the block runs on the
    CPU: for the head's small operators, whose thread team costs more than it saves on few cores (demo
    model, 256 photos on 2 busy cores: 3.0 ms a photo on 1 thread against 18 ms on 2)."""
    return torch_threads(forward_streams(torch.device(device), True)[1])


_PINNED: contextvars.ContextVar = contextvars.ContextVar("dkgzsl_pinned_threads", default=None)


@contextlib.contextmanager
def pinned_threads(device):
    """torch's threads held at one forward stream's share (``forward_streams``) for the whole block, in this
    thread and in threads that run in a copy of its context (``contextvars``): extraction and the head then
    never change the thread count while another thread computes. Part of torch's thread setting is one for
    the whole process (MKL's count), so without this a head scored while another thread's extraction set and
    restored its threads rounded differently from run to run (classify rows differed in the 6th decimal).
    Yields whether extraction runs in streams (False on CUDA or MPS, or with one thread: the block then
    changes nothing)."""
    dev = torch.device(device)
    total = torch.get_num_threads()
    streams, threads = forward_streams(dev, default_channels_last(dev))
    if streams < 2:
        yield False
        return
    token = _PINNED.set(total)
    try:
        with torch_threads(threads):
            yield True
    finally:
        _PINNED.reset(token)


def forward_streams(dev: torch.device, channels_last: bool) -> tuple[int, int]:
    """(forward passes run side by side, torch threads each) for extraction on ``dev``.

    On the CPU, in channels_last, batches go through the backbone in two threads with half torch's threads
    each (2 × 1 on 2 cores) instead of one pass over all of them: a pass's thread team waits at every
    operator for its slowest thread, so a core lost for a moment (to a decoding worker, or another program)
    stalls the whole pass; two independent passes lose only that core's share. tf_efficientnet_lite0,
    batch 32 on 2 cores: 2 × 1 thread 50-56 images/s against 43-49 for 1 × 2 at load ~3.5, and 1.45-1.8×
    on busier cores with 35-45% less CPU time (benchmarks/classify.py, a''' against a'; issue 17).
    Features agree with one pass's within fp32 round-off (~1e-6 relative: the thread count changes the
    summation order), as they do between machines with more or fewer cores. The default layout (``train --images``) keeps one pass, bit for bit as before; CUDA
    and MPS keep one stream. Inside ``pinned_threads`` the split is of the threads torch had before it."""
    threads = _PINNED.get() or torch.get_num_threads()
    if dev.type != "cpu" or not channels_last or threads < 2:
        return 1, threads
    streams = min(MAX_STREAMS, threads)
    return streams, threads // streams


def extract_cached(backbone, images: list, device: str = "cpu", batch_size: int = 32, workers: int = 2,
                   cache=None, on_batch: Callable[[int], None] | None = None, precision: str = "fp32",
                   channels_last: bool | None = None, kind: str = "pooled", ranks: bool = False) -> Extracted:
    """``extract`` through a FeatureCache: photos (paths) seen before with this backbone (and precision:
    bf16 and fp16 features are kept apart from fp32 ones; layout; kind) skip it.

    ``ranks`` (``train --images/--dataset``): under torchrun, every rank calling with the same ``images``,
    the photos no rank found in its cache are split over the ranks (``extract_split``) and every rank
    returns all features; each machine's local rank 0 alone writes its cache."""
    import os
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from .cache import backbone_key, file_digest

    if cache is None:
        return (extract_split if ranks else extract)(backbone, images, device, batch_size, workers, on_batch,
                                                     precision, channels_last, kind)
    if channels_last is None:
        channels_last = default_channels_last(device)
    key = backbone_key(backbone.config, precision, channels_last, kind)

    def digest(im) -> str | None:
        try:
            return file_digest(im)
        except OSError:
            return None  # extraction reports the reason

    named = [i for i, im in enumerate(images) if isinstance(im, (str, Path))]
    # hashlib lets go of the GIL on large blocks: a 12 MP photo's few MB are hashed on every core at once
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        found = pool.map(digest, [images[i] for i in named], chunksize=16)
        digests: dict[int, str] = {i: d for i, d in zip(named, found) if d is not None}
    hits = cache.get(sorted(set(digests.values())), key, kind)
    got = Extracted({i: torch.from_numpy(hits[d]) for i, d in digests.items() if d in hits})
    todo = [i for i in range(len(images)) if i not in got.features]
    if ranks:  # torchrun: what any rank lacks, so that every rank splits the same list
        from .trainer import distributed

        todo = sorted(set().union(*distributed.all_gather_object(todo)))
        got.features = {i: f for i, f in got.features.items() if i not in todo}
    if on_batch and got.features:
        on_batch(len(got.features))
    # all cached (a chunk of a warm run): no DataLoader, whose worker processes would start for nothing
    fresh = (extract_split if ranks else extract)(backbone, [images[i] for i in todo], device, batch_size, workers,
                                                  on_batch, precision, channels_last, kind) if todo else Extracted()
    for j, f in fresh.features.items():
        got.features[todo[j]] = f
    got.errors = {todo[j]: reason for j, reason in fresh.errors.items()}
    new = {digests[todo[j]]: f.numpy() for j, f in fresh.features.items() if todo[j] in digests}
    if new and (not ranks or os.environ.get("LOCAL_RANK", "0") in ("", "0")):  # one writer per machine
        cache.put(new, key, kind)
    return got


def extract_split(backbone, images: list, device: str = "cpu", batch_size: int = 32, workers: int = 2,
                  on_batch: Callable[[int], None] | None = None, precision: str = "fp32",
                  channels_last: bool | None = None, kind: str = "pooled") -> Extracted:
    """``extract``; under torchrun (every rank calling with the same ``images``) each rank extracts a contiguous
    share of the one-process run's batches (``distributed.rows`` of the batches) and the ranks all-gather the
    results, so every rank returns every photo's features and errors. Whole batches: each batch holds the
    photos it holds in one process, so the features are one process's bit for bit at the same thread count
    (the backbone runs in eval mode, but a convolution's summation order may depend on the batch: lite0's
    region maps at 64 px differ by 1 fp16 ulp, 1.9e-5 relative, between a batch of 30 and two of 15).
    ``on_batch`` hears of this rank's photos as they are done, then of the others' at once. Outside torchrun:
    ``extract``."""
    from .trainer import distributed

    if not distributed.active():
        return extract(backbone, images, device, batch_size, workers, on_batch, precision, channels_last, kind)
    first, last = distributed.rows(-(-len(images) // batch_size))  # this rank's batches
    lo, hi = min(first * batch_size, len(images)), min(last * batch_size, len(images))
    mine = extract(backbone, images[lo:hi], device, batch_size, workers, on_batch, precision, channels_last,
                   kind) if hi > lo else Extracted()
    out = Extracted()
    for start, features, errors in distributed.all_gather_object((lo, mine.features, mine.errors)):
        out.features.update({start + j: f for j, f in features.items()})
        out.errors.update({start + j: reason for j, reason in errors.items()})
    if on_batch and len(images) > hi - lo:
        on_batch(len(images) - (hi - lo))
    return out


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _forward(backbone, x: torch.Tensor, dev: torch.device, precision: str = "fp32",
             channels_last: bool = True, kind: str = "pooled") -> torch.Tensor:
    """Pooled features (B, D) float32, or regions (B, R, C) float16 (contiguous), on the CPU; on CUDA
    out-of-memory, split the batch in halves and retry."""
    try:
        with torch.inference_mode():
            x = x.to(dev, non_blocking=dev.type == "cuda")
            if x.dtype == torch.uint8:  # (Backbone.uint8_transform) normalised in the loader's layout: per-channel
                x = backbone.normalize(x)  # arithmetic on channels_last's interleaved channels took twice as long
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            dtype = _AUTOCAST.get(precision)
            with torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                pooled, regions = mixed_bf16.features(backbone, x, precision)  # bf16: the backbone's scheme
            if kind == "regions":  # fp16 before the copy to the CPU: half the bytes to move and keep
                return regions.to(torch.float16, memory_format=torch.contiguous_format).cpu()
            return pooled.float().cpu()
    except torch.OutOfMemoryError:
        if len(x) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(x) // 2
        return torch.cat([_forward(backbone, x[:half], dev, precision, channels_last, kind),
                          _forward(backbone, x[half:], dev, precision, channels_last, kind)])


def photo_tensors(backbone, images: list, workers: int = 2,
                  on_batch: Callable[[int], None] | None = None) -> tuple[torch.Tensor, list[int], dict[int, str]]:
    """The photos as the backbone's eval transform prepares them, short of its float conversion and
    normalisation (``Backbone.uint8_transform``): (uint8 (N, 3, H, W) of the readable ones, their indices
    into ``images``, errors by index). For ``train --finetune-backbone``, which runs the backbone on them
    again every epoch; uint8 at the input size is a quarter of the float32 bytes (150 kB a 224 px photo)."""
    loader = _photo_loader(backbone, backbone.uint8_transform(), images, 32, workers)
    out = torch.empty((len(images), *backbone.config.input_size), dtype=torch.uint8)  # filled in place: no second copy
    ok, errors = [], {}
    for x, idx, errs in loader:
        errors.update(errs)
        if x is not None:
            out[idx] = x
            ok += idx
        if on_batch:
            on_batch(len(idx) + len(errs))
    keep = sorted(ok)
    return (out if len(keep) == len(images) else out[keep]), keep, errors
