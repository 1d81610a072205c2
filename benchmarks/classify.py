#!/usr/bin/env python3
"""classify throughput, side by side in one run (CPU by default):

  (a) the plain timm forward pass on preloaded, preprocessed tensors: fp32, default memory layout (what
      dkgzsl did on the CPU before issue 17);
  (a') the same in channels_last; (a'') channels_last + bf16 autocast; (a''m) the same through the
      backbone's mixed bf16 scheme (``mixed_bf16.py``: some layers fp32; what --precision bf16 runs);
      (a''') channels_last, two batches side by side in two threads with half torch's threads each
      (``extract.forward_streams``: what extraction does on the CPU) — a, a', a'', a''m and a''' take
      turns every two batches, so load from other processes falls on all five alike;
  (b) `classify` end to end in --precision auto (channels_last, bf16 where the CPU has it natively):
      decode + resize in DataLoader workers, forward (in streams, as a'''), head (no cache);
  (c) a naive single-process loop: open, transform, forward, one batch at a time;
  (d) `classify` again with a warm feature cache;
  (e) `dkgzsl classify` as the command runs it (``stream.classify_photos``: chunks of --chunk (256), a cold feature
      cache read and written, JSON Lines rows written to a file); (e0) the same as before the decode pool
      and the chunk overlap (a DataLoader per chunk, chunks one after the other; the same file byte for byte).

(b) runs once per ``--workers`` value (``--workers 0,1,2``: b_classify_w0, _w1, _w2; b_classify is the
first). CPU seconds per photo (this process and its DataLoader workers) are reported next to images/s:
they show the work each path does, which load from other processes hardly changes.

Photos (``--photos``): ``varied`` (default): N JPEGs made from the CC0 test photos at varied sizes (640 px
to 3000 px wide), random crops; ``big``: 12 MP JPEGs (4000 × 3000, quality 92), demo renders (``dkgzsl
demo``) upscaled with mild noise, as phones write them; ``demo``: the 256 px demo renders themselves.
``--draft-check K`` compares, for K photos, the features of the reduced-scale JPEG decode that extraction
uses (``load_rgb(draft=...)``, DCT scaling to no less than the resize target) with a full decode: relative
L2 difference and top-1 agreement of the model's predictions.
``--model`` scores with a bundle (e.g. ``demo-shapes``, the bundled demo model: region features, open-set
score) instead of the synthetic pooled-feature D3GZSL bundle built here.
Targets (issue #3): b/a ≥ 0.85, b/c ≥ 1.3, d ≥ 20× faster than b. Issue 17: b/a ≥ 2 on a CPU with native
bf16, ≥ 1.5 on one without (channels_last alone).

    python benchmarks/classify.py --n 500 --batch-size 32 --workers 2
    python benchmarks/classify.py --photos big --n 96 --model demo-shapes --workers 1,2 --draft-check 48
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


def make_big_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    """12 MP JPEGs: demo renders (256 px, class in the file name) centred on a 4000 × 3000 canvas of their
    background, upscaled, with mild noise so that the JPEG has a camera's entropy (~2 MB each)."""
    import numpy as np

    from dkgzsl_app.trainer.render import write_test_photos

    small = folder / "renders"
    small.mkdir(parents=True, exist_ok=True)
    renders = sorted(str(p) for p in write_test_photos(small, max(1, -(-n // 48)), seed + 1))[:n]
    rng = np.random.default_rng(seed)
    paths = []
    for r in renders:
        im = Image.open(r).convert("RGB")
        canvas = Image.new("RGB", (4000, 3000), im.getpixel((2, 2)))
        canvas.paste(im.resize((3000, 3000), Image.BICUBIC), (500, 0))
        a = np.asarray(canvas).astype(np.int16) + rng.normal(0, 4, (3000, 4000, 3)).astype(np.int16)
        p = folder / Path(r).name
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(p, quality=92)
        paths.append(str(p))
    shutil.rmtree(small)
    return paths


def make_demo_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    from dkgzsl_app.trainer.render import write_test_photos

    return sorted(str(p) for p in write_test_photos(folder, max(1, -(-n // 48)), seed + 1))[:n]


def reuse_or_make(folder: Path, kind: str, n: int) -> list[str]:
    """The photos of ``kind`` in ``folder`` (made there once: ``--keep`` reuses them across runs)."""
    stamp = folder / f".{kind}-{n}"
    if stamp.exists():
        return stamp.read_text().splitlines()
    paths = {"varied": make_photos, "big": make_big_photos, "demo": make_demo_photos}[kind](folder, n)
    stamp.write_text("\n".join(paths))
    return paths


def cpu_seconds() -> float:
    """CPU seconds used by this process and its reaped children (DataLoader workers), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


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
    p.add_argument("--workers", default="2", help="DataLoader workers for (b): one value or a list (0,1,2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--keep", type=Path, help="make the photos here and keep them (reused by later runs)")
    p.add_argument("--precision", default="auto", help="for (b), (c), (d) and (e): auto, fp32 or bf16")
    p.add_argument("--photos", choices=("varied", "big", "demo"), default="varied")
    p.add_argument("--model", help="a bundle source (e.g. demo-shapes) instead of the synthetic D3GZSL bundle")
    p.add_argument("--skip", default="", help="comma list of parts to leave out: naive, warm, cli")
    p.add_argument("--chunk", type=int, default=256, help="(e), (e0): photos per chunk (classify --chunk-size)")
    p.add_argument("--draft-check", type=int, default=0, metavar="K",
                   help="compare draft-decoded and fully decoded features for K photos")
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    worker_counts = [int(w) for w in a.workers.split(",")]

    import dkgzsl_app
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.images import load_rgb

    work = Path(tempfile.mkdtemp(prefix="dkgzsl-bench-"))
    photos_dir = a.keep or work / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    paths = reuse_or_make(photos_dir, a.photos, a.n)
    a.n = len(paths)
    mb = sum(Path(x).stat().st_size for x in paths) / 1e6
    megapixels = sum(w * h for w, h in (Image.open(x).size for x in paths)) / len(paths) / 1e6
    from dkgzsl_app.models.backbone import Backbone
    from dkgzsl_app.precision import cpu_native_bf16

    load_before = os.getloadavg()
    clf = dkgzsl_app.load(a.model or str(build_bundle(work)), device=a.device, precision=a.precision)
    kind = clf.bundle.config.feature_kind
    tf = clf.backbone.transform()
    dev = torch.device(a.device)
    plain = Backbone(copy.deepcopy(clf.backbone.model).to(dev), clf.backbone.config)  # default layout
    fast = Backbone(copy.deepcopy(clf.backbone.model).to(dev).to(memory_format=torch.channels_last),
                    clf.backbone.config)

    def plain_forward(batch: torch.Tensor):
        with torch.inference_mode():
            return plain.features(batch.to(dev))[0]

    try:
        from dkgzsl_app.mixed_bf16 import features as mixed_features  # (a2m): the backbone's mixed bf16 scheme
    except ImportError:  # a version before the schemes: plain autocast
        def mixed_features(backbone, x, precision):
            return backbone.features(x)

    def cl_forward(batch: torch.Tensor, bf16: bool = False, mixed: bool = False):
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            x = batch.to(dev).contiguous(memory_format=torch.channels_last)
            return (mixed_features(fast, x, "bf16") if mixed else fast.features(x))[0].float()

    try:
        from dkgzsl_app.extract import forward_streams
    except ImportError:  # a version before streams (a "before" run): the same split, for a'''
        def forward_streams(dev, channels_last):
            t = torch.get_num_threads()
            return (min(2, t), t // min(2, t)) if dev.type == "cpu" and t > 1 else (1, t)
    streams, per_stream = forward_streams(dev, True)

    def cl_streams(batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """(a3): what extraction does since it runs ``streams`` passes side by side, ``per_stream`` threads each."""
        from concurrent.futures import ThreadPoolExecutor

        before = torch.get_num_threads()
        torch.set_num_threads(per_stream)
        try:
            with ThreadPoolExecutor(streams, initializer=torch.set_num_threads, initargs=(per_stream,)) as pool:
                return list(pool.map(cl_forward, batches))
        finally:
            torch.set_num_threads(before)

    def sequential(fn):
        return lambda batches: [fn(b) for b in batches]

    # (a), (a'), (a''), (a'''): preloaded tensors (preprocessing is not timed), taking turns every `streams`
    # batches (a''' runs those side by side)
    tensors = torch.stack([tf(load_rgb(x)) for x in paths])
    variants = {"a_plain_forward": sequential(plain_forward), "a1_channels_last": sequential(cl_forward),
                "a2_channels_last_bf16": sequential(lambda b: cl_forward(b, True)),
                "a2m_channels_last_bf16_mixed": sequential(lambda b: cl_forward(b, True, True)),
                "a3_channels_last_streams": cl_streams}
    spent = dict.fromkeys(variants, 0.0)
    cpu = dict.fromkeys(variants, 0.0)
    feats: dict[str, list] = {k: [] for k in variants}
    for fn in variants.values():
        fn([tensors[: a.batch_size]] * streams)  # warm-up
    step = a.batch_size * streams
    for i in range(0, a.n, step):
        batches = list(tensors[i:i + step].split(a.batch_size))
        for k, fn in variants.items():
            c0 = cpu_seconds()
            t, f = timed(lambda: fn(batches))
            cpu[k] += cpu_seconds() - c0
            spent[k] += t
            feats[k] += f
    del tensors
    ref = torch.cat(feats["a_plain_forward"])
    diffs = {}
    for k in ("a1_channels_last", "a2_channels_last_bf16", "a2m_channels_last_bf16_mixed", "a3_channels_last_streams"):
        d = (torch.cat(feats[k]) - ref).abs()
        diffs[k] = {"max_abs": float(d.max()), "max_abs_over_max_feature": float(d.max() / ref.abs().max()),
                    "relative_l2": float(d.norm() / ref.norm())}

    # (b) classify end to end, no cache, once per worker count (after an untimed call on two photos: the
    # head's one-off set-up, e.g. the open-set prototypes, is not per photo)
    clf.classify(paths[:2], batch_size=a.batch_size, workers=0)
    preds = None
    for w in worker_counts:
        c0 = cpu_seconds()
        t, got = timed(lambda: clf.classify(paths, batch_size=a.batch_size, workers=w))
        cpu[f"b_classify_w{w}"] = cpu_seconds() - c0
        spent[f"b_classify_w{w}"] = t
        assert all(not pr.error for pr in got)
        if preds is None:
            preds = got
            spent["b_classify"], cpu["b_classify"] = t, cpu[f"b_classify_w{w}"]
        else:
            assert [g.top[0].name for g in got] == [pr.top[0].name for pr in preds]

    # (c) naive loop in one process
    if "naive" not in skip:
        def naive():
            for i in range(0, a.n, a.batch_size):
                batch = torch.stack([tf(Image.open(x).convert("RGB")) for x in paths[i:i + a.batch_size]])
                plain_forward(batch)
        c0 = cpu_seconds()
        spent["c_naive_loop"], _ = timed(naive)
        cpu["c_naive_loop"] = cpu_seconds() - c0

    # (d) warm cache (filled by an untimed cold run)
    if "warm" not in skip:
        cache = FeatureCache(work / "features.sqlite3")
        clf.classify(paths, batch_size=a.batch_size, workers=worker_counts[0], cache=cache)
        c0 = cpu_seconds()
        spent["d_classify_warm_cache"], warm = timed(
            lambda: clf.classify(paths, batch_size=a.batch_size, workers=worker_counts[0], cache=cache))
        cpu["d_classify_warm_cache"] = cpu_seconds() - c0
        assert [w.top[0].name for w in warm] == [pr.top[0].name for pr in preds]
        cache.close()

    # (e) what `dkgzsl classify PHOTOS -o results.jsonl` does: chunks, cold cache read and written, rows out
    if "cli" not in skip:
        from dkgzsl_app.stream import classify_photos

        cache = FeatureCache(work / "features-cli.sqlite3")
        c0 = cpu_seconds()
        spent["e_classify_cli_cold_cache"], summary = timed(lambda: classify_photos(
            clf, paths, [], "jsonl", work / "results.jsonl", model="bench", batch_size=a.batch_size,
            workers=worker_counts[0], cache=cache, chunk=a.chunk, progress=False))
        cpu["e_classify_cli_cold_cache"] = cpu_seconds() - c0
        assert summary.rows == a.n and not summary.failed
        cache.close()
        # (e0) the same as dkgzsl did before issue 17's decode pool and overlap: a DataLoader per chunk, chunks
        # one after the other (skipped where this dkgzsl has neither)
        import dkgzsl_app.extract as extract_mod
        import dkgzsl_app.stream as stream_mod

        if hasattr(extract_mod, "decode_pool"):
            import functools

            real = extract_mod.decode_pool, stream_mod.classify_chunks
            extract_mod.decode_pool = lambda workers: stream_mod._null()
            stream_mod.classify_chunks = functools.partial(real[1], overlap=False)
            cache = FeatureCache(work / "features-cli-before.sqlite3")
            try:
                c0 = cpu_seconds()
                spent["e0_classify_cli_before_pool"], summary = timed(lambda: classify_photos(
                    clf, paths, [], "jsonl", work / "results-before.jsonl", model="bench", batch_size=a.batch_size,
                    workers=worker_counts[0], cache=cache, chunk=a.chunk, progress=False))
                cpu["e0_classify_cli_before_pool"] = cpu_seconds() - c0
            finally:
                extract_mod.decode_pool, stream_mod.classify_chunks = real
                cache.close()
            assert (work / "results-before.jsonl").read_bytes() == (work / "results.jsonl").read_bytes()

    draft = None
    if a.draft_check:  # reduced-scale JPEG decoding (what extraction does) against a full decode
        import math

        from dkgzsl_app.extract import _forward, set_layout

        cfg = clf.backbone.config
        short = int(math.floor(min(cfg.input_size[-2:]) / cfg.crop_pct))
        sample = paths[:a.draft_check]
        set_layout(clf.backbone.model, True)
        out = {}
        for name, size in (("full", None), ("draft", (short, short))):
            x = torch.stack([tf(load_rgb(x, draft=size)) for x in sample])
            out[name] = torch.cat([_forward(clf.backbone, x[i:i + a.batch_size], dev, clf.precision, True, kind)
                                   for i in range(0, len(x), a.batch_size)]).float()
        top = {k: clf.model.class_scores(v.to(dev), clf.bundle.config.head.tau_student).argmax(1)
               for k, v in out.items()}
        d = out["draft"] - out["full"]
        draft = {"photos": len(sample), "draft_size": list(load_rgb(sample[0], draft=(short, short)).size),
                 "relative_l2": round(float(d.norm() / out["full"].norm()), 5),
                 "top1_agreement": round(float((top["draft"] == top["full"]).float().mean()), 4)}
        if a.photos != "varied":  # class in the file name (demo renders): accuracy of each
            names = clf.class_names
            truth = [Path(x).name.split("__")[0] for x in sample]
            for k, v in top.items():
                draft[f"top1_accuracy_{k}"] = round(sum(names[c] == t for c, t in zip(v.tolist(), truth))
                                                    / len(sample), 4)

    ips = {k: a.n / t for k, t in spent.items()}
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ratio = lambda k, base: round(ips[k] / ips[base], 3) if k in ips else None  # noqa: E731
    result = {"photos": a.photos, "images": a.n, "jpeg_mb": round(mb, 1), "megapixels_mean": round(megapixels, 2),
              "model": a.model or "synthetic d3gzsl (pooled)", "feature_kind": kind,
              "batch_size": a.batch_size, "workers": worker_counts, "chunk_e": a.chunk,
              "device": a.device, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "precision_b": clf.precision, "precision_asked": a.precision,
              "cpu_native_bf16": cpu_native_bf16() if dev.type == "cpu" else None,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "images_per_s": {k: round(v, 2) for k, v in ips.items()},
              "cpu_ms_per_image": {k: round(1000 * v / a.n, 1) for k, v in cpu.items()},
              "a1_over_a": ratio("a1_channels_last", "a_plain_forward"),
              "a2_over_a": ratio("a2_channels_last_bf16", "a_plain_forward"),
              "a2m_over_a": ratio("a2m_channels_last_bf16_mixed", "a_plain_forward"),
              "a3_over_a": ratio("a3_channels_last_streams", "a_plain_forward"),
              "forward_streams": {"streams": streams, "threads_each": per_stream},
              "feature_difference_to_a": diffs,
              "b_over_a": ratio("b_classify", "a_plain_forward"),
              "b_over_a1": ratio("b_classify", "a1_channels_last"),
              "b_over_a3": ratio("b_classify", "a3_channels_last_streams"),
              **{f"b_w{w}_over_a1": ratio(f"b_classify_w{w}", "a1_channels_last") for w in worker_counts[1:]},
              "e_over_a1": ratio("e_classify_cli_cold_cache", "a1_channels_last"),
              "e_over_a": ratio("e_classify_cli_cold_cache", "a_plain_forward"),
              "e0_over_a": ratio("e0_classify_cli_before_pool", "a_plain_forward"),
              "e_over_e0": ratio("e_classify_cli_cold_cache", "e0_classify_cli_before_pool"),
              "b_over_c": ratio("c_naive_loop", "b_classify") and round(ips["b_classify"] / ips["c_naive_loop"], 3),
              "d_over_b": ratio("d_classify_warm_cache", "b_classify") and round(ips["d_classify_warm_cache"] / ips["b_classify"], 1),
              "draft_decode_vs_full": draft,
              "peak_rss_mb": {"main": round(peak_self), "largest_worker": round(peak_children)}}
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
