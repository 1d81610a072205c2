"""Backbone input size (issue 14: MSDN's 448 px): CPU photos/s and region count at 224 vs 448 px.

For each backbone, in one process: a warm-up, then ``--rounds`` alternating timed passes of
``extract(kind="regions")`` (decode, resize + centre crop, forward; fp32, channels_last, CPU) over the same
rendered 512 px photos at 224 px (the stock size) and at 448 px (``with_image_size``, what ``train
--image-size 448`` and the MSDN presets use), best and median pass each, and the 448/224 ratio; plus the
region map's shape (R regions × C channels) and its float16 bytes per photo in the feature cache.

``tf_efficientnet_lite0`` has its packaged ImageNet weights (offline); ``resnet101`` (the papers' and the
MSDN preset's backbone) runs with random weights: its Hub weights are not reachable offline, and the speed
does not depend on the weights' values.

    /tmp/helpers/quiet.sh .venv/bin/python benchmarks/image_size.py   # → benchmarks/results/image_size.json

Measured (2026-12-07, --n 32 --rounds 2, batch 16, workers 2, 2-core CPU shared with other helpers' jobs
(load average 8-10 during the run; the lead's training paused by quiet.sh), torch 2.14.1, 2 threads):

  backbone               size  regions (R × C)  cache B/photo  photos/s best (median)  448/224
  tf_efficientnet_lite0  224   49 × 1280           125,440     10.43 (10.36)
                         448   196 × 1280          501,760      2.77 (2.71)           0.265
  resnet101 (random)     224   49 × 2048           200,704      2.80 (2.74)
                         448   196 × 2048          802,816      0.70 (0.64)           0.25

448 px costs 4× the pixels and so ~4× the time and 4× the region bytes. For MSDN on CUB (11,788 photos) with
ResNet-101 that is ~9.5 GB of float16 region features in memory and in the cache (whose default limit is
2 GiB: the rest is evicted, so a second run re-extracts), against ~2.4 GB at 224.

Not measured here: MSDN trained at 448 on a real data set (no data set offline, no GPU in this session).
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
SIZES = (224, 448)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0", "resnet101"])
    ap.add_argument("--n", type=int, default=48, help="photos (one per demo class, 48, then more seeds)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/image_size.json")
    args = ap.parse_args()

    import torch

    from dkgzsl_app.extract import extract
    from dkgzsl_app.models.backbone import OFFLINE, create_backbone, with_image_size
    from dkgzsl_app.trainer.render import demo_classes, render

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        classes = demo_classes()
        photos = []
        for i in range(args.n):
            p = Path(tmp) / f"{i}.jpg"
            render(classes[i % len(classes)], i // len(classes), size=512).save(p, quality=90)
            photos.append(str(p))
        run = dict(device="cpu", batch_size=args.batch_size, workers=args.workers, kind="regions")
        for name in args.backbones:
            torch.manual_seed(0)
            stock = create_backbone(name, weights="offline" if name in OFFLINE else "none")
            assert stock.config.input_size[-1] == 224, stock.config.input_size
            backbones = {s: with_image_size(stock, s) for s in SIZES}  # 224: the stock one itself
            for s, bb in backbones.items():  # warm-up: layout, allocator, worker start-up
                extract(bb, photos[:args.batch_size], **run)
            times: dict[int, list[float]] = {s: [] for s in SIZES}
            shapes = {}
            for _ in range(args.rounds):
                for s, bb in backbones.items():
                    t = time.perf_counter()
                    got = extract(bb, photos, **run)
                    times[s].append(time.perf_counter() - t)
                    assert len(got.features) == len(photos) and not got.errors
                    shapes[s] = list(got.features[0].shape)
            best = {s: len(photos) / min(v) for s, v in times.items()}
            median = {s: len(photos) / sorted(v)[len(v) // 2] for s, v in times.items()}
            rows[name] = {
                "weights": stock.config.pretrained_tag or "random (timing only)",
                "regions": {s: {"R": shapes[s][0], "C": shapes[s][1], "cache_bytes_per_photo": shapes[s][0] * shapes[s][1] * 2}
                            for s in SIZES},
                "photos_per_s_best": {s: round(v, 2) for s, v in best.items()},
                "photos_per_s_median": {s: round(v, 2) for s, v in median.items()},
                "seconds_per_pass": {s: [round(t, 2) for t in v] for s, v in times.items()},
                "ratio_448_over_224_best": round(best[448] / best[224], 3),
            }
            print(name, json.dumps(rows[name]), flush=True)
    result = {"n_photos": len(photos), "photo_px": 512, "precision": "fp32", "layout": "channels_last",
              "kind": "regions", "batch_size": args.batch_size, "workers": args.workers, "rounds": args.rounds,
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "torch": torch.__version__, "python": sys.version.split()[0],
              "loadavg": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
              "backbones": rows,
              "not_measured": "MSDN trained at 448 px on a real data set: no data set offline, no GPU in this session"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
