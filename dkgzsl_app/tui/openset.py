"""The browser's view of open-set rejection (issue 16): photos the model flags ``unknown`` (like none of its
classes, below the bundle's threshold; models/openset.py) show as ``unknown · best guess``, and the key ``o``
shows only the photos that are unknown: flagged by the model and not corrected, or marked unknown by the user.

The filter rides on the class filter (``FLAGGED`` in its place), so escape clears it and the status bar
names it like any class filter."""
from __future__ import annotations

from ..sort import UNKNOWN

FLAGGED = "unknown (flagged)"  # ResultSet.class_filter value: only the unknown photos


def flagged(row) -> bool:
    """Unknown in the end: the user's correction says so, or the model flagged it and nobody corrected it."""
    if row.correction:
        return row.correction == UNKNOWN
    return bool(getattr(row.pred, "unknown", None))


def flagged_text(row) -> str | None:
    """The class column's text for a photo the model flagged and nobody corrected, else None."""
    if row.correction or row.top is None or not getattr(row.pred, "unknown", None):
        return None
    return f"unknown · {row.top.name}"


def shown_score(guess) -> float:
    """The number the score column shows: the confidence (calibrated, sums to 1 over the classes); the
    calibrated score for results files written before it."""
    return guess.score if getattr(guess, "confidence", None) is None else guess.confidence
