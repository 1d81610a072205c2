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
            "top_k": [{"class": g.name, "origin": g.origin, "score": round(g.score, 6),
                       "probability": round(g.probability, 6)} for g in p.top],
            "error": p.error or None,
        })
    return out


def render(preds, fmt: str) -> str:
    rows = records(preds)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "class", "origin", "score", "probability", "top_k", "error"])
        for r in rows:
            top = ";".join(f"{t['class']}:{t['score']:.4f}" for t in r["top_k"])
            w.writerow([r["path"], r["class"] or "", r["origin"] or "", "" if r["score"] is None else r["score"],
                        "" if r["probability"] is None else r["probability"], top, r["error"] or ""])
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}")


def print_table(preds, console) -> None:
    from rich.table import Table

    t = Table()
    for col, just in (("photo", "left"), ("class", "left"), ("origin", "left"), ("score", "right"), ("next", "left")):
        t.add_column(col, justify=just)
    for p in preds:
        if p.error:
            t.add_row(p.path, f"[red]error: {p.error}[/red]", "", "", "")
            continue
        nxt = ", ".join(f"{g.name} {g.score:.2f}" for g in p.top[1:3])
        t.add_row(p.path, p.top[0].name, p.top[0].origin, f"{p.top[0].score:.3f}", nxt)
    console.print(t)
