"""Feature data sets: the :class:`FeatureSet`, the dkgzsl feature folder, the validation split.

Two on-disk formats are read, both into a :class:`FeatureSet`: **xlsa17** folders
(``att_splits.mat`` + ``res101.mat``; everything about that layout is in :mod:`.xlsa17`, which
reads the MATLAB files through :mod:`.matio`), and the project's **own format** (what
:func:`save_feature_folder` writes), a folder with:

* ``features.safetensors`` (read and written with ``safetensors.numpy``; no pickle):
    - ``features`` (N, D) float32 (pooled), or (N, R, C) float16 (region/token maps),
    - ``labels`` (N,) int64, 0-based row index into ``classes.csv``,
    - ``split`` (N,) uint8: 0 = trainval (must be an image of a seen class),
      1 = test (test_seen if its class is seen, test_unseen if unseen),
      2 = not used (neither trained nor tested on),
    - optional ``val_classes`` (K,) int64: seen classes held out for validation.
* ``classes.csv``: ``name,origin,<attribute names...>``, one row per class in label
  order, origin ``seen`` or ``unseen`` (format in :mod:`.classcsv`).

Indices in a FeatureSet are 0-based and sorted ascending, so both formats of the same
data give the same :meth:`FeatureSet.sha256`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.atomic import atomic_write_bytes
from ..models.classcsv import ClassTable, read_class_csv, write_class_csv
from ..models.errors import DataError
from .checks import check_finite, name_list
from .xlsa17 import load_xlsa17  # re-exported: the xlsa17 format lives in .xlsa17

__all__ = [
    "FeatureSet", "ValidationSplit", "ClassTable", "load_xlsa17", "load_feature_folder",
    "save_feature_folder", "load_features", "carve_validation", "read_class_csv", "write_class_csv",
]

FEATURES_FILE, CLASSES_FILE = "features.safetensors", "classes.csv"
SPLIT_TRAINVAL, SPLIT_TEST, SPLIT_UNUSED = 0, 1, 2


@dataclass(eq=False)
class FeatureSet:
    """Image features with labels, class attributes and the seen/unseen split.

    Attributes:
        features: (N, D) float32, finite: pooled features; or (N, R, C) float16, finite: each image's
            region/token map (R regions of C channels), kept in float16 to halve memory (see ``kind``).
        labels: (N,) int64, 0-based index into ``class_names``.
        class_names: (C,) class names.
        attributes: (C, d) float32 class attribute matrix, as stored.
        attribute_names: (d,) names ("attr_000", ... when the source has none).
        seen: (C,) bool, True for seen (trainval) classes.
        trainval: int64 sorted image indices for training (seen classes only).
        test_seen: int64 sorted indices of held-out test images of seen classes.
        test_unseen: int64 sorted indices of test images of unseen classes.
        val_classes: int64 seen classes held out as validation classes, or None.
        source: where it was loaded from, for provenance.
    """

    features: np.ndarray  # (N, D) float32 | (N, R, C) float16
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    attributes: np.ndarray  # (C, d) float32
    attribute_names: list[str]
    seen: np.ndarray  # (C,) bool
    trainval: np.ndarray  # (n_trainval,) int64
    test_seen: np.ndarray  # (n_test_seen,) int64
    test_unseen: np.ndarray  # (n_test_unseen,) int64
    val_classes: np.ndarray | None = None  # (K,) int64
    source: str = ""

    @property
    def kind(self) -> str:
        """``"pooled"`` for (N, D) features, ``"regions"`` for (N, R, C) region maps."""
        return "regions" if np.ndim(self.features) == 3 else "pooled"

    def sha256(self) -> str:
        """Hex SHA-256 over features, labels, attributes, seen mask, splits and val_classes (each with its
        dtype and shape: pooled features as float32, region maps as float16)."""
        h = hashlib.sha256()
        val = self.val_classes if self.val_classes is not None else np.zeros(0, np.int64)
        feature_dtype = np.float16 if self.kind == "regions" else np.float32
        parts = [("features", self.features, feature_dtype), ("labels", self.labels, np.int64),
                 ("attributes", self.attributes, np.float32), ("seen", self.seen, np.bool_),
                 ("trainval", self.trainval, np.int64), ("test_seen", self.test_seen, np.int64),
                 ("test_unseen", self.test_unseen, np.int64),
                 ("val_classes", val, np.int64), ("has_val", np.array(self.val_classes is not None), np.bool_)]
        for name, arr, dtype in parts:
            arr = np.ascontiguousarray(arr, dtype=dtype)
            h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
            h.update(memoryview(arr).cast("B"))
        return h.hexdigest()


# --------------------------------------------------------------------------- own format


def load_feature_folder(directory) -> FeatureSet:
    """Load the project's own format (``features.safetensors`` + ``classes.csv``).

    Raises:
        DataError: a file or tensor is missing or malformed, or labels/splits are
            inconsistent with ``classes.csv``.
    """
    from safetensors.numpy import load_file

    directory = Path(directory)
    st_path, csv_path = directory / FEATURES_FILE, directory / CLASSES_FILE
    for p in (st_path, csv_path):
        if not p.is_file():
            raise DataError(f"{p}: file not found. A feature folder needs {FEATURES_FILE} and {CLASSES_FILE}.")
    try:
        t = load_file(st_path)
    except Exception as exc:  # SafetensorError/OSError on truncated or foreign files
        raise DataError(f"{st_path}: not a readable safetensors file, it may be truncated or corrupt "
                        f"({type(exc).__name__}: {exc}). Write it again.") from exc
    for key in ("features", "labels", "split"):
        if key not in t:
            raise DataError(f"{st_path}: tensor '{key}' is missing (it has: {', '.join(sorted(t)) or 'none'}).")
    table = read_class_csv(csv_path, require_origin=True)
    if "user" in table.origins:
        bad = table.names[table.origins.index("user")]
        raise DataError(f"{csv_path}: class '{bad}' has origin 'user', which only bundles allow; "
                        "a feature folder's classes are 'seen' or 'unseen'.")
    n_cls = len(table.names)
    seen = np.array([o == "seen" for o in table.origins])  # (C,)
    feats, labels, split = t["features"], t["labels"], t["split"]
    if feats.ndim not in (2, 3) or feats.dtype.kind != "f" or 0 in feats.shape[1:]:
        raise DataError(f"{st_path}: 'features' should be a (N, D) float32 matrix or (N, R, C) float16 region "
                        f"maps, not {feats.dtype} {feats.shape}.")
    n = feats.shape[0]
    for key, arr in (("labels", labels), ("split", split)):
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise DataError(f"{st_path}: '{key}' should be ({n},) integers (one per feature row), "
                            f"not {arr.dtype} {arr.shape}.")
    features = np.ascontiguousarray(feats, dtype=np.float32 if feats.ndim == 2 else np.float16)  # (N, D) | (N, R, C)
    labels, split = labels.astype(np.int64), split.astype(np.int64)
    check_finite(features, f"{st_path}: 'features'", "row", "column", "Re-extract those features.")
    bad = (labels < 0) | (labels >= n_cls)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{st_path}: 'labels': row {k} (0-based) has class {labels[k]}, but {CLASSES_FILE} has "
                        f"{n_cls} classes (labels are 0-based row indices). Add the missing class rows.")
    bad = ~np.isin(split, (SPLIT_TRAINVAL, SPLIT_TEST, SPLIT_UNUSED))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{st_path}: 'split': row {k} (0-based) has value {split[k]}; allowed are 0 (trainval), "
                        "1 (test) and 2 (unused).")
    trainval = np.flatnonzero(split == SPLIT_TRAINVAL)
    test = np.flatnonzero(split == SPLIT_TEST)
    wrong = trainval[~seen[labels[trainval]]]
    if wrong.size:
        raise DataError(f"{st_path}: {wrong.size} image(s) with split 0 (trainval) belong to unseen classes "
                        f"(first: row {wrong[0]} (0-based), class '{table.names[labels[wrong[0]]]}'). Set their split "
                        f"to 1 (test) or mark the class 'seen' in {CLASSES_FILE}.")
    empty = np.flatnonzero(seen & (np.bincount(labels[trainval], minlength=n_cls) == 0))
    if empty.size:
        raise DataError(f"{csv_path}: seen class(es) {name_list(table.names, empty)} have no trainval images. "
                        "Mark them 'unseen' or add training images.")
    val_classes = None
    if "val_classes" in t:
        val_classes = t["val_classes"].astype(np.int64).ravel()
        if ((val_classes < 0) | (val_classes >= n_cls)).any() or not seen[val_classes].all():
            raise DataError(f"{st_path}: 'val_classes' must hold indices of seen classes.")
    return FeatureSet(features, labels, table.names, table.values, table.attribute_names, seen,
                      trainval, test[seen[labels[test]]], test[~seen[labels[test]]], val_classes,
                      source=f"folder:{directory.resolve()}")


def _split_vector(fs: FeatureSet) -> np.ndarray:
    """(N,) uint8 split codes for ``fs``, checking it can be written consistently."""
    n, n_cls = fs.features.shape[0], len(fs.class_names)
    if fs.features.ndim not in (2, 3) or fs.labels.shape != (n,) or fs.attributes.shape != (n_cls, len(fs.attribute_names)):
        raise DataError(f"cannot save FeatureSet: inconsistent shapes features {fs.features.shape}, labels "
                        f"{fs.labels.shape}, attributes {fs.attributes.shape} for {n_cls} classes.")
    if fs.seen.shape != (n_cls,) or fs.labels.min(initial=0) < 0 or fs.labels.max(initial=0) >= n_cls:
        raise DataError("cannot save FeatureSet: 'seen' or 'labels' do not match the number of classes.")
    split = np.full(n, SPLIT_UNUSED, dtype=np.uint8)  # (N,)
    for name, idx, code, want_seen in (("trainval", fs.trainval, SPLIT_TRAINVAL, True),
                                       ("test_seen", fs.test_seen, SPLIT_TEST, True),
                                       ("test_unseen", fs.test_unseen, SPLIT_TEST, False)):
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n or (split[idx] != SPLIT_UNUSED).any()
                         or np.unique(idx).size != idx.size):
            raise DataError(f"cannot save FeatureSet: '{name}' has out-of-range or repeated/overlapping indices.")
        if (fs.seen[fs.labels[idx]] != want_seen).any():
            kind = "unseen" if want_seen else "seen"
            raise DataError(f"cannot save FeatureSet: '{name}' holds images of {kind} classes.")
        split[idx] = code
    return split


def save_feature_folder(fs: FeatureSet, directory) -> None:
    """Write ``fs`` in the own format; each file goes to a temp file, then ``os.replace``.

    Raises:
        DataError: ``fs`` is inconsistent, or the folder is not writable.
    """
    from safetensors.numpy import save

    directory = Path(directory)
    split = _split_vector(fs)
    feature_dtype = np.float16 if fs.kind == "regions" else np.float32
    tensors = {"features": np.ascontiguousarray(fs.features, dtype=feature_dtype),  # (N, D) | (N, R, C)
               "labels": np.ascontiguousarray(fs.labels, dtype=np.int64), "split": split}
    check_finite(tensors["features"], "cannot save FeatureSet: 'features'", "image", "dimension", "")
    if fs.val_classes is not None:
        tensors["val_classes"] = np.ascontiguousarray(fs.val_classes, dtype=np.int64)
    origins = ["seen" if s else "unseen" for s in fs.seen]
    table = ClassTable(list(fs.class_names), origins, list(fs.attribute_names), np.asarray(fs.attributes))
    blob = save(tensors, metadata={"format": "dkgzsl-features-1"})  # one key: map order is arbitrary
    atomic_write_bytes(directory / FEATURES_FILE, blob)
    write_class_csv(table, directory / CLASSES_FILE)


def load_features(directory, warn=None) -> FeatureSet:
    """Load a feature folder of either format, detected from the files present.

    ``att_splits.mat`` -> :func:`load_xlsa17`; ``features.safetensors`` ->
    :func:`load_feature_folder`. A path to one of those files means its folder. ``warn`` gets
    non-fatal notices (see :func:`load_xlsa17`).

    Raises:
        DataError: neither file is there (the message lists what was expected).
    """
    directory = Path(directory)
    if directory.is_file() and directory.name in ("att_splits.mat", FEATURES_FILE):
        directory = directory.parent
    if not directory.is_dir():
        raise DataError(f"{directory}: folder not found. Pass the folder that holds the features.")
    if (directory / "att_splits.mat").is_file():
        return load_xlsa17(directory, warn=warn)
    if (directory / FEATURES_FILE).is_file():
        return load_feature_folder(directory)
    raise DataError(f"{directory}: no features found. Expected either an xlsa17 folder (att_splits.mat + "
                    f"res101.mat) or a feature folder ({FEATURES_FILE} + {CLASSES_FILE}).")


# --------------------------------------------------------------------------- validation split


@dataclass(eq=False)
class ValidationSplit:
    """A seen-class-only split for model selection, carved from ``trainval``.

    Attributes:
        seen: (C,) bool, classes treated as seen during validation.
        train: int64 sorted image indices to train on (only classes seen here).
        val_seen: int64 sorted held-out images of those seen classes.
        val_unseen: int64 sorted images of the validation classes (treated as unseen).
    """

    seen: np.ndarray  # (C,) bool
    train: np.ndarray  # (n_train,) int64
    val_seen: np.ndarray  # (n_val_seen,) int64
    val_unseen: np.ndarray  # (n_val_unseen,) int64


def carve_validation(fs: FeatureSet, seed: int = 0, val_class_fraction: float = 0.2,
                     seen_holdout: float = 0.2) -> ValidationSplit:
    """Split ``fs.trainval`` into train / val_seen / val_unseen; the test splits are untouched.

    Args:
        fs: The data set.
        seed: Seed for ``np.random.default_rng``; the result depends only on it and ``fs``.
        val_class_fraction: Share of seen classes used as validation classes when
            ``fs.val_classes`` is None (at least 1, leaving at least 2 seen).
        seen_holdout: Per-class share of the remaining trainval images held out as
            val_seen (each class with >= 2 images keeps >= 1 and gives >= 1).

    Raises:
        DataError: fractions outside (0, 1), or too few seen classes.
    """
    for name, value in (("val_class_fraction", val_class_fraction), ("seen_holdout", seen_holdout)):
        if not 0.0 < value < 1.0:
            raise DataError(f"{name} must be between 0 and 1 (exclusive), got {value}.")
    rng = np.random.default_rng(seed)
    seen_cls = np.flatnonzero(fs.seen)
    if fs.val_classes is not None:
        val_cls = np.unique(np.asarray(fs.val_classes, dtype=np.int64))
        if not fs.seen[val_cls].all() or val_cls.size == 0 or val_cls.size >= seen_cls.size:
            raise DataError(f"{fs.source}: val_classes must be a non-empty proper subset of the seen classes.")
    else:
        if seen_cls.size < 3:
            raise DataError(f"{fs.source}: carving a validation split needs at least 3 seen classes, "
                            f"found {seen_cls.size}. Add seen classes.")
        n_val = min(max(1, round(val_class_fraction * seen_cls.size)), seen_cls.size - 2)
        val_cls = np.sort(rng.choice(seen_cls, size=n_val, replace=False))
    seen = fs.seen.copy()
    seen[val_cls] = False  # (C,)
    trainval = np.asarray(fs.trainval, dtype=np.int64)
    tv_labels = fs.labels[trainval]
    is_val = np.isin(tv_labels, val_cls)
    val_unseen = trainval[is_val]
    rest, rest_labels = trainval[~is_val], tv_labels[~is_val]
    # stratify without a loop over images: shuffle, group by class, rank within class
    order = rng.permutation(rest.size)
    order = order[np.argsort(rest_labels[order], kind="stable")]
    grouped = rest_labels[order]
    counts = np.bincount(grouped, minlength=fs.seen.size)  # (C,)
    starts = np.cumsum(counts) - counts
    rank = np.arange(grouped.size) - starts[grouped]
    n_hold = np.where(counts >= 2, np.clip(np.round(seen_holdout * counts), 1, counts - 1), 0)  # (C,)
    held = rank < n_hold[grouped]
    return ValidationSplit(seen=seen, train=np.sort(rest[order[~held]]), val_seen=np.sort(rest[order[held]]),
                           val_unseen=np.sort(val_unseen))


def hold_out_per_class(indices, labels, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split image ``indices`` into (kept, held), holding out ``fraction`` of each class's images.

    Each class with >= 2 images keeps >= 1 and gives >= 1; the result depends only on the inputs and
    ``seed`` (its own random stream, independent of :func:`carve_validation`'s). Both parts sorted.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"the held-out fraction must be between 0 and 1 (exclusive), got {fraction}.")
    indices = np.asarray(indices, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x5EE7])
    lab = np.asarray(labels)[indices]
    order = rng.permutation(indices.size)
    order = order[np.argsort(lab[order], kind="stable")]
    grouped = lab[order]
    counts = np.bincount(grouped, minlength=int(lab.max(initial=-1)) + 1)
    rank = np.arange(grouped.size) - (np.cumsum(counts) - counts)[grouped]
    n_hold = np.where(counts >= 2, np.clip(np.round(fraction * counts), 1, counts - 1), 0)
    held = rank < n_hold[grouped]
    return np.sort(indices[order[~held]]), np.sort(indices[order[held]])

