"""What the browser shows, as plain data: rows, their corrections, sorting and filtering, and the run
folder that keeps corrections and results on disk (autosave, atomic writes) and exports them."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..classify import Guess, Prediction
from ..models.atomic import atomic_write_bytes
from ..sort import UNKNOWN  # noqa: F401 (re-exported: the correction "none of the classes"; sort files it in _unknown)

SORTS = ("file", "class", "score", "origin")
LOW_CONFIDENCE = 0.5  # a top-1 probability below this is "low confidence"
_TRUTH = re.compile(r"^(?P<name>.+?)__\d+$")  # dkgzsl demo names photos <class>__NNNN.jpg


def truth_from_path(path: str) -> str | None:
    """The true class a labelled file name carries (``<class>__0003.jpg``), or None."""
    m = _TRUTH.match(Path(path).stem)
    return m.group("name") if m else None


@dataclass
class Row:
    key: str
    pred: Prediction
    truth: str | None = None
    correction: str | None = None  # the class the user says is right (may equal the prediction: confirmed)
    correction_origin: str | None = None  # seen / unseen / user of ``correction``, when it is known

    @property
    def top(self) -> Guess | None:
        return self.pred.top[0] if self.pred.top else None

    @property
    def name(self) -> str:
        return Path(self.pred.path).name

    @property
    def label(self) -> str | None:
        """The class this photo ends up with: the correction if any, else the prediction."""
        return self.correction or (self.top.name if self.top else None)

    @property
    def origin(self) -> str:
        """seen / unseen / user of the class this photo ends up with (``label``): a corrected photo takes its
        new class's origin; "" when that is not known (no model, and the class is not among the guesses)."""
        if self.correction and (self.top is None or self.correction != self.top.name):
            if self.correction_origin:
                return self.correction_origin
            return next((g.origin for g in self.pred.top if g.name == self.correction), "")
        return self.top.origin if self.top else ""

    @property
    def low_confidence(self) -> bool:
        return self.top is not None and self.top.probability < LOW_CONFIDENCE


class ResultSet:
    """Rows in arrival order, plus the view: a sort (key, reverse) and filters (class, text)."""

    def __init__(self):
        self.rows: dict[str, Row] = {}
        self.sort_by: str | None = None
        self.reverse = False
        self.class_filter: str | None = None
        self.text_filter = ""
        self.selected: set[str] = set()  # keys of the rows selected for a bulk correction
        self.history: list[dict[str, str | None]] = []  # per change: key → its correction before it

    def correct(self, changes: dict[str, str | None]) -> list[Row]:
        """Set the corrections ``changes`` (key → class, UNKNOWN, or None to forget) as one undoable change;
        returns the rows that changed."""
        before = {k: self.rows[k].correction for k, v in changes.items() if self.rows[k].correction != v}
        if before:
            self.history.append(before)
        for k in before:
            self.rows[k].correction = changes[k]
        return [self.rows[k] for k in before]

    def undo(self) -> list[Row]:
        """Reverse the last change; returns the rows it touched (none when there is nothing to undo)."""
        if not self.history:
            return []
        before = self.history.pop()
        for k, v in before.items():
            self.rows[k].correction = v
        return [self.rows[k] for k in before]

    def add(self, preds: list[Prediction], corrections: dict[str, str] | None = None) -> list[Row]:
        corrections = corrections or {}
        added = []
        for p in preds:
            row = Row(f"r{len(self.rows)}", p, truth_from_path(p.path), corrections.get(p.path))
            self.rows[row.key] = row
            added.append(row)
        return added

    def by_path(self) -> dict[str, Row]:
        return {r.pred.path: r for r in self.rows.values()}

    def matches(self, row: Row) -> bool:
        from .openset import FLAGGED, flagged

        if self.class_filter == FLAGGED:  # key o: the unknown photos (open-set rejection, issue 16)
            if not flagged(row):
                return False
        elif self.class_filter and self.class_filter not in (row.label, row.top.name if row.top else None):
            return False
        if self.text_filter:
            hay = " ".join(filter(None, (row.pred.path, row.label, row.truth, row.pred.error))).lower()
            return all(word in hay for word in self.text_filter.lower().split())
        return True

    def _sort_key(self, row: Row):
        top = row.top
        if self.sort_by == "class":
            return (row.label or "\uffff", row.name)
        if self.sort_by == "score":
            return (top is None, -(top.score if top else 0.0))
        if self.sort_by == "origin":
            return (row.origin or "\uffff", row.label or "", row.name)
        return (row.name, row.pred.path)

    def visible(self) -> list[Row]:
        rows = [r for r in self.rows.values() if self.matches(r)]
        if self.sort_by:
            rows.sort(key=self._sort_key, reverse=self.reverse)
        elif self.reverse:
            rows.reverse()
        return rows

    @property
    def corrections(self) -> dict[str, str]:
        return {r.pred.path: r.correction for r in self.rows.values() if r.correction}

    def summary(self) -> str:
        rows = list(self.rows.values())
        known = [r for r in rows if r.truth and r.top]
        parts = [f"{len(rows)} photos"]
        if known:
            right = sum(r.top.name == r.truth for r in known)
            parts.append(f"top-1 {100 * right / len(known):.0f}% vs file names")
        if self.corrections:
            parts.append(f"{len(self.corrections)} corrected")
        return " · ".join(parts)


def export_records(rows: list[Row]) -> list[dict]:
    """output.records plus the browser's columns: ``correction`` and ``truth``."""
    from ..output import records

    out = records([r.pred for r in rows])
    for rec, row in zip(out, rows):
        rec["correction"] = row.correction
        rec["truth"] = row.truth
    return out


def export(rows: list[Row], path: Path) -> Path:
    """Write rows to ``path`` as CSV, JSON or JSONL (by suffix) in ``classify``'s schema + corrections."""
    from ..output import render

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    recs = export_records(rows)
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    elif fmt == "json":
        text = json.dumps(recs, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "csv":
        lines = render([r.pred for r in rows], "csv").splitlines()
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for i, line in enumerate(csv.reader(lines)):
            extra = ["correction", "truth"] if i == 0 else [rows[i - 1].correction or "", rows[i - 1].truth or ""]
            w.writerow(line + extra)
        text = buf.getvalue()
    else:
        raise ValueError(f"{path.name}: export to .csv, .jsonl or .json")
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


class RunStore:
    """A run folder: ``<stem>.corrections.json`` saved on every change, results saved as they arrive."""

    def __init__(self, folder: Path, stem: str = "results"):
        self.folder, self.stem = Path(folder), stem
        self._lines: dict[str, str] = {}  # photo path → its JSONL record, in arrival order

    @classmethod
    def fresh(cls) -> "RunStore":
        from ..locations import data_dir

        return cls(data_dir() / "runs" / time.strftime("%Y%m%d-%H%M%S"))

    @classmethod
    def beside(cls, results_file: Path) -> "RunStore":
        results_file = Path(results_file)
        return cls(results_file.parent, results_file.stem)

    @property
    def corrections_file(self) -> Path:
        return self.folder / f"{self.stem}.corrections.json"

    @property
    def results_file(self) -> Path:
        return self.folder / f"{self.stem}.jsonl"

    def load_corrections(self) -> dict[str, str]:
        try:
            data = json.loads(self.corrections_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.get("corrections", {}).items()} if isinstance(data, dict) else {}

    def save_corrections(self, corrections: dict[str, str]) -> None:
        data = {"format": "dkgzsl-corrections/1", "corrections": dict(sorted(corrections.items()))}
        atomic_write_bytes(self.corrections_file, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())

    def save_results(self, preds: list[Prediction]) -> None:
        """Record ``preds`` (new photos, or new scores for photos recorded before) and rewrite the results
        file atomically. Only ``preds`` are rendered, so saving after every chunk stays linear in the run."""
        from ..output import render

        for p, line in zip(preds, render(preds, "jsonl").splitlines(keepends=True)):
            self._lines[p.path] = line
        atomic_write_bytes(self.results_file, "".join(self._lines.values()).encode("utf-8"))
