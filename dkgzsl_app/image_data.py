"""Photo folders as FeatureSets, so `train` and `evaluate` work on images with the same code as on
feature files. Layout: one sub-folder of photos per class (``DIR/<class>/*.jpg``), or, for test photos,
a flat folder whose file names start with the class (``DIR/<class>__0001.jpg``, what `dkgzsl demo` writes).
The attributes CSV is the class table format (name, optional origin, one column per attribute). ``kind``
picks the features: ``pooled`` (N, D) float32, or ``regions`` (N, R, C) float16 (the region/token map that
region methods such as DKGZSL consume)."""
from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from typing import Callable, ContextManager, Optional

import numpy as np

from .images import collect_images
from .models.classcsv import read_class_csv
from .models.errors import DataError


def labelled_photos(folder: Path) -> dict[str, list[Path]]:
    """Class name → photos, from sub-folders or from ``<class>__*`` file names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of photos.")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if subdirs:
        return {d.name: collect_images([str(d)]).images for d in subdirs}
    out: dict[str, list[Path]] = {}
    for p in collect_images([str(folder)]).images:
        if "__" in p.stem:
            out.setdefault(p.stem.split("__")[0], []).append(p)
    if not out:
        raise DataError(f"{folder}: no labelled photos. Put each class's photos in a sub-folder named after "
                        "the class, or name files <class>__<anything>.jpg.")
    return out


Progress = Callable[[int], ContextManager[Optional[Callable[[int], None]]]]
"""``progress(total)``: a context manager yielding ``tick(n)`` or None (``progress.photo_progress``)."""


def _extract(photos: dict[str, list[Path]], index: dict[str, int], backbone, device, cache, batch_size, workers,
             warn: Callable[[str], None], on_batch, progress: Progress | None = None, precision: str = "fp32",
             channels_last: bool | None = None, kind: str = "pooled"):
    paths, labels = [], []
    for name, files in photos.items():
        paths += [str(f) for f in files]
        labels += [index[name]] * len(files)
    feats, keep = extract_paths(paths, backbone, device, cache, batch_size, workers, warn, on_batch, progress,
                                precision, channels_last, kind)
    return feats, np.array([labels[i] for i in keep], np.int64)


def extract_paths(paths: list[str], backbone, device, cache, batch_size, workers, warn: Callable[[str], None],
                  on_batch=None, progress: Progress | None = None, precision: str = "fp32",
                  channels_last: bool | None = None, kind: str = "pooled"):
    """(features of the photos that could be read, their sorted indices into ``paths``); the others are
    warned about. Features (N, D) float32 | (N, R, C) float16."""
    from .extract import extract_cached

    with (progress(len(paths)) if progress is not None else contextlib.nullcontext(None)) as tick:
        callbacks = [f for f in (on_batch, tick) if f is not None]

        def both(n: int) -> None:
            for f in callbacks:
                f(n)

        got = extract_cached(backbone, paths, device, batch_size, workers, cache, both if callbacks else None,
                             precision, channels_last, kind, ranks=True)  # torchrun: the ranks share the photos
    for i, reason in sorted(got.errors.items()):
        warn(f"{paths[i]}: {reason} (skipped)")
    keep = sorted(got.features)
    if not keep:
        raise DataError("none of the photos could be read.")
    first = got.features[keep[0]]
    # (N, D) float32 | (N, R, C) float16, filled while the per-photo tensors are let go (np.stack would hold
    # a second full copy: 1.25 GB more for 10k lite0 region maps)
    feats = np.empty((len(keep), *first.shape), np.float32 if kind == "pooled" else np.float16)
    for j, i in enumerate(keep):
        feats[j] = got.features.pop(i).numpy()
    return feats, keep


def feature_set_from_images(images_dir: Path, attributes_csv: Path, backbone, device: str = "cpu", cache=None,
                            batch_size: int = 32, workers: int = 2, warn: Callable[[str], None] = print,
                            on_batch=None, progress: Progress | None = None, precision: str | None = None,
                            channels_last: bool | None = None, kind: str = "pooled"):
    """Training data: every class of the CSV; those with a photo sub-folder are seen, the rest unseen.

    ``on_batch(n)`` hears of every n photos done; ``progress(total)`` may draw a bar (see ``Progress``).
    Unless asked otherwise (``precision``: fp32 | bf16 | fp16, ``channels_last``), features are made as
    before issue 17: fp32 in the default memory layout on the CPU (bit for bit those of earlier versions, so
    a bundle trained from photos rebuilds byte for byte: the demo model's card), fp16 AMP + channels_last
    on CUDA. ``kind``: pooled (N, D) float32 features or regions (N, R, C) float16."""
    cuda = str(device).startswith("cuda")
    if precision is None:
        precision = "fp16" if cuda else "fp32"
    if channels_last is None:
        channels_last = cuda
    table, photos = _training_classes(images_dir, attributes_csv)
    index = {n: i for i, n in enumerate(table.names)}
    feats, labels = _extract(photos, index, backbone, device, cache, batch_size, workers, warn, on_batch, progress,
                             precision, channels_last, kind)
    return _training_set(feats, labels, table, photos, images_dir)


def _training_classes(images_dir: Path, attributes_csv: Path):
    """(the class table, class name → photos) of a training folder, checked against each other."""
    table = read_class_csv(attributes_csv, require_origin=False)
    photos = {k: v for k, v in labelled_photos(images_dir).items() if v}
    unknown = sorted(set(photos) - set(table.names))
    if unknown:
        hints = "; ".join(f"{u!r} (did you mean {', '.join(difflib.get_close_matches(u, table.names, 2)) or 'nothing close'}?)"
                          for u in unknown[:5])
        raise DataError(f"{images_dir}: photo folders for classes missing from {attributes_csv}: {hints}. "
                        "Add a row for each class, or rename the folder.")
    if table.origins is not None:
        for name, origin in zip(table.names, table.origins):
            if origin == "seen" and name not in photos:
                raise DataError(f"{attributes_csv}: class {name!r} is marked seen but {images_dir} has no photos of it.")
            if origin != "seen" and name in photos:
                raise DataError(f"{attributes_csv}: class {name!r} is marked {origin} but {images_dir} has photos of it.")
    if len(photos) < 3:
        raise DataError(f"{images_dir}: photos of at least 3 classes are needed to train (found {len(photos)}).")
    return table, photos


def _training_set(feats, labels, table, photos, images_dir):
    from .trainer.data import FeatureSet

    seen = np.array([n in photos for n in table.names])
    empty = np.zeros(0, np.int64)
    return FeatureSet(features=feats, labels=labels, class_names=list(table.names), attributes=table.values,
                      attribute_names=list(table.attribute_names), seen=seen, trainval=np.arange(len(labels)),
                      test_seen=empty, test_unseen=empty, source=f"images:{images_dir}")


def finetune_set_from_images(images_dir: Path, attributes_csv: Path, backbone, device: str = "cpu", workers: int = 2,
                             warn: Callable[[str], None] = print, progress: Progress | None = None,
                             kind: str = "pooled"):
    """Training data for ``train --finetune-backbone``: (a FeatureSet of the starting backbone's features, a
    ``PhotoSet`` of the same rows' photos as uint8 tensors, which the trainer runs the backbone on again).

    The features are computed from exactly those tensors by the trainer's own forward pass (fp32 and the
    default layout on the CPU: the features ``feature_set_from_images`` extracts there), not through the
    feature cache: each photo is decoded once."""
    import torch

    from .extract import photo_tensors
    from .trainer.backbone_ft import PhotoSet

    table, photos = _training_classes(images_dir, attributes_csv)
    index = {n: i for i, n in enumerate(table.names)}
    paths, labels = [], []
    for name, files in photos.items():
        paths += [str(f) for f in files]
        labels += [index[name]] * len(files)
    with (progress(len(paths)) if progress is not None else contextlib.nullcontext(None)) as tick:
        tensors, keep, errors = photo_tensors(backbone, paths, workers, tick)
    for i, reason in sorted(errors.items()):
        warn(f"{paths[i]}: {reason} (skipped)")
    if not keep:
        raise DataError("none of the photos could be read.")
    ps = PhotoSet(tensors, backbone)
    dev = torch.device(device)
    start = ps.copy_to(dev)
    with (progress(len(keep)) if progress is not None else contextlib.nullcontext(None)) as tick:
        feats = ps.features(start, torch.arange(len(keep)), dev, kind, tick).cpu().numpy()
    return _training_set(feats, np.array([labels[i] for i in keep], np.int64), table, photos, images_dir), ps


def test_set_from_images(images_dir: Path, bundle, backbone, device: str = "cpu", cache=None,
                         batch_size: int = 32, workers: int = 2, warn: Callable[[str], None] = print,
                         progress: Progress | None = None, precision: str = "fp32", kind: str = "pooled"):
    """Evaluation data: labelled photos of the bundle's classes, all of them test images; ``precision`` is a
    resolved one (fp32, bf16, fp16), the backbone in channels_last on the CPU; ``kind`` as for
    ``feature_set_from_images`` (the one the bundle's method consumes)."""
    from .trainer.data import FeatureSet

    cfg = bundle.config
    photos = labelled_photos(images_dir)
    unknown = sorted(set(photos) - set(cfg.class_names))
    if unknown:
        raise DataError(f"{images_dir}: photos of classes the model does not know: {', '.join(unknown[:5])}.")
    index = {n: i for i, n in enumerate(cfg.class_names)}
    feats, labels = _extract(photos, index, backbone, device, cache, batch_size, workers, warn, None, progress,
                             precision, kind=kind)
    seen = np.array(cfg.seen)
    idx = np.arange(len(labels))
    return FeatureSet(features=feats, labels=labels, class_names=list(cfg.class_names),
                      attributes=bundle.model.class_attributes.detach().cpu().numpy(), attribute_names=list(cfg.attribute_names),
                      seen=seen, trainval=np.zeros(0, np.int64), test_seen=idx[seen[labels]],
                      test_unseen=idx[~seen[labels]], source=f"images:{images_dir}")
