#!/usr/bin/env python3
"""classify throughput, side by side in one run (CPU by default):

  (a) the plain timm forward pass on preloaded, preprocessed tensors: fp32, default memory layout (what
      dkgzsl did on the CPU before issue 17);
  (a') the same in channels_last; (a'') channels_last + bf16 autocast — a, a' and a'' take turns batch by
      batch, so load from other processes falls on all three alike;
  (b) `classify` end to end in --precision auto (channels_last, bf16 where the CPU has it natively):
      decode + resize in DataLoader workers, forward, head (no cache);
  (c) a naive single-process loop: open, transform, forward, one batch at a time;
  (d) `classify` again with a warm feature cache.

Photos: N JPEGs made from the CC0 test photos at varied sizes (640 px to 3000 px wide), random crops.
Targets (issue #3): b/a ≥ 0.85, b/c ≥ 1.3, d ≥ 20× faster than b. Issue 17: b/a ≥ 2 on a CPU with native
bf16, ≥ 1.5 on one without (channels_last alone).

    python benchmarks/classify.py --n 500 --batch-size 32 --workers 2
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"


def make_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    sources = [Image.open(ASSETS / f).convert("RGB") for f in ("chelsea.jpg", "coffee.jpg")]
    paths = []
    for i in range(n):
        src = sources[i % 2]
        w = rng.randint(640, 3000)
        h = int(w * rng.uniform(0.6, 0.9))
        im = src.resize((int(w * 1.1), int(h * 1.1)), Image.BILINEAR)
        x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
        p = folder / f"photo_{i:04d}.jpg"
        im.crop((x, y, x + w, y + h)).save(p, quality=90)
        paths.append(str(p))
    return paths


def build_bundle(folder: Path):
    from dkgzsl_app.models.backbone import create_backbone
    from dkgzsl_app.models.bundle import save_bundle
    from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
    from dkgzsl_app.models.networks import ZSLModel

    cfg = ModelConfig(method="d3gzsl", feature_dim=1280, attribute_names=[f"a{i}" for i in range(24)],
                      class_names=[f"class_{i}" for i in range(50)], seen=[i < 40 for i in range(50)],
                      generator=GeneratorConfig(noise_dim=24, hidden_dim=256, critic_hidden_dim=256),
                      head=HeadConfig(embed_dim=512), backbone=create_backbone("tf_efficientnet_lite0").config)
    model = ZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.rand(50, 24))
    return save_bundle(model, cfg, folder / "bundle")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--keep", type=Path, help="make the photos here and keep them")
    p.add_argument("--precision", default="auto", help="for (b), (c) and (d): auto, fp32 or bf16")
    a = p.parse_args()

    import dkgzsl_app
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.images import load_rgb

    work = Path(tempfile.mkdtemp(prefix="dkgzsl-bench-"))
    photos_dir = a.keep or work / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    paths = make_photos(photos_dir, a.n)
    mb = sum(Path(x).stat().st_size for x in paths) / 1e6
    from dkgzsl_app.models.backbone import Backbone
    from dkgzsl_app.precision import cpu_native_bf16

    load_before = os.getloadavg()
    clf = dkgzsl_app.load(str(build_bundle(work)), device=a.device, precision=a.precision)
    tf = clf.backbone.transform()
    dev = torch.device(a.device)
    plain = Backbone(copy.deepcopy(clf.backbone.model).to(dev), clf.backbone.config)  # default layout
    fast = Backbone(copy.deepcopy(clf.backbone.model).to(dev).to(memory_format=torch.channels_last),
                    clf.backbone.config)

    def plain_forward(batch: torch.Tensor):
        with torch.inference_mode():
            return plain.features(batch.to(dev))[0]

    def cl_forward(batch: torch.Tensor, bf16: bool = False):
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return fast.features(batch.to(dev).contiguous(memory_format=torch.channels_last))[0].float()

    # (a), (a'), (a''): preloaded tensors (preprocessing is not timed), taking turns batch by batch
    tensors = torch.stack([tf(load_rgb(x)) for x in paths])
    variants = {"a_plain_forward": plain_forward, "a1_channels_last": cl_forward,
                "a2_channels_last_bf16": lambda b: cl_forward(b, True)}
    spent = dict.fromkeys(variants, 0.0)
    feats: dict[str, list] = {k: [] for k in variants}
    for fn in variants.values():
        fn(tensors[: a.batch_size])  # warm-up
    for i in range(0, a.n, a.batch_size):
        for k, fn in variants.items():
            t, f = timed(lambda: fn(tensors[i:i + a.batch_size]))
            spent[k] += t
            feats[k].append(f)
    del tensors
    ref = torch.cat(feats["a_plain_forward"])
    diffs = {}
    for k in ("a1_channels_last", "a2_channels_last_bf16"):
        d = (torch.cat(feats[k]) - ref).abs()
        diffs[k] = {"max_abs": float(d.max()), "max_abs_over_max_feature": float(d.max() / ref.abs().max()),
                    "relative_l2": float(d.norm() / ref.norm())}
    t_a = spent["a_plain_forward"]

    # (b) classify end to end, no cache
    t_b, preds = timed(lambda: clf.classify(paths, batch_size=a.batch_size, workers=a.workers))
    assert all(not pr.error for pr in preds)

    # (c) naive loop in one process
    def naive():
        for i in range(0, a.n, a.batch_size):
            batch = torch.stack([tf(Image.open(x).convert("RGB")) for x in paths[i:i + a.batch_size]])
            plain_forward(batch)
    t_c, _ = timed(naive)

    # (d) warm cache (filled by an untimed cold run)
    cache = FeatureCache(work / "features.sqlite3")
    clf.classify(paths, batch_size=a.batch_size, workers=a.workers, cache=cache)
    t_d, warm = timed(lambda: clf.classify(paths, batch_size=a.batch_size, workers=a.workers, cache=cache))
    assert [w.top[0].name for w in warm] == [pr.top[0].name for pr in preds]

    ips = {k: a.n / t for k, t in (*spent.items(), ("b_classify", t_b), ("c_naive_loop", t_c),
                                   ("d_classify_warm_cache", t_d))}
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {"images": a.n, "jpeg_mb": round(mb, 1), "batch_size": a.batch_size, "workers": a.workers,
              "device": a.device, "torch_threads": torch.get_num_threads(),
              "precision_b": clf.precision, "precision_asked": a.precision,
              "cpu_native_bf16": cpu_native_bf16() if dev.type == "cpu" else None,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "images_per_s": {k: round(v, 2) for k, v in ips.items()},
              "a1_over_a": round(ips["a1_channels_last"] / ips["a_plain_forward"], 3),
              "a2_over_a": round(ips["a2_channels_last_bf16"] / ips["a_plain_forward"], 3),
              "feature_difference_to_a": diffs,
              "b_over_a": round(ips["b_classify"] / ips["a_plain_forward"], 3),
              "b_over_c": round(ips["b_classify"] / ips["c_naive_loop"], 3),
              "d_over_b": round(ips["d_classify_warm_cache"] / ips["b_classify"], 1),
              "peak_rss_mb": {"main": round(peak_self), "largest_worker": round(peak_children)}}
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
