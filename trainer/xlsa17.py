"""The xlsa17 layout (Xian et al., "Zero-Shot Learning - the Good, the Bad and the Ugly"): all of it.

A folder with ``att_splits.mat`` (``att`` (d, C), ``allclasses_names`` (C, 1), 1-based image indices
``trainval_loc``, ``test_seen_loc``, ``test_unseen_loc`` and optionally ``train_loc``/``val_loc``) and
``res101.mat`` (``features`` (D, N), 1-based ``labels`` (N, 1)). Optional
``trainvalclasses.txt``/``testclasses.txt`` are cross-checked against the splits. The files are read
by :mod:`.matio` (MATLAB v5 and v7.3 alike); this module knows what the variables mean and turns them
into a :class:`~.data.FeatureSet`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..models.errors import DataError
from .checks import check_finite, integer_vector, name_list
from .matio import read_mat, to_strings

__all__ = ["load_xlsa17", "xlsa17_locs", "xlsa17_class_names", "check_classes_txt", "xlsa17_val_classes"]

Warn = Callable[[str], None]


def _python_warning(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


def load_xlsa17(directory, features_file: str = "res101.mat",
                attribute_names: list[str] | None = None, warn: Warn | None = None) -> FeatureSet:
    """Load an xlsa17 folder (``att_splits.mat`` + ``res101.mat``).

    Args:
        directory: The data set folder, e.g. ``xlsa17/data/CUB``.
        features_file: The features file in that folder.
        attribute_names: (d,) names for the rows of ``att``; default "attr_000", ...
        warn: called with each non-fatal notice (the CLI passes its one warning path); default: a
            Python ``UserWarning``.

    Returns:
        A FeatureSet; seen classes are those with trainval images. ``val_classes``
        are the seen classes of ``val_loc`` that ``train_loc`` does not use (None, with
        a warning, when ``val_loc`` is not a class-level split).

    Raises:
        DataError: a file or variable is missing or malformed, or the splits are
            inconsistent (out-of-range indices, overlaps, seen/unseen mix-ups).
    """
    directory = Path(directory)
    att_path, feat_path = directory / "att_splits.mat", directory / features_file
    for p in (att_path, feat_path):
        if not p.is_file():
            raise DataError(f"{p}: file not found. An xlsa17 folder needs att_splits.mat and {features_file}.")
    split_keys = ["trainval_loc", "test_seen_loc", "test_unseen_loc"]
    m = read_mat(att_path, ["allclasses_names", "train_loc", "val_loc"], required=["att", *split_keys])
    r = read_mat(feat_path, [], required=["features", "labels"])
    aw, fw = f"{att_path}:", f"{feat_path}:"

    att = np.asarray(m["att"])
    if att.ndim != 2 or att.dtype.kind not in "iuf":
        raise DataError(f"{aw} 'att' should be a numeric (attributes x classes) matrix, not {att.dtype} {att.shape}.")
    attributes = np.ascontiguousarray(att.T, dtype=np.float32)  # (C, d)
    n_cls, d = attributes.shape
    check_finite(attributes, f"{aw} 'att'", "class", "attribute", "Fix or re-download the file.", base=1)
    class_names = xlsa17_class_names(m, directory, n_cls, aw)
    if attribute_names is None:
        attribute_names = [f"attr_{j:03d}" for j in range(d)]
    elif len(attribute_names) != d:
        raise DataError(f"{aw} 'att' has {d} attributes (rows) but {len(attribute_names)} attribute names were "
                        "given. Pass one name per attribute.")

    feats = np.asarray(r["features"])
    labels = integer_vector(r["labels"], f"{fw} 'labels'")
    n = labels.size
    if feats.ndim != 2 or feats.dtype.kind not in "iuf":
        raise DataError(f"{fw} 'features' should be a numeric (D x N) matrix, not {feats.dtype} {feats.shape}.")
    if feats.shape[1] == n:
        feats = feats.T  # (N, D); a view, v5 files are column-major
    elif feats.shape[0] != n:
        raise DataError(f"{fw} 'features' is {feats.shape[0]} x {feats.shape[1]} but 'labels' has {n} entries; "
                        "expected features of shape (D, N) with one label per image (column).")
    features = np.ascontiguousarray(feats, dtype=np.float32)  # (N, D)
    check_finite(features, f"{fw} 'features'", "image", "dimension", "Re-extract the features of that image.", base=1)
    bad = (labels < 1) | (labels > n_cls)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{fw} 'labels': image {k + 1} has class {labels[k]}, but att_splits.mat 'att' has "
                        f"attributes for classes 1..{n_cls} only (labels are 1-based). The two files do not match.")
    labels -= 1  # (N,) 0-based

    trainval, test_seen, test_unseen = (xlsa17_locs(m, k, n, aw) for k in split_keys)
    for (ka, a), (kb, b) in [(("trainval_loc", trainval), ("test_unseen_loc", test_unseen)),
                             (("trainval_loc", trainval), ("test_seen_loc", test_seen)),
                             (("test_seen_loc", test_seen), ("test_unseen_loc", test_unseen))]:
        both = np.intersect1d(a, b, assume_unique=True)
        if both.size:
            raise DataError(f"{aw} {both.size} image(s) are in both '{ka}' and '{kb}' (first: image "
                            f"{both[0] + 1}, 1-based). Test images must never be trained on; "
                            "use an unmodified att_splits.mat.")
    seen = np.bincount(labels[trainval], minlength=n_cls) > 0  # (C,)
    for key, idx, want_seen, fix in (
        ("test_unseen_loc", test_unseen, False, "move them to 'test_seen_loc'"),
        ("test_seen_loc", test_seen, True, "move them to 'test_unseen_loc' or give those classes trainval images"),
    ):
        wrong = idx[seen[labels[idx]] != want_seen]
        if wrong.size:
            kind = "seen (trainval)" if not want_seen else "unseen (no trainval images)"
            cls = name_list(class_names, np.unique(labels[wrong]))
            raise DataError(f"{aw} '{key}' has {wrong.size} image(s) of {kind} classes (first: image {wrong[0] + 1} "
                            f"(1-based), classes {cls}). Use an unmodified att_splits.mat, or {fix}.")
    check_classes_txt(directory, class_names, seen, np.unique(labels[test_unseen]))
    val_classes = xlsa17_val_classes(m, labels, seen, n, aw, class_names, warn)
    from .data import FeatureSet  # data.py re-exports load_xlsa17, so import it here

    return FeatureSet(features, labels, class_names, attributes, list(attribute_names), seen,
                      trainval, test_seen, test_unseen, val_classes, source=f"xlsa17:{feat_path.resolve()}")


def xlsa17_locs(m: dict, key: str, n: int, where: str) -> np.ndarray:
    """1-based xlsa17 image indices -> sorted 0-based int64, checked against N images."""
    loc = integer_vector(m[key], f"{where} '{key}'")
    bad = (loc < 1) | (loc > n)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        fix = ("xlsa17 indices are 1-based (MATLAB); if the file was written 0-based, add 1 to every index."
               if loc[k] < 1 else "The split file and the features file are from different data sets.")
        raise DataError(f"{where} '{key}': entry {k + 1} is image index {loc[k]}, outside 1..{n} "
                        f"(the features file has {n} images). {fix}")
    loc = np.sort(loc - 1)
    dup = loc[1:][loc[1:] == loc[:-1]]
    if dup.size:
        raise DataError(f"{where} '{key}': image index {dup[0] + 1} is listed more than once.")
    return loc


def xlsa17_class_names(m: dict, directory: Path, n_cls: int, where: str) -> list[str]:
    """(C,) class names from 'allclasses_names', else allclasses.txt, else "class_000", ...

    Raises:
        DataError: the count differs from the C columns of 'att', or a name repeats.
    """
    if "allclasses_names" in m:
        names = to_strings(m["allclasses_names"], f"{where} 'allclasses_names'")
    elif (directory / "allclasses.txt").is_file():  # FLO's att_splits.mat has no names
        names = [ln.strip() for ln in (directory / "allclasses.txt").read_text().splitlines() if ln.strip()]
    else:
        names = [f"class_{i:03d}" for i in range(n_cls)]
    if len(names) != n_cls:
        raise DataError(f"{where} 'att' has {n_cls} columns (classes) but there are {len(names)} class "
                        "names. Each class needs one attribute column.")
    if len(set(names)) != n_cls:
        dup = next(c for c in names if names.count(c) > 1)
        raise DataError(f"{where} class name '{dup}' occurs more than once in 'allclasses_names'.")
    return names


def _read_classes_txt(path: Path, names: list[str]) -> set[str] | None:
    if not path.is_file():
        return None
    listed = {ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()}
    unknown = sorted(listed - set(names))
    if unknown:
        raise DataError(f"{path}: lists class(es) {unknown[:5]} that are not in att_splits.mat "
                        "'allclasses_names'. The .txt files belong to another data set; remove or fix them.")
    return listed


def check_classes_txt(directory: Path, names: list[str], seen: np.ndarray, test_unseen_cls: np.ndarray) -> None:
    """Cross-check optional ``trainvalclasses.txt``/``testclasses.txt`` against the splits.

    Args:
        directory: The xlsa17 folder.
        names: (C,) class names.
        seen: (C,) bool, classes with trainval images.
        test_unseen_cls: class indices that have test_unseen images.

    Raises:
        DataError: a listed class is unknown, or a file disagrees with the splits.
    """
    tv_txt = _read_classes_txt(directory / "trainvalclasses.txt", names)
    te_txt = _read_classes_txt(directory / "testclasses.txt", names)
    seen_names = {names[i] for i in np.flatnonzero(seen)}
    if tv_txt is not None and tv_txt != seen_names:
        diff = sorted(tv_txt ^ seen_names)
        raise DataError(f"{directory / 'trainvalclasses.txt'} disagrees with 'trainval_loc' about class(es) "
                        f"{diff[:5]}{' ...' if len(diff) > 5 else ''}. Remove the .txt or use matching files.")
    test_names = {names[i] for i in test_unseen_cls}
    if te_txt is not None and (te_txt & seen_names or not test_names <= te_txt):
        diff = sorted((te_txt & seen_names) | (test_names - te_txt))
        raise DataError(f"{directory / 'testclasses.txt'} disagrees with the splits about class(es) {diff[:5]}. "
                        "Remove the .txt or use matching files.")


def xlsa17_val_classes(m: dict, labels: np.ndarray, seen: np.ndarray, n: int, where: str,
                       names: list[str], warn: Warn | None = None) -> np.ndarray | None:
    """Seen classes of ``val_loc`` images that share no class with ``train_loc``; ``warn`` says why not."""
    warn = warn or _python_warning
    if "val_loc" not in m:
        return None
    val_cls = np.unique(labels[xlsa17_locs(m, "val_loc", n, where)])
    if (~seen[val_cls]).any():
        bad = val_cls[~seen[val_cls]]
        raise DataError(f"{where} 'val_loc' holds images of unseen class(es) {name_list(names, bad)}; validation "
                        "must use seen classes only. The file is inconsistent; use an unmodified att_splits.mat.")
    if "train_loc" in m:
        shared = np.intersect1d(val_cls, np.unique(labels[xlsa17_locs(m, "train_loc", n, where)]))
        if shared.size:
            warn(f"{where} 'val_loc' and 'train_loc' share {shared.size} of {val_cls.size} classes, "
                 "so they are not a class-level split; those classes are not used as validation classes.")
            val_cls = np.setdiff1d(val_cls, shared)
    if val_cls.size == 0 or val_cls.size >= int(seen.sum()):
        warn(f"{where} 'val_loc' gives no usable validation classes; carve_validation will pick "
             "them at random.")
        return None
    return val_cls.astype(np.int64)
