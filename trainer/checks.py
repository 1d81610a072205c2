"""Array checks shared by the feature loaders (:mod:`.data`, :mod:`.xlsa17`): each raises a DataError
that names the file, the variable and the first bad entry."""
from __future__ import annotations

import numpy as np

from ..models.errors import DataError

__all__ = ["check_finite", "integer_vector", "name_list"]


def check_finite(arr: np.ndarray, where: str, row: str, col: str, fix: str, base: int = 0) -> None:
    """Raise naming how many values of a 2-D array (or 3-D: (N, R, C) region maps) are NaN/inf and the
    first one.

    ``base`` is 1 for MATLAB files, whose users count images and classes from 1.
    """
    bad = ~np.isfinite(arr)
    if bad.any():
        at = np.argwhere(bad)[0] + base
        region = f"region {at[1]}, " if len(at) == 3 else ""
        raise DataError(f"{where}: {int(bad.sum())} NaN/inf value(s); the first at {row} {at[0]}, {region}{col} "
                        f"{at[-1]} ({base}-based). {fix}")


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
