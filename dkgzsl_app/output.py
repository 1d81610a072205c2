"""Writing predictions as a table, CSV, JSON or JSON Lines (one schema for all machine formats)."""
from __future__ import annotations

import csv
import io
import json


def records(preds) -> list[dict]:
    """One flat record per photo: path, top class, its origin and score, the top-k list, error."""
    out = []
    for p in preds:
        best = p.top[0] if p.top else None
        out.append({
            "path": p.path,
            "class": best.name if best else None,
            "origin": best.origin if best else None,
            "score": round(best.score, 6) if best else None,
            "probability": round(best.probability, 6) if best else None,
            "confidence": _round(best.confidence) if best else None,  # calibrated, in [0, 1] (issue 16)
            "top_k": [{"class": g.name, "origin": g.origin, "score": round(g.score, 6),
                       "probability": round(g.probability, 6), "confidence": _round(g.confidence)} for g in p.top],
            "error": p.error or None,
            "precision": getattr(p, "precision", "") or None,  # the backbone's (fp32 | bf16 | fp16); issue 17
            "model": getattr(p, "model", "") or None,  # which weights made it (issue 15): hf-hub:ORG/NAME or --model
            "model_commit": getattr(p, "model_commit", "") or None,  # its Hub commit; None for a local bundle
            "calibration": getattr(p, "calibration", None),  # γ: score = probability − γ for seen classes
            "temperature": getattr(p, "temperature", None),  # T: confidence = softmax(score / T) over all classes
        })
        if getattr(p, "unknown", None) is not None:  # the bundle has an open-set threshold and rejection is on
            out[-1]["unknown"] = p.unknown  # looks like none of the classes; "class" is the best guess
            out[-1]["open_set_score"] = None if p.open_set_score is None else round(p.open_set_score, 6)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


CSV_COLUMNS = ("path", "class", "origin", "score", "probability", "top_k", "error", "confidence", "unknown")
STREAMED = ("csv", "jsonl")  # formats written row by row as a run goes (dkgzsl_app/stream.py)


def csv_row(r: dict) -> list:
    """A record as the CSV's cells (``CSV_COLUMNS``); top-k as ``class:score;…``."""
    top = ";".join(f"{t['class']}:{t['score']:.4f}" for t in r["top_k"])
    return [r["path"], r["class"] or "", r["origin"] or "", "" if r["score"] is None else r["score"],
            "" if r["probability"] is None else r["probability"], top, r["error"] or "",
            "" if r.get("confidence") is None else r["confidence"], "" if r.get("unknown") is None else r["unknown"]]


def header(fmt: str) -> str:
    """What a file in ``fmt`` starts with before any record: the CSV header line, "[" for JSON, else ""."""
    if fmt == "csv":
        return format_rows([], "csv", with_header=True)
    return "[" if fmt == "json" else ""


def footer(fmt: str, count: int) -> str:
    """What a file in ``fmt`` ends with after ``count`` records (JSON's closing bracket)."""
    if fmt == "json":
        return ("\n]\n" if count else "]\n")
    return ""


def format_rows(rows: list[dict], fmt: str, with_header: bool = False, first: bool = True) -> str:
    """The text of ``rows`` in ``fmt``, to be appended after earlier rows: header + rows + footer of all
    parts, concatenated, is exactly ``render`` of all of them (``first``: no record precedes these; JSON
    puts its separating comma before every later one)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if with_header:
            w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow(csv_row(r))
        return buf.getvalue()
    if fmt == "json":
        parts = []
        for r in rows:
            item = "\n".join("  " + line for line in json.dumps(r, indent=2, ensure_ascii=False).splitlines())
            parts.append(("\n" if first else ",\n") + item)
            first = False
        return "".join(parts)
    raise ValueError(f"unknown format {fmt!r}")


def render(preds, fmt: str) -> str:
    """All of ``preds`` in ``fmt`` (csv, json, jsonl) at once; ``stream.ResultWriter`` writes the same
    text row by row."""
    rows = records(preds)
    if fmt not in ("csv", "json", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}")
    return header(fmt) + format_rows(rows, fmt) + footer(fmt, len(rows))


def _common_folder(paths: list[str]) -> str:
    """The folder all ``paths`` share ("" when none or they are not file paths)."""
    import os

    try:
        base = os.path.commonpath([os.path.dirname(p) or "." for p in paths]) if paths else ""
    except ValueError:  # absolute and relative mixed, or different drives
        return ""
    return "" if base in ("", ".") else base


def print_table(preds, console) -> None:
    """A readable table: photo names relative to their common folder, no wrapping (long cells end in …)."""
    import os

    from rich.table import Table

    base = _common_folder([p.path for p in preds])
    t = Table(caption=f"{len(preds)} photo(s) in {base}" if base else None, caption_justify="left")
    free = max(30, console.width - 16 - 6 - 10)  # 16: borders and padding of 5 columns; origin, confidence
    longest = max((len(p.top[0].name) for p in preds if p.top), default=8)
    cls_w = max(8, min(longest, free // 2))  # the predicted class matters most: whole where it fits
    rest = free - cls_w
    t.add_column("photo", no_wrap=True, overflow="ellipsis", max_width=int(rest * 0.6))
    t.add_column("class", no_wrap=True, overflow="ellipsis", max_width=cls_w)
    t.add_column("origin", no_wrap=True, min_width=6)
    t.add_column("confidence", justify="right", no_wrap=True, min_width=10)
    t.add_column("runner-up", no_wrap=True, overflow="ellipsis", max_width=rest - int(rest * 0.6))
    for p in preds:
        name = os.path.relpath(p.path, base) if base else p.path
        if p.error:
            t.add_row(name, f"[red]error: {p.error}[/red]", "", "", "")
            continue
        nxt = f"{p.top[1].name} {_shown(p.top[1]):.2f}" if len(p.top) > 1 else ""
        cls = f"[yellow]unknown[/yellow] [dim]({p.top[0].name}?)[/dim]" if getattr(p, "unknown", None) else p.top[0].name
        t.add_row(name, cls, p.top[0].origin, f"{_shown(p.top[0]):.3f}", nxt)
    flagged = sum(1 for p in preds if getattr(p, "unknown", None))
    if flagged:
        t.caption = (t.caption + "; " if t.caption else "") + f"{flagged} unknown (like none of the classes)"
    console.print(t)


def _shown(guess) -> float:
    """The number a person reads: the confidence; the calibrated score for results written before it."""
    return guess.score if guess.confidence is None else guess.confidence


def read_predictions(path) -> tuple[list, dict[str, str]]:
    """Read back a file ``render`` wrote (CSV, JSON or JSON Lines, by content) as Predictions, plus the
    ``correction`` column the TUI's export adds (path → class). Raises DataError naming the file."""
    from pathlib import Path

    from .classify import Guess, Prediction
    from .models.errors import DataError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read results ({e}).") from None
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            rows = json.loads(stripped)
        elif stripped.startswith("{"):
            rows = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        else:
            rows = list(csv.DictReader(io.StringIO(text)))
            if rows and "path" not in rows[0]:
                raise ValueError("no 'path' column")
            for r in rows:
                r["top_k"] = _parse_csv_top(r)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: not a results file written by dkgzsl classify ({e}). Expected JSONL, JSON "
                        "or CSV with a 'path' column.") from None
    preds, corrections = [], {}
    for r in rows:
        if not isinstance(r, dict) or "path" not in r:
            raise DataError(f"{path}: every record needs a 'path'.")
        top = [Guess(t["class"], t.get("origin") or "", float(t["score"]), float(t.get("probability") or 0.0),
                     None if t.get("confidence") in (None, "") else float(t["confidence"]))
               for t in r.get("top_k") or []]
        preds.append(Prediction(str(r["path"]), top, r.get("error") or "", str(r.get("precision") or "")))
        flag = r.get("unknown")
        if flag not in (None, ""):
            preds[-1].unknown = flag in (True, "True", "true", "1")
        if r.get("correction"):
            corrections[str(r["path"])] = str(r["correction"])
    return preds, corrections


def _parse_csv_top(r: dict) -> list[dict]:
    """CSV keeps top-k as ``class:score;…``; the first entry's origin and probability have own columns."""
    out = []
    for i, item in enumerate(filter(None, (r.get("top_k") or "").split(";"))):
        name, _, score = item.rpartition(":")
        entry = {"class": name, "score": float(score), "origin": "", "probability": 0.0}
        if i == 0:
            entry["origin"] = r.get("origin") or ""
            entry["probability"] = float(r.get("probability") or 0.0)
            entry["score"] = float(r.get("score") or score)
            entry["confidence"] = r.get("confidence")
        out.append(entry)
    return out
