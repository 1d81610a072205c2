"""Read MATLAB ``.mat`` files of either flavour into plain numpy arrays.

MATLAB writes two incompatible container formats:

* v5/v7 (the default up to R2006b, still the default for small files): read with
  :func:`scipy.io.loadmat`.
* v7.3 (``-v7.3``, needed for variables over 2 GB): an HDF5 file with a 512-byte
  MATLAB text header as HDF5 user block. scipy refuses it (``NotImplementedError``),
  so it is read with h5py. HDF5 stores MATLAB arrays column-major, i.e. transposed,
  strings as ``uint16`` char arrays and cell arrays as arrays of object references
  into the ``#refs#`` group; :func:`read_mat` undoes all of that so both flavours
  give the same arrays.

Only what feature/split files need is supported: numeric and logical arrays, char
arrays and cell arrays (of strings or numbers). Structs raise :class:`DataError`.

The second half holds the low-level checks of the xlsa17 layout (1-based index
vectors, class-list .txt files, the train_loc/val_loc class split) that
:func:`dkgzsl_app.trainer.data.load_xlsa17` assembles into a FeatureSet.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dkgzsl_app.models.errors import DataError

__all__ = [
    "is_v73", "read_mat", "mat_variables", "to_strings", "check_finite", "integer_vector", "name_list",
    "xlsa17_locs", "xlsa17_class_names", "check_classes_txt", "xlsa17_val_classes",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_v73(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 (MATLAB v7.3) file.

    HDF5 puts its signature at byte 0 or, with a user block, at 512, 1024, 2048, ...
    MATLAB uses a 512-byte user block; files written directly with h5py have none.
    """
    with open(path, "rb") as fh:
        for offset in (0, 512, 1024, 2048, 4096):
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def read_mat(path: str | os.PathLike, names: Sequence[str], required: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Read the variables ``names`` and ``required`` from a ``.mat`` file.

    Args:
        path: A MATLAB v5/v7 or v7.3 (HDF5) file.
        names: Optional variables; absent ones are left out of the result.
        required: Variables that must be present.

    Returns:
        Variable name -> array, in MATLAB orientation (a ``(d, C)`` matrix comes back
        ``(d, C)`` from both flavours). Char arrays come back as ``str`` arrays, cell
        arrays as ``object`` arrays.

    Raises:
        DataError: the file is missing, truncated, corrupt or not a MAT-file, or a
            required variable is missing (the message lists those present).
    """
    path = Path(path)
    data = _read_any(path, [*required, *names])
    for key in required:
        if key not in data:
            raise DataError(f"{path}: variable '{key}' is missing (the file has: "
                            f"{', '.join(mat_variables(path)) or 'nothing readable'}). Use the original file.")
    return data


def _read_any(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found. Check the folder and file name.")
    try:
        v73 = is_v73(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc}). Check the file permissions.") from exc
    if v73:
        return _read_v73(path, names)
    import scipy.io

    try:
        data = scipy.io.loadmat(path, variable_names=list(names))
    except NotImplementedError:  # an HDF5 file whose signature we did not spot
        return _read_v73(path, names)
    except Exception as exc:  # scipy raises ValueError/TypeError/zlib.error/... on bad bytes
        raise DataError(
            f"{path}: not a readable MAT-file, it may be truncated or corrupt "
            f"({type(exc).__name__}: {exc}). Download or copy it again."
        ) from exc
    return {k: v for k, v in data.items() if not k.startswith("__")}


def mat_variables(path: str | os.PathLike) -> list[str]:
    """Names of all variables in a ``.mat`` file (for error messages); [] if unreadable."""
    try:
        if is_v73(path):
            import h5py

            with h5py.File(path, "r") as f:
                return sorted(k for k in f.keys() if not k.startswith("#"))
        import scipy.io

        return sorted(name for name, _, _ in scipy.io.whosmat(path))
    except Exception:  # only used to enrich a message that is already an error
        return []


def _read_v73(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            out = {}
            for name in names:
                if name in f:
                    out[name] = _h5_value(f, f[name], f"{path}: variable '{name}'")
            return out
    except DataError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError on damaged files
        raise DataError(
            f"{path}: not a readable MATLAB v7.3 (HDF5) file, it may be truncated or corrupt "
            f"({type(exc).__name__}: {exc}). Download or copy it again."
        ) from exc


def _h5_value(f, obj, where: str) -> np.ndarray:
    """One MATLAB variable from an HDF5 object, transposed back to MATLAB orientation."""
    import h5py

    if isinstance(obj, h5py.Group):
        raise DataError(
            f"{where} is a MATLAB struct or object, which is not supported. "
            "Save it as a plain numeric array or cell array of strings."
        )
    mclass = obj.attrs.get("MATLAB_class", b"")
    mclass = mclass.decode() if isinstance(mclass, bytes) else str(mclass)
    if np.any(obj.attrs.get("MATLAB_empty", 0)):
        # MATLAB stores an empty array's dimensions as its data
        return np.zeros((0, 0), dtype=object if mclass == "cell" else np.float64)
    raw = obj[()]
    arr = np.asarray(raw)
    if arr.ndim >= 2:
        arr = arr.T  # a view: HDF5 holds MATLAB's column-major data as the transpose
    if mclass == "char":
        # (rows, cols) uint16 code units -> one string per row, like scipy does
        codes = np.atleast_2d(arr).astype(np.uint16)
        rows = [row.astype("<u2").tobytes().decode("utf-16-le", errors="replace") for row in codes]
        return np.array(rows, dtype=str)
    if arr.dtype == object or h5py.check_dtype(ref=arr.dtype) is not None:
        cells = np.empty(arr.shape, dtype=object)
        for idx, ref in np.ndenumerate(arr):
            if isinstance(ref, (bytes, str)):  # variable-length strings written by h5py
                cells[idx] = np.array([ref.decode() if isinstance(ref, bytes) else ref])
            else:
                cells[idx] = _h5_value(f, f[ref], f"{where} cell {idx}")
        return cells
    if arr.dtype.kind == "S":  # fixed-length byte strings written by h5py
        return np.char.decode(arr, "utf-8")
    if mclass == "logical":
        return arr.astype(bool)
    return arr


def to_strings(arr: np.ndarray, where: str) -> list[str]:
    """Flatten a MATLAB cell array of strings or a char matrix into a list of str.

    Args:
        arr: What :func:`read_mat` returned: an object array whose items are 1-element
            str arrays (a cell array), or a str array (a padded char matrix).
        where: "file: variable" for error messages.

    Raises:
        DataError: an item is not a string.
    """
    if arr.dtype.kind == "U":
        return [str(s).rstrip() for s in arr.ravel()]
    if arr.dtype != object:
        raise DataError(f"{where} should be a cell array of strings but holds {arr.dtype} numbers.")
    out = []
    for i, item in enumerate(arr.ravel()):
        item = np.asarray(item)
        if item.size == 0:
            out.append("")
        elif item.dtype.kind == "U":
            out.append("".join(str(s) for s in item.ravel()).rstrip())
        elif item.dtype == object and item.size == 1:
            out.extend(to_strings(item, where))
        else:
            raise DataError(f"{where}: item {i + 1} is not a string ({item.dtype}); expected a cell array of strings.")
    return out


# --------------------------------------------------------------------------- checks shared with data.py


def check_finite(arr: np.ndarray, where: str, row: str, col: str, fix: str, base: int = 0) -> None:
    """Raise naming how many values of a 2-D array are NaN/inf and the first one.

    ``base`` is 1 for MATLAB files, whose users count images and classes from 1.
    """
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0] + base
        raise DataError(f"{where}: {int(bad.sum())} NaN/inf value(s); the first at {row} {i}, {col} {j} "
                        f"({base}-based). {fix}")


def integer_vector(arr: np.ndarray, where: str) -> np.ndarray:
    """Flatten a numeric array of whole numbers (stored as float or int) to int64."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf" or (arr.ndim == 2 and min(arr.shape) > 1) or arr.ndim > 2:
        raise DataError(f"{where} should be a vector of whole numbers but is {arr.dtype} {arr.shape}.")
    flat = arr.ravel()
    if flat.dtype.kind == "f":
        bad = ~np.isfinite(flat) | (flat != np.round(flat))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: entry {k + 1} is {flat[k]}, not a whole number. Check the file.")
    return flat.astype(np.int64)


def name_list(fs_names: list[str], idx: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(repr(fs_names[i]) for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


# --------------------------------------------------------------------------- the xlsa17 layout


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
                 names: list[str]) -> np.ndarray | None:
    """Seen classes of ``val_loc`` images that share no class with ``train_loc``."""
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
            warnings.warn(f"{where} 'val_loc' and 'train_loc' share {shared.size} of {val_cls.size} classes, "
                          "so they are not a class-level split; those classes are not used as validation "
                          "classes.", stacklevel=3)
            val_cls = np.setdiff1d(val_cls, shared)
    if val_cls.size == 0 or val_cls.size >= int(seen.sum()):
        warnings.warn(f"{where} 'val_loc' gives no usable validation classes; carve_validation will pick "
                      "them at random.", stacklevel=3)
        return None
    return val_cls.astype(np.int64)
