"""Shared fixtures: tiny synthetic feature sets made in the test (no files outside tests/)."""
import numpy as np
import pytest

from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.data import FeatureSet


def make_feature_set(seed: int = 0, n_classes: int = 12, n_unseen: int = 4, n_attr: int = 16,
                     dim: int = 64, per_class: int = 40, noise: float = 0.3) -> FeatureSet:
    """Classes = random binary attribute vectors; features = a fixed nonlinear map of them + noise.

    Unseen classes are recognisable only through their attributes, as in real zero-shot data.
    """
    rng = np.random.default_rng(seed)
    attrs = (rng.random((n_classes, n_attr)) < 0.5).astype(np.float32)
    attrs[np.arange(n_classes), np.arange(n_classes) % n_attr] = 1.0  # no all-zero rows
    w = rng.normal(0, 1, (n_attr, dim)) / np.sqrt(n_attr) * 3
    means = np.maximum(np.tanh(attrs @ w) + 0.5, 0)  # (C, D)
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = np.maximum(means[labels] + noise * rng.normal(0, 1, (len(labels), dim)), 0).astype(np.float32)
    seen = np.ones(n_classes, bool)
    seen[rng.permutation(n_classes)[:n_unseen]] = False
    trainval, test_seen, test_unseen = [], [], []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if seen[c]:
            trainval += list(idx[: per_class * 3 // 4])
            test_seen += list(idx[per_class * 3 // 4:])
        else:
            test_unseen += list(idx)
    return FeatureSet(features=feats, labels=labels.astype(np.int64), class_names=[f"class_{c:02d}" for c in range(n_classes)],
                      attributes=attrs, attribute_names=[f"attr_{a:02d}" for a in range(n_attr)], seen=seen,
                      trainval=np.array(trainval, np.int64), test_seen=np.array(test_seen, np.int64),
                      test_unseen=np.array(test_unseen, np.int64), source=f"synthetic(seed={seed})")


def tiny_config(**overrides) -> TrainConfig:
    base = dict(epochs=6, teacher_epochs=5, batch_size=32, hidden_dim=64, critic_hidden_dim=64, embed_dim=32,
                critic_steps=5, gen_per_unseen=10, lr=1e-3, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture
def feature_set():
    return make_feature_set()
