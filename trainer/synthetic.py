"""A small synthetic zero-shot feature set: for smoke runs, the README's quick start and the tests.

Classes are random binary attribute vectors; features are a fixed nonlinear map of them plus noise,
so unseen classes are recognisable only through their attributes, as in real zero-shot data. It is
not a benchmark: use real xlsa17 features (or shared/bench proxies) for numbers you quote.

    python -m dkgzsl_app.trainer.synthetic OUT_DIR [--seed 0]   # writes the dkgzsl feature format
"""
from __future__ import annotations

import argparse

import numpy as np

from .data import FeatureSet, save_feature_folder


def make_feature_set(seed: int = 0, n_classes: int = 12, n_unseen: int = 4, n_attr: int = 16,
                     dim: int = 64, per_class: int = 40, noise: float = 0.3) -> FeatureSet:
    """3/4 of each seen class's images train, the rest test; every unseen image is test."""
    rng = np.random.default_rng(seed)
    attrs = (rng.random((n_classes, n_attr)) < 0.5).astype(np.float32)
    attrs[np.arange(n_classes), np.arange(n_classes) % n_attr] = 1.0  # no all-zero rows
    w = rng.normal(0, 1, (n_attr, dim)) / np.sqrt(n_attr) * 3
    means = np.maximum(np.tanh(attrs @ w) + 0.5, 0)  # (C, D)
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = np.maximum(means[labels] + noise * rng.normal(0, 1, (len(labels), dim)), 0).astype(np.float32)
    seen = np.ones(n_classes, bool)
    seen[rng.permutation(n_classes)[:n_unseen]] = False
    cut = per_class * 3 // 4
    trainval, test_seen, test_unseen = [], [], []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if seen[c]:
            trainval += list(idx[:cut])
            test_seen += list(idx[cut:])
        else:
            test_unseen += list(idx)
    return FeatureSet(features=feats, labels=labels.astype(np.int64),
                      class_names=[f"class_{c:02d}" for c in range(n_classes)], attributes=attrs,
                      attribute_names=[f"attr_{a:02d}" for a in range(n_attr)], seen=seen,
                      trainval=np.array(trainval, np.int64), test_seen=np.array(test_seen, np.int64),
                      test_unseen=np.array(test_unseen, np.int64), source=f"synthetic(seed={seed})")


def make_region_set(seed: int = 0, regions: int = 9, distractors: int = 4, background: float = 0.3,
                    **kwargs) -> FeatureSet:
    """``make_feature_set``'s images as region maps (N, R, D + 1) float16: each image's own feature sits in one
    random region, whose last channel (an "object-ness" response, as a backbone has for class shapes) is 1;
    ``distractors`` other regions carry features of random other classes (last channel 0) and the rest
    background noise, so the mean over regions mixes the object with its surroundings (for region methods)."""
    fs = make_feature_set(seed, **kwargs)
    rng = np.random.default_rng(seed + 1)
    n, dim = fs.features.shape
    out = np.abs(rng.normal(0, background, (n, regions, dim + 1)))  # (N, R, D + 1)
    out[:, :, dim] = 0
    for i in range(n):
        slots = rng.permutation(regions)[: distractors + 1]
        out[i, slots[0], :dim] = fs.features[i]
        out[i, slots[0], dim] = 1
        others = rng.choice(np.flatnonzero(fs.labels != fs.labels[i]), distractors)
        out[i, slots[1:], :dim] = fs.features[others]
    fs.features = out.astype(np.float16)
    fs.source = f"synthetic-regions(seed={seed})"
    return fs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=30)
    p.add_argument("--unseen", type=int, default=6)
    a = p.parse_args()
    fs = make_feature_set(a.seed, n_classes=a.classes, n_unseen=a.unseen)
    save_feature_folder(fs, a.out)
    print(f"{a.out}: {len(fs.labels)} images, {a.classes} classes ({a.unseen} unseen), dim {fs.features.shape[1]}")


if __name__ == "__main__":
    main()
