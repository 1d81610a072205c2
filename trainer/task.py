"""A training task: real features of some classes, the attribute matrix, which classes are seen.

The same code trains the validation task (seen classes minus validation classes, validation classes
as unseen) and the final task (all classes), so model selection never looks at test images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Task:
    features: torch.Tensor  # (N, D) float32 | (N, R, C) float16 raw features of every image the task may touch
    labels: torch.Tensor  # (N,) int64 class index into `classes` order (-1: not in this task)
    attributes: torch.Tensor  # (C, A) raw class attribute vectors, task order
    seen: torch.Tensor  # (C,) bool
    train_idx: torch.Tensor  # (n,) images the model trains on (seen classes only)
    eval_idx: torch.Tensor | None = None  # (m,) images to score each epoch (validation), or None
    classes: np.ndarray | None = None  # (C,) task class -> index in the FeatureSet
    class_names: list[str] | None = None  # (C,) names, task order
    attribute_names: list[str] | None = None  # (A,) names of the attribute columns

    @property
    def seen_classes(self) -> torch.Tensor:
        return torch.nonzero(self.seen).squeeze(1)  # (S,)

    @property
    def unseen_classes(self) -> torch.Tensor:
        return torch.nonzero(~self.seen).squeeze(1)  # (U,)


def make_task(fs, classes: np.ndarray, seen: np.ndarray, train_idx: np.ndarray,
              eval_idx: np.ndarray | None = None) -> Task:
    """Restrict a FeatureSet to ``classes`` (FeatureSet class indices), relabelling images.

    Pooled features become a float32 (N, D) tensor; region maps stay float16 (N, R, C), never copied to
    float32 (a float32 copy of 10k lite0 region maps would take 2.5 GB)."""
    classes = np.asarray(classes, dtype=np.int64)
    remap = np.full(len(fs.class_names), -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    labels = remap[fs.labels]
    for name, idx in (("train", train_idx), ("eval", eval_idx)):
        if idx is not None and len(idx) and (labels[idx] < 0).any():
            raise ValueError(f"{name} images include classes outside the task")
    return Task(
        features=torch.from_numpy(np.ascontiguousarray(fs.features, dtype=np.float16 if np.ndim(fs.features) == 3
                                                        else np.float32)),
        labels=torch.from_numpy(labels),
        attributes=torch.from_numpy(np.ascontiguousarray(fs.attributes[classes], dtype=np.float32)),
        seen=torch.from_numpy(np.asarray(seen, dtype=bool)),
        train_idx=torch.from_numpy(np.asarray(train_idx, dtype=np.int64)),
        eval_idx=None if eval_idx is None else torch.from_numpy(np.asarray(eval_idx, dtype=np.int64)),
        classes=classes,
        class_names=[fs.class_names[i] for i in classes],
        attribute_names=list(fs.attribute_names),
    )


def fit_feature_scaling(features: torch.Tensor, chunk_values: int = 1 << 22) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dim min-max onto [0, 1] fitted on training features (f-CLSWGAN); constant dims map to 0.

    ``features`` (n, D) gives (D,) min and scale; region maps (n, R, C) (float16) give per-channel (C,)
    ones over all images and regions, computed in float32 on chunks of about ``chunk_values`` values, so
    no float32 copy of the whole set is made (equal to the 2-D result on the (n * R, C) rows)."""
    if features.ndim == 3:
        step = max(1, chunk_values // max(1, features.shape[1] * features.shape[2]))
        lows, highs = [], []
        for chunk in features.split(step):  # (step, R, C)
            chunk = chunk.float()
            lows.append(chunk.amin(dim=(0, 1)))
            highs.append(chunk.amax(dim=(0, 1)))
        lo = torch.stack(lows).amin(dim=0)  # (C,)
        span = torch.stack(highs).amax(dim=0) - lo
    else:
        lo = features.min(dim=0).values  # (D,)
        span = features.max(dim=0).values - lo
    scale = torch.where(span > 0, 1.0 / span.clamp_min(1e-12), torch.zeros_like(span))
    return lo, scale
