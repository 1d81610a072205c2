"""Does the browser stay responsive while it classifies photos on the CPU?

Runs the real app headless (``App.run_test``; Textual still lays out and renders every frame, the driver
just discards the bytes), classifies N photos with a cold feature cache (the backbone really runs), and
measures on the UI thread:

* the longest gap between ticks of a 10 ms timer (how long the event loop was ever blocked), and
* key-press → redraw latency: a "down" key sent through the driver (as a terminal would) every 150 ms,
  timed until the first frame the compositor produces with the cursor moved.

    python benchmarks/tui_responsiveness.py /tmp/demo-test --limit 500 --workers 2 --threads 0
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


async def measure(paths: list[str], workers: int, threads: int, batch: int, chunk: int) -> dict:
    from textual import events

    from dkgzsl_app.tui import EngineOptions, create_app
    from dkgzsl_app.tui.results import RunStore

    opts = EngineOptions(device="cpu", workers=workers, threads=threads, batch_size=batch, chunk=chunk)
    app = create_app(paths=paths, options=opts, show_images=True, store=RunStore(Path(tempfile.mkdtemp())))
    ticks: list[float] = []
    keys: list[float] = []
    pending: dict = {}  # the key press being timed: {"t0": ..., "row": cursor row before it}
    async with app.run_test(size=(120, 40)) as pilot:
        real_display = app._display

        def display(screen, renderable):  # every frame the compositor produces (headless: not written out)
            real_display(screen, renderable)
            if renderable is not None and pending and app.table.cursor_row != pending["row"]:
                keys.append(time.perf_counter() - pending.pop("t0"))
                pending.clear()

        app._display = display
        loaded_at: list[float] = []

        def tick():
            ticks.append(time.perf_counter())
            if not loaded_at and app.engine.loaded:
                loaded_at.append(ticks[-1])

        app.set_interval(0.01, tick)
        t0 = time.perf_counter()
        first_row = None
        while app.classifying:
            if first_row is None and app.table.row_count:
                first_row = time.perf_counter() - t0
            if app.table.row_count > app.table.cursor_row + 1 and not pending:
                pending.update(t0=time.perf_counter(), row=app.table.cursor_row)
                app._driver.send_message(events.Key("down", None))  # as a terminal would, no waiting
            await asyncio.sleep(0.15)
        total = time.perf_counter() - t0
        rows = app.table.row_count
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    # stalls while the model loads (imports of torch/timm hold the GIL in long C calls) vs while classifying
    split = ticks.index(loaded_at[0]) if loaded_at else len(ticks)
    load_gaps, run_gaps = gaps[:split], gaps[split:]
    return {
        "photos": len(paths), "rows": rows, "workers": workers, "torch_threads": threads or "default",
        "batch_size": batch, "chunk": chunk, "seconds": round(total, 2),
        "photos_per_second": round(len(paths) / total, 1), "first_rows_after_s": round(first_row or 0, 2),
        "model_loaded_after_s": round(loaded_at[0] - ticks[0], 2) if loaded_at else None,
        "frame_gap_ms_while_loading_model": {"max": round(1000 * max(load_gaps or [0]), 1)},
        "frame_gap_ms_while_classifying": {"max": round(1000 * max(run_gaps or [0]), 1),
                                           "p99": round(1000 * sorted(run_gaps)[int(0.99 * len(run_gaps))], 1)},
        "frame_gap_ms": {"max": round(1000 * max(gaps), 1), "p99": round(1000 * sorted(gaps)[int(0.99 * len(gaps))], 1),
                         "median": round(1000 * statistics.median(gaps), 1), "ticks": len(gaps)},
        "key_latency_ms": {"max": round(1000 * max(keys), 1), "p95": round(1000 * sorted(keys)[int(0.95 * len(keys))], 1),
                           "median": round(1000 * statistics.median(keys), 1), "presses": len(keys)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tui_responsiveness.json")
    args = ap.parse_args()
    os.environ["DKGZSL_HOME"] = tempfile.mkdtemp(prefix="dkgzsl-bench-")  # cold feature cache
    paths = sorted(str(p) for p in args.folder.glob("*.jpg"))[: args.limit]
    result = asyncio.run(measure(paths, args.workers, args.threads, args.batch_size, args.chunk))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    print(json.dumps(result, indent=2))
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    runs.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
