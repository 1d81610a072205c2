"""Attribute embeddings from a file, for the methods that embed attributes (MSDN, MSDN++): one vector per
attribute, e.g. GloVe/word2vec of the attribute names, as data sets and the MSDN authors provide them.

Format: CSV (or tab-separated), one row per attribute, ``name,v1,...,vd``; an optional header row (its
second cell not a number) is skipped. Rows are matched to the model's attributes by name; extra rows are
ignored (a word-vector file may cover more), a missing or duplicated name is an error.
"""
from __future__ import annotations

import csv
import difflib
import math
from pathlib import Path

import numpy as np

from ..models.errors import DataError


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_attribute_embeddings(path, attribute_names: list[str]) -> np.ndarray:
    """(A, d) float32 rows of ``path`` in ``attribute_names`` order; DataError naming the file otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read attribute embeddings ({e}).") from None
    dialect = "excel-tab" if "\t" in text.split("\n", 1)[0] else "excel"
    vectors: dict[str, list[float]] = {}
    width = None
    for lineno, row in enumerate(csv.reader(text.splitlines(), dialect), start=1):
        if not row or not "".join(row).strip():
            continue
        name, cells = row[0].strip(), [c.strip() for c in row[1:] if c.strip() != ""]
        values = [_number(c) for c in cells]
        if lineno == 1 and (not values or values[0] is None):
            continue  # a header
        if not values or any(v is None for v in values):
            raise DataError(f"{path}, line {lineno}: expected an attribute name and numbers "
                            "(name,v1,...,vd), got {!r}.".format(",".join(row)[:80]))
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}, line {lineno}: {name!r} has a value that is not a finite number.")
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise DataError(f"{path}, line {lineno}: {name!r} has {len(values)} values, the rows before it "
                            f"{width}; every attribute needs a vector of the same length.")
        if name in vectors:
            raise DataError(f"{path}, line {lineno}: attribute {name!r} appears twice.")
        vectors[name] = values
    if not vectors:
        raise DataError(f"{path}: no attribute vectors (expected rows name,v1,...,vd).")
    missing = [n for n in attribute_names if n not in vectors]
    if missing:
        hints = "; ".join(f"{m!r} (closest in the file: {', '.join(difflib.get_close_matches(m, list(vectors), 2)) or 'none'})"
                          for m in missing[:5])
        raise DataError(f"{path}: no vector for {len(missing)} of the model's {len(attribute_names)} attributes: "
                        f"{hints}{' ...' if len(missing) > 5 else ''}. Name each row after an attribute of the "
                        "class table.")
    out = np.array([vectors[n] for n in attribute_names], dtype=np.float32)  # (A, d)
    if (np.linalg.norm(out, axis=1) == 0).any():
        bad = attribute_names[int(np.flatnonzero(np.linalg.norm(out, axis=1) == 0)[0])]
        raise DataError(f"{path}: the vector of {bad!r} is all zeros; it cannot be normalised.")
    return out
