"""Checking classes to add: names, attribute values (from a mapping or a CSV), value ranges, clashes.

Every check says where the problem is (file, row, column, or class and attribute) and what to do.
Torch-free.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..models.classcsv import DECIMAL_COMMA, column_letter, read_class_csv
from ..models.errors import DataError

if TYPE_CHECKING:
    from pathlib import Path

    from .model import ModelInfo
    from .registry import Registry

RANGE_SLACK = 0.1  # values may exceed the span of the model's attribute matrix by this share of it
# Every change refits all user rows jointly; its work grows with the square of their number (each class's
# generated features are scored against every class): 1,000 took 7.5-11 min on a 2-core CPU with a
# 200-class model (benchmarks/results/add_class_large.json), so 2,000 would take ~30-45 min.
MAX_USER_CLASSES = 1000


@dataclass
class Candidate:
    """A class to add, and where it came from (for messages)."""

    name: str
    values: np.ndarray  # (A,) float32
    where: str  # "FILE: row 3" or "class 'x'"
    cells: list[str] | None = None  # (A,) where each value sits, e.g. "column 'hot' (C)"
    origin: str = "user"  # a CSV's origin column (an export of the whole model has seen/unseen rows)


def check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip() or any(ord(ch) < 32 for ch in name):
        raise DataError(f"{where}: class name {name!r} is not usable: give a non-empty name without leading or "
                        "trailing spaces, line breaks or tabs.")
    return name


def suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def candidate_from_mapping(name: str, mapping: dict, attribute_names: list[str], where: str | None = None) -> Candidate:
    """Check one class given as {attribute: value}: every attribute, nothing else, finite numbers."""
    where = where or f"class {name!r}"
    check_name(name, where)
    if not isinstance(mapping, dict):
        raise DataError(f"{where}: attribute values must be a mapping of attribute name to number.")
    unknown = [a for a in mapping if a not in set(attribute_names)]
    if unknown:
        a = unknown[0]
        raise DataError(f"{where}: unknown attribute {a!r}{suggest(str(a), attribute_names)}. The model's "
                        f"attributes are: {', '.join(attribute_names[:20])}{' ...' if len(attribute_names) > 20 else ''}.")
    missing = [a for a in attribute_names if a not in mapping]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{where}: no value for attribute(s) {', '.join(repr(m) for m in missing[:5])}{more}. "
                        "Give a number for every attribute (0 when it does not apply); this model has no "
                        "attributes that may be left unknown.")
    values = []
    for a in attribute_names:
        v = mapping[a]
        try:
            if isinstance(v, bool) or v is None:
                raise ValueError
            f = float(v.replace(",", ".") if isinstance(v, str) and DECIMAL_COMMA.fullmatch(v) else v)
        except (TypeError, ValueError):
            raise DataError(f"{where}, attribute {a!r}: {v!r} is not a number.") from None
        if not math.isfinite(f) or not math.isfinite(np.float32(f)):
            raise DataError(f"{where}, attribute {a!r}: {v!r} is not a finite number. Use a finite value.")
        values.append(f)
    return Candidate(name, np.asarray(values, np.float32), where)


def candidates_from_csv(path: Path, attribute_names: list[str]) -> list[Candidate]:
    """Classes of a CSV (name, optional origin, one column per attribute); structural errors name the cell."""
    table = read_class_csv(path, attribute_names=list(attribute_names), require_origin=False, semicolons=True)
    out = []
    cells = [f"column '{a}' ({column_letter(j)})" for a, j in zip(table.attribute_names, table.columns)]
    for i, name in enumerate(table.names):  # every row shares one list of cell names
        out.append(Candidate(name, table.values[i], f"{path}: row {table.rows[i]}", cells,
                             table.origins[i] if table.origins else "user"))
    return out


def check_count(existing: int, new: int) -> None:
    """Refuse, before any work, a registry of more than MAX_USER_CLASSES user classes."""
    if existing + new > MAX_USER_CLASSES:
        raise DataError(f"{new} new classes would make {existing + new} user classes; a model can have at most "
                        f"{MAX_USER_CLASSES} (every change refits all of them together, in a time that grows with "
                        f"the square of their number). Add at most {max(0, MAX_USER_CLASSES - existing)} more.")


def value_range(builtin: np.ndarray) -> tuple[float, float, float, float]:
    """(lo, hi) the model's attribute matrix spans, and the accepted range with RANGE_SLACK on both sides."""
    lo, hi = float(builtin.min()), float(builtin.max())
    slack = RANGE_SLACK * ((hi - lo) or max(abs(hi), 1.0))
    return lo, hi, lo - slack, hi + slack


def check_range(cands: list[Candidate], builtin: np.ndarray, attribute_names: list[str]) -> None:
    lo, hi, a, b = value_range(builtin)
    for c in cands:
        bad = np.flatnonzero((c.values < a) | (c.values > b))
        if len(bad):
            j = int(bad[0])
            cell = c.cells[j] if c.cells else f"attribute {attribute_names[j]!r}"
            raise DataError(
                f"{c.where}, {cell}: {float(c.values[j]):g} is out of range. The model's class attributes span "
                f"{lo:g} to {hi:g}; values from {a:g} to {b:g} are accepted ({RANGE_SLACK:.0%} slack on each side). "
                "Rescale the value to the model's range.")


def screen(cands: list[Candidate], info: ModelInfo, reg: Registry, warn: Callable[[str], None]) -> list[Candidate]:
    """Name clashes (errors), exact repeats of existing classes (skipped), identical vectors (warnings)."""
    builtin = dict(zip(info.table.names, range(len(info.table.names))))
    users = dict(zip(reg.names, range(len(reg.names))))
    taken: dict[str, str] = {}
    keep = []
    for c in cands:
        origin = c.origin
        if c.name in builtin:
            i = builtin[c.name]
            same = np.array_equal(info.table.values[i], c.values) and origin == info.table.origins[i]
            if origin in ("seen", "unseen") and same:
                continue  # an export of the whole model read back: the built-in row is already there
            raise DataError(f"{c.where}: {c.name!r} is a built-in ({info.table.origins[i]}) class of this model. "
                            "Choose another name for the new class.")
        if origin != "user":
            raise DataError(f"{c.where}: origin {origin!r}, but {c.name!r} is not one of this model's {origin} "
                            "classes; add-class adds user classes only (origin 'user', or no origin column).")
        if c.name in users:
            if np.array_equal(reg.values[users[c.name]], c.values):
                warn(f"{c.where}: {c.name!r} is already a user class with the same values; skipped.")
                continue
            raise DataError(f"{c.where}: {c.name!r} is already a user class (with other values). Remove it first "
                            f"(dkgzsl classes remove {c.name}) or choose another name.")
        if c.name in taken:
            raise DataError(f"{c.where}: class name {c.name!r} is used twice ({taken[c.name]}); names must be unique.")
        taken[c.name] = c.where
        keep.append(c)
    existing: dict[bytes, str] = {}  # attribute vector → first class with it (linear in the classes)
    for n, v in reversed(list(zip(info.table.names, info.table.values)) + list(zip(reg.names, reg.values))):
        existing[(np.asarray(v, np.float32) + np.float32(0)).tobytes()] = n  # + 0: -0.0 and 0.0 alike
    for c in keep:
        key = (np.asarray(c.values, np.float32) + np.float32(0)).tobytes()
        twin = existing.get(key)
        if twin is not None:
            warn(f"{c.where}: {c.name!r} has the same attribute values as {twin!r}; the model cannot tell them "
                 "apart, and photos will be split between them.")
        existing.setdefault(key, c.name)
    return keep
