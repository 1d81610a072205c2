#!/usr/bin/env python3
"""classify photos/s with a DKGZSL bundle (region features through SOVR) beside a D3GZSL bundle (pooled
features), same backbone (tf_efficientnet_lite0, offline weights), same photos, no feature cache, in one
run taking turns round by round (the ratio is the cost of the region head; target ≥ 0.9).

Bundles are randomly initialised at the demo model's shape (48 classes, 12 attributes, widths 512 / 256,
attention 128): speed does not depend on the weights' values. Photos are rendered demo photos.

    python benchmarks/classify_methods.py --n 96 --rounds 3 --out benchmarks/results/classify_methods.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def build(folder: Path, method: str, kind: str) -> Path:
    from dkgzsl_app.models.backbone import create_backbone
    from dkgzsl_app.models.bundle import save_bundle
    from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
    from dkgzsl_app.models.methods import model_class
    from dkgzsl_app.models.methods.dkgzsl import Options
    from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes

    classes = demo_classes()
    options = Options().for_kind(kind).to_dict() if method == "dkgzsl" else {}
    cfg = ModelConfig(method=method, feature_dim=1280, attribute_names=list(ATTRIBUTES),
                      class_names=[c.name for c in classes], seen=[c.seen for c in classes],
                      generator=GeneratorConfig(noise_dim=len(ATTRIBUTES), hidden_dim=512, critic_hidden_dim=512),
                      head=HeadConfig(embed_dim=256), backbone=create_backbone("tf_efficientnet_lite0").config,
                      feature_kind=kind, options=options)
    torch.manual_seed(0)
    model = model_class(method).from_config(cfg)
    model.class_attributes.copy_(torch.tensor([c.attributes() for c in classes]))
    return save_bundle(model, cfg, folder / f"{method}-{kind}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out")
    a = p.parse_args()

    import dkgzsl_app
    from dkgzsl_app.trainer.render import write_test_photos

    work = Path(tempfile.mkdtemp(prefix="dkgzsl-bench-"))
    per_class = max(1, a.n // 48)
    paths = [str(x) for x in write_test_photos(work / "photos", per_class, seed=3)][: a.n]
    clfs = {name: dkgzsl_app.load(str(build(work, *name.split("/"))), device="cpu", precision="fp32")
            for name in ("d3gzsl/pooled", "dkgzsl/regions")}
    for clf in clfs.values():
        clf.reload_classes = lambda: None
    spent = dict.fromkeys(clfs, 0.0)
    load = os.getloadavg()
    clfs["d3gzsl/pooled"].classify(paths[:a.batch_size], batch_size=a.batch_size)  # warm-up
    clfs["dkgzsl/regions"].classify(paths[:a.batch_size], batch_size=a.batch_size)
    for r in range(a.rounds):
        order = list(clfs) if r % 2 == 0 else list(reversed(clfs))
        for name in order:
            t = time.perf_counter()
            preds = clfs[name].classify(paths, batch_size=a.batch_size)
            spent[name] += time.perf_counter() - t
            assert all(p.top for p in preds)
    rows = {k: round(a.rounds * len(paths) / v, 2) for k, v in spent.items()}
    result = {"photos_per_s": rows, "ratio_dkgzsl_over_d3gzsl": round(rows["dkgzsl/regions"] / rows["d3gzsl/pooled"], 3),
              "photos": len(paths), "rounds": a.rounds, "load_before": load, "load_after": os.getloadavg(),
              "threads": torch.get_num_threads()}
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
