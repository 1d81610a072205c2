"""The benchmark data sets in their official layouts, split as xlsa17 proposes (``--dataset cub|awa2|sun --root DIR``).

:func:`load_dataset` reads a download (``layouts``) into a :class:`DatasetImages`: the photos, their labels,
the class table (xlsa17's class order; each class's official attribute vector, L2-normalised as xlsa17's
``att`` is: identical for CUB, within 0.004 for AWA2) and the proposed split (Xian et al. 2018): seen
(trainval) and unseen (test) classes, the seen classes' test photos (``test_seen_loc``) and, for CUB and
SUN, xlsa17's validation classes (those of ``val_loc`` that ``train_loc`` does not use). The class lists and
``test_seen_loc`` ship with the package (``datasets/xlsa17/<NAME>/``, from xlsa17's ``att_splits.mat``), so
no xlsa17 download is needed. :func:`feature_set_from_dataset` extracts backbone features through the
feature cache into the FeatureSet ``train`` and ``evaluate`` use.

A partial download is refused with what is missing and where; ``allow_partial`` (``--partial``) instead
uses the photos present: the proposed class split restricted to the classes that have photos (the others
are left out, with a warning), and a seeded fifth of each seen class's photos as test_seen (xlsa17 holds
out 20%), which is not the proposed image split (for smoke tests and subsets, not for tables).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..models.classcsv import ClassTable
from ..models.errors import DataError
from .layouts import READERS, Layout

SPLITS = Path(__file__).resolve().parent / "xlsa17"
DATASETS = {"cub": "CUB", "awa2": "AWA2", "sun": "SUN"}
TOP_FOLDERS = {"CUB": "CUB_200_2011", "AWA2": "Animals_with_Attributes2", "SUN": "SUNAttributeDB_Images"}
PARTIAL_TEST_SEEN = 0.2  # xlsa17's test_seen share of the seen classes' photos (1,764 of CUB's 8,821)


@dataclass(eq=False)
class DatasetImages:
    """A data set's photos with the proposed split (indices into ``paths``, sorted).

    Attributes:
        name: CUB, AWA2 or SUN.
        root: the download's folder.
        paths: (N,) the photos present, in xlsa17's image order.
        labels: (N,) int64 index into ``table.names``.
        table: the classes (xlsa17's order) with origin seen/unseen and L2-normalised attribute vectors.
        trainval, test_seen, test_unseen: int64 photo indices.
        val_classes: int64 seen classes xlsa17 validates on, or None (AWA2: the trainer carves its own).
        split: "proposed" (xlsa17's image split) or "partial" (see the module docstring).
    """

    name: str
    root: Path
    paths: list[Path]
    labels: np.ndarray  # (N,) int64
    table: ClassTable
    trainval: np.ndarray
    test_seen: np.ndarray
    test_unseen: np.ndarray
    val_classes: np.ndarray | None
    split: str = "proposed"


def _shipped(name: str, file: str) -> list[str] | None:
    p = SPLITS / name / file
    return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()] if p.is_file() else None


def dataset_name(dataset: str) -> str:
    """``cub`` → ``CUB`` (UsageError-free: DataError naming the choices)."""
    try:
        return DATASETS[dataset.lower()]
    except KeyError:
        raise DataError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}.") from None


def _root(name: str, root: Path) -> Path:
    """``root`` itself, or the archive's top folder inside it (CUB_200_2011/ ...) when that is what holds it."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{name}: --root {root}: no such folder.")
    inner = root / TOP_FOLDERS[name]
    marker = {"CUB": "images.txt", "AWA2": "classes.txt", "SUN": "images"}[name]
    return inner if not (root / marker).exists() and inner.is_dir() else root


def load_dataset(dataset: str, root, allow_partial: bool = False, seed: int = 0,
                 warn: Callable[[str], None] | None = None) -> DatasetImages:
    """Read ``dataset`` (cub, awa2, sun) from its official layout under ``root`` with xlsa17's split.

    Raises:
        DataError: a file or photo is missing (named, with where it is expected), or the files disagree.
    """
    from ..trainer.data import hold_out_per_class

    name = dataset_name(dataset)
    root = _root(name, root)
    names = _shipped(name, "allclasses.txt")
    seen_names = set(_shipped(name, "trainvalclasses.txt"))
    layout: Layout = READERS[name](root, names)
    attr_names = _shipped(name, "attributes.txt")
    no_values = [n for n in names if n not in layout.class_values]
    if no_values:
        raise DataError(f"{name}: no attribute vector for {len(no_values)} classes (e.g. {', '.join(no_values[:3])}); "
                        "the attribute files are not the official ones.")
    values = np.stack([layout.class_values[n] for n in names]).astype(np.float64)  # (C, d)
    if values.shape[1] != len(attr_names):
        raise DataError(f"{name}: the attribute file has {values.shape[1]} attributes per class, the data set "
                        f"{len(attr_names)}; download it again.")
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    values = (values / np.where(norms > 0, norms, 1)).astype(np.float32)  # (C, d), as xlsa17's att
    index = {n: i for i, n in enumerate(names)}
    labels_all = np.array([index[c] for c in layout.classes], np.int64)  # (N_listed,)
    seen = np.array([n in seen_names for n in names])  # (C,)
    complete = not layout.missing and len(layout.paths) == layout.expected
    if complete:
        keep = np.arange(len(layout.paths))
        test_seen = np.array([int(s) - 1 for s in _shipped(name, "test_seen_loc.txt")], np.int64)
        if test_seen.max() >= len(keep) or not seen[labels_all[test_seen]].all():
            raise DataError(f"{name}: the photos under {root} are not in xlsa17's order (a test_seen photo falls on "
                            "an unseen class); is this the official, unmodified download?")
        split = "proposed"
    else:
        if not allow_partial:
            missing = [str(layout.paths[i]) for i in layout.missing[:3]]
            have = len(layout.paths) - len(layout.missing)
            raise DataError(
                f"{name}: a partial download under {root}: {have} of the {layout.expected} photos of the complete "
                f"data set are there" + (f"; missing {len(layout.missing)}, e.g. {', '.join(missing)}" if missing else "")
                + f". They are expected in {layout.where}. Download the complete data set for the proposed split, "
                "or pass --partial to use the photos present (a seeded 20% of each seen class as test photos: "
                "not the proposed split, not comparable with published numbers).")
        keep = np.setdiff1d(np.arange(len(layout.paths)), np.asarray(layout.missing, np.int64))
        test_seen = None
        split = "partial"
        if warn:
            warn(f"{name}: --partial: {len(keep)} of the {layout.expected} photos; test_seen is a seeded 20% of each "
                 "seen class's photos, not xlsa17's proposed split.")
    paths = [layout.paths[i] for i in keep]
    labels = labels_all[keep]
    counts = np.bincount(labels, minlength=len(names))
    present = counts > 0  # (C,); all of them unless partial
    if not present.all():  # partial: a class without photos is left out (it could be neither trained nor tested)
        if warn:
            warn(f"{name}: --partial: {int((~present).sum())} of the {len(names)} classes have no photos and are left "
                 f"out ({int((seen & ~present).sum())} seen, {int((~seen & ~present).sum())} unseen).")
        new_index = np.cumsum(present) - 1
        labels = new_index[labels]
        names = [n for n, k in zip(names, present) if k]
        values, seen = values[present], seen[present]
        index = {n: i for i, n in enumerate(names)}
    if seen.sum() < 3 or seen.all():
        raise DataError(f"{name}: photos of {int(seen.sum())} seen and {int((~seen).sum())} unseen classes under {root}; "
                        "training needs at least 3 seen classes and an unseen one.")
    idx = np.arange(len(paths))
    if test_seen is None:
        trainval, test_seen = hold_out_per_class(idx[seen[labels]], labels, PARTIAL_TEST_SEEN, seed)
    else:
        trainval = np.setdiff1d(idx[seen[labels]], test_seen)
    val_names = _shipped(name, "valclasses.txt")
    val = np.array(sorted(index[n] for n in val_names if n in index), np.int64) if val_names else None
    if val is not None and not 0 < len(val) < seen.sum():
        val = None  # a partial download without (or with only) xlsa17's validation classes: the trainer carves its own
    table = ClassTable(list(names), ["seen" if s else "unseen" for s in seen], list(attr_names), values)
    return DatasetImages(name, root, paths, labels, table, np.sort(trainval), np.sort(test_seen),
                         idx[~seen[labels]], val, split)


def feature_set_from_dataset(ds: DatasetImages, backbone, device: str = "cpu", cache=None, batch_size: int = 32,
                             workers: int = 2, warn: Callable[[str], None] = print, progress=None,
                             precision: str | None = None, channels_last: bool | None = None, kind: str = "pooled",
                             test_only: bool = False):
    """``ds``'s backbone features (``kind``: pooled or regions) as a FeatureSet with its split (``test_only``:
    only the test photos, for evaluation); photos that cannot be read are left out with a warning. Precision
    and layout default as for ``image_data.feature_set_from_images`` (fp32, default layout on the CPU:
    bundles rebuild byte for byte)."""
    from ..image_data import extract_paths
    from ..trainer.data import FeatureSet

    cuda = str(device).startswith("cuda")
    precision = precision or ("fp16" if cuda else "fp32")
    channels_last = cuda if channels_last is None else channels_last
    rows = np.sort(np.r_[ds.test_seen, ds.test_unseen]) if test_only else np.arange(len(ds.paths))
    feats, got = extract_paths([str(ds.paths[i]) for i in rows], backbone, device, cache, batch_size, workers,
                               warn, None, progress, precision, channels_last, kind)
    keep = rows[np.asarray(got, np.int64)]  # sorted photo indices that were read

    def remap(idx):  # photo indices → rows of feats
        idx = idx[np.isin(idx, keep)]
        return np.searchsorted(keep, idx).astype(np.int64)

    t = ds.table
    return FeatureSet(features=feats, labels=ds.labels[keep], class_names=list(t.names), attributes=t.values,
                      attribute_names=list(t.attribute_names), seen=np.array([o == "seen" for o in t.origins]),
                      trainval=remap(ds.trainval), test_seen=remap(ds.test_seen), test_unseen=remap(ds.test_unseen),
                      val_classes=ds.val_classes, source=f"{ds.name.lower()}:{ds.root}")
