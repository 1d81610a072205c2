"""How long does a class gallery take to show a page of 24 thumbnails? (issue 19; target ≤ 100 ms)

Runs the real browser headless (``App.run_test``: Textual lays out and renders every frame, the driver
discards the bytes) on a results file that puts every photo of FOLDER in one class, opens its gallery at a
size that holds 6 × 4 = 24 tiles, and pages through it. For each page it times, on the UI thread:

* cold: page key → the first frame drawn after all 24 thumbnails are decoded (thread worker, JPEG draft
  mode) and turned into half-block segments, with nothing cached (a jump, or the first page);
* prefetched: paging on after the gallery decoded the next page while this one was shown (the usual case);
* cached: paging back to a page seen before → its first frame;

and, outside the app, the parts: decoding one thumbnail (``load_tile``) and drawing one page's lines
(``GalleryGrid.render_line``).

    dkgzsl demo /tmp/gallery-photos --per-class 3 --seed 5
    python benchmarks/gallery_render.py /tmp/gallery-photos
    python benchmarks/gallery_render.py /tmp/gallery-photos --large 12   # also as 12-megapixel JPEGs
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

SIZE = (112, 44)  # 6 tiles of 18 cells across, 4 of 10 rows down (+ title, status, footer, padding)


def write_results(photos: list[Path], out: Path) -> Path:
    """Every photo predicted as one class, probabilities spread over [0.3, 0.99]."""
    lines = []
    for i, p in enumerate(photos):
        prob = 0.3 + 0.69 * ((i * 37) % 100) / 100
        top = [{"class": "all_photos", "origin": "seen", "score": prob - 0.1, "probability": prob}]
        lines.append(json.dumps({"path": str(p), "class": "all_photos", "origin": "seen", "score": prob - 0.1,
                                 "probability": prob, "top_k": top, "error": None}))
    out.write_text("\n".join(lines) + "\n")
    return out


def enlarge(photos: list[Path], megapixels: float, folder: Path) -> list[Path]:
    """Copies of ``photos`` upscaled to about ``megapixels`` (camera-sized JPEGs, quality 90)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in photos:
        im = Image.open(p).convert("RGB")
        scale = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
        big = im.resize((int(im.width * scale), int(im.height * scale)), Image.BILINEAR)
        dest = folder / p.name
        big.save(dest, quality=90)
        out.append(dest)
    return out


async def measure(results: Path, pages: int) -> dict:
    from dkgzsl_app.tui import EngineOptions, create_app
    from dkgzsl_app.tui.gallery import Gallery, GalleryGrid

    app = create_app(results, options=EngineOptions(model=None), show_images=True)
    out: dict = {"cold_ms": [], "prefetched_ms": [], "warm_ms": []}
    async with app.run_test(size=SIZE) as pilot:
        frames: list[float] = []
        real_display = app._display

        def display(screen, renderable):  # every frame the compositor produces (headless: not written out)
            real_display(screen, renderable)
            if renderable is not None:
                frames.append(time.perf_counter())

        app._display = display
        await pilot.pause(0.5)
        app.push_screen(Gallery("all_photos", low_first=False))
        await pilot.pause(0.2)
        gallery = app.screen
        grid = gallery.query_one(GalleryGrid)
        assert grid.page_size == 24, grid.page_size

        def page_ready() -> bool:
            return all(r.pred.path in grid.tiles for r in grid.rows)

        async def settle() -> None:  # decoding (this page and the next) finished, nothing pending
            await app.workers.wait_for_complete()
            await pilot.pause(0.2)

        async def timed(step: int) -> float:
            """page ``step`` → the first frame after every tile of the new page is ready"""
            await settle()
            frames.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            gallery.action_page(step)
            ready_at = None
            while True:
                if ready_at is None and page_ready():
                    ready_at = time.perf_counter()
                if ready_at is not None and frames and frames[-1] >= ready_at:
                    cpu_ms.append((time.process_time() - c0) * 1000)  # every thread of the process
                    return (frames[-1] - t0) * 1000
                await asyncio.sleep(0.0005)

        cpu_ms: list[float] = []
        n = min(pages, -(-len(gallery.photos) // 24) - 1)
        for i in range(n):  # cold: nothing cached (a jump, or the first look at a page)
            await settle()
            grid.tiles.clear()
            out["cold_ms"].append(await timed(1 if i % 2 == 0 else -1))
            out.setdefault("cold_process_cpu_ms", []).append(cpu_ms[-1])
        await settle()
        gallery.move_to(0)
        for _ in range(n):  # paging on: the next page was decoded while this one was shown
            out["prefetched_ms"].append(await timed(1))
            out.setdefault("prefetched_process_cpu_ms", []).append(cpu_ms[-1])
        for _ in range(n):  # paging back: cached
            out["warm_ms"].append(await timed(-1))
            out.setdefault("warm_process_cpu_ms", []).append(cpu_ms[-1])
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(20):
            for y in range(grid.size.height):
                grid.render_line(y)
        out["render_page_lines_ms"] = (time.perf_counter() - t0) / 20 * 1000
        out["render_page_lines_cpu_ms"] = (time.process_time() - c0) / 20 * 1000
    return {k: [round(x, 1) for x in v] if isinstance(v, list) else round(v, 2) for k, v in out.items()}


def decode_times(paths: list[Path]) -> tuple[list[float], list[float]]:
    """Wall and CPU ms to turn each photo into a tile (decode in draft mode, shrink, half blocks)."""
    from dkgzsl_app.tui.gallery import load_tile

    wall, cpu = [], []
    for p in paths:
        t0, c0 = time.perf_counter(), time.thread_time()
        load_tile(str(p))
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    return wall, cpu


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1), "n": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="photos (dkgzsl demo writes some)")
    ap.add_argument("--pages", type=int, default=5)
    ap.add_argument("--large", type=float, default=0, help="also measure copies of this many megapixels (0: not)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gallery_render.json")
    args = ap.parse_args()
    photos = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    sets = {"as written": photos}
    tmp = Path(tempfile.mkdtemp())
    if args.large:
        sets[f"{args.large:g} MP JPEG"] = enlarge(photos[: 24 * (args.pages + 1)], args.large, tmp / "large")
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_before": os.getloadavg()},
              "terminal": f"{SIZE[0]}x{SIZE[1]} (24 tiles of 16x8 cells)", "sets": {}}
    for name, paths in sets.items():
        from PIL import Image

        with Image.open(paths[0]) as im:
            dims = f"{im.width}x{im.height}"
        res = asyncio.run(measure(write_results(paths, tmp / f"results-{len(report['sets'])}.jsonl"), args.pages))
        wall, cpu = decode_times(paths[:48])
        entry = {"photos": len(paths), "pixels": dims, "cold_page_ms": summary(res["cold_ms"]),
                 "cold_page_process_cpu_ms": summary(res["cold_process_cpu_ms"]),
                 "page_turn_prefetched_process_cpu_ms": summary(res["prefetched_process_cpu_ms"]),
                 "page_turn_prefetched_ms": summary(res["prefetched_ms"]), "page_back_cached_ms": summary(res["warm_ms"]),
                 "one_tile_ms": summary(wall), "one_tile_cpu_ms": summary(cpu),
                 "render_page_lines_ms": res["render_page_lines_ms"],
                 "render_page_lines_cpu_ms": res["render_page_lines_cpu_ms"], "raw": res}
        report["sets"][name] = entry
        print(name, dims, json.dumps({k: v for k, v in entry.items() if k != "raw"}))
    report["machine"]["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
