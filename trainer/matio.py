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

What the variables mean (the xlsa17 layout) is :mod:`.xlsa17`'s business, not this module's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..models.errors import DataError

__all__ = ["is_v73", "read_mat", "mat_variables", "to_strings"]

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
