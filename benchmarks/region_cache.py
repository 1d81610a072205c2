"""Region features against pooled ones (issue 12): extraction speed and feature-cache bytes per photo.

Rendered demo photos (``write_test_photos``), the offline ``tf_efficientnet_lite0`` backbone, fp32,
the default CPU layout (channels_last), CPU. In one process: a warm-up, then ``--rounds`` alternating
timed passes of ``extract(kind="pooled")`` and ``extract(kind="regions")`` over the same photos (best
and median pass per kind, and their ratios), and the time of the one step that differs after the
forward pass (pooled: float32 copy; regions: float16 copy of (B, 49, 1280)) on its own; then, for each
kind, a fresh SQLite cache filled by ``extract_cached`` (cold), read back by a second ``extract_cached``
(warm: no backbone), and measured: blob bytes per photo (``FeatureCache.size_bytes``) and file bytes per
photo (after a WAL checkpoint; the file and any -wal/-shm files).

    .venv/bin/python benchmarks/region_cache.py --n 96   # → benchmarks/results/region_cache.json

Measured (2026-11-28, N = 96, --rounds 4, 2-core CPU shared with other jobs: load average 7,
2 torch threads, workers 2, batch 32, torch 2.14.1):
  extract photos/s: best pass pooled 8.48, regions 6.86 (0.81); median pass pooled 6.60, regions 6.52
  (0.99). The passes spread 11.3-15.2 s with the machine's load; the one step that differs, the float16
  copy of a (32, 49, 1280) batch, takes 15.6 ms; a pass takes ~4.9 s a batch (14.6 s / 3): 0.3%.
  cache bytes per photo: pooled blob 5,120 / file 5,717; regions blob 125,440 / file 127,232
  (target ≤ 130 kB; 49 x 1280 x 2 B = 125,440).
  warm (all cached, no backbone) photos/s: pooled 859, regions 417.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def file_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=96, help="photos (rounded up to a multiple of the 48 classes)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/region_cache.json")
    args = ap.parse_args()

    import torch

    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.extract import extract, extract_cached
    from dkgzsl_app.models.backbone import create_backbone
    from dkgzsl_app.trainer.render import demo_classes, write_test_photos

    backbone = create_backbone("tf_efficientnet_lite0")
    kinds = ("pooled", "regions")
    with tempfile.TemporaryDirectory() as tmp:
        per_class = -(-args.n // len(demo_classes()))
        photos = [str(p) for p in write_test_photos(Path(tmp) / "photos", per_class, seed=7)]
        n = len(photos)
        run = dict(device="cpu", batch_size=args.batch_size, workers=args.workers)
        for kind in kinds:  # warm-up: weights in the channels_last layout, allocator, worker start-up
            extract(backbone, photos[:8], kind=kind, **run)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        shapes = {}
        for _ in range(args.rounds):
            for kind in kinds:
                got, dt = timed(lambda: extract(backbone, photos, kind=kind, **run))
                assert len(got.features) == n and not got.errors
                f = got.features[0]
                shapes[kind] = {"shape": list(f.shape), "dtype": str(f.dtype).replace("torch.", "")}
                times[kind].append(dt)
        cache_rows = {}
        for kind in kinds:
            path = Path(tmp) / f"cache-{kind}.sqlite"
            cache = FeatureCache(path)
            _, cold = timed(lambda: extract_cached(backbone, photos, cache=cache, kind=kind, **run))
            warm_got, warm = timed(lambda: extract_cached(backbone, photos, cache=cache, kind=kind, **run))
            assert len(warm_got.features) == n
            cache.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            blob = cache.size_bytes()
            cache.close()
            cache_rows[kind] = {"blob_bytes_per_photo": blob / n, "file_bytes_per_photo": file_bytes(path) / n,
                                "cold_with_cache_photos_per_s": n / cold, "warm_photos_per_s": n / warm}
        # what regions add after the forward pass, alone (immune to a busy machine): the fp16 copy
        x = torch.randn(args.batch_size, 3, 224, 224).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            pooled, regions = backbone.features(x)
            convert = {"pooled": lambda: pooled.float().cpu(),
                       "regions": lambda: regions.to(torch.float16, memory_format=torch.contiguous_format).cpu()}
            convert_ms = {}
            for kind, fn in convert.items():
                fn()
                _, dt = timed(lambda: [fn() for _ in range(50)])
                convert_ms[kind] = dt / 50 * 1000
    speed = {k: n / min(v) for k, v in times.items()}
    median = {k: n / sorted(v)[len(v) // 2] for k, v in times.items()}
    result = {
        "n_photos": n, "backbone": "tf_efficientnet_lite0 (offline weights)", "precision": "fp32",
        "layout": "channels_last", "batch_size": args.batch_size, "workers": args.workers,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "torch": torch.__version__, "python": sys.version.split()[0], "rounds": args.rounds,
        "feature": shapes,
        "extract_photos_per_s": {k: round(v, 2) for k, v in speed.items()},
        "extract_seconds_per_round": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "regions_over_pooled": round(speed["regions"] / speed["pooled"], 3),
        "extract_photos_per_s_median": {k: round(v, 2) for k, v in median.items()},
        "regions_over_pooled_median": round(median["regions"] / median["pooled"], 3),
        "after_forward_ms_per_batch": {k: round(v, 3) for k, v in convert_ms.items()},
        "cache": {k: {m: round(x, 1) for m, x in v.items()} for k, v in cache_rows.items()},
        "target_region_bytes_per_photo": 130_000,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
