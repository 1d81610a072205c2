"""Class galleries: the photos of one class as a grid of half-block thumbnails with their confidence.

One widget draws the whole grid through Textual's line API (a page of 24 tiles is ~200 short lines of
segments, no widget per tile). Thumbnails are decoded in a thread worker (JPEG draft mode) and kept as
ready-made segments, so paging back, re-sorting and redrawing after a correction decode nothing.
Selection and corrections are the browser's own (``ResultSet.selected``, ``BrowseApp.apply_corrections``):
what is selected here is selected in the table, and ``u`` undoes a change made in either.
"""
from __future__ import annotations

import os

from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from .results import UNKNOWN, Row

IMG_W, IMG_H = 16, 8  # thumbnail cells: 16 × 16 pixels as half blocks (▀: upper pixel fg, lower pixel bg)
TILE_W, TILE_H = IMG_W + 2, IMG_H + 2  # + the name and confidence lines; + a gap column
TILE_BATCH = 6  # thumbnails handed to the UI at a time
DECODE_THREADS = min(4, os.cpu_count() or 1)
TILE_CACHE = 600  # thumbnails kept (~15 kB each)
_BLANK = Style(bgcolor="grey15")


def halfblocks(im, width: int = IMG_W, height: int = IMG_H) -> list[list[Segment]]:
    """``im`` (PIL) fitted into ``width`` × ``2·height`` pixels, centred, as ``height`` lines of ▀ cells."""
    from PIL import Image

    im = im.convert("RGB")
    im.thumbnail((width, 2 * height))
    canvas = Image.new("RGB", (width, 2 * height), (38, 38, 38))
    canvas.paste(im, ((width - im.width) // 2, (2 * height - im.height) // 2))
    data = canvas.tobytes()  # RGB, row after row
    colour = [_rgb(data[i] & 0xF8, data[i + 1] & 0xF8, data[i + 2] & 0xF8) for i in range(0, len(data), 3)]
    return [[Segment("▀", Style.from_color(colour[2 * y * width + x], colour[(2 * y + 1) * width + x]))
             for x in range(width)] for y in range(height)]


_COLOURS: dict = {}  # rich Colors by RGB (5 bits a channel): making one costs ~20 µs, finding one ~0.1 µs


def _rgb(r: int, g: int, b: int):
    c = _COLOURS.get((r, g, b))
    if c is None:
        from rich.color import Color

        c = _COLOURS[(r, g, b)] = Color.from_rgb(r, g, b)
    return c


def load_tile(path: str) -> list[list[Segment]]:
    """The thumbnail segments of the photo at ``path`` (decoded small: JPEG draft mode)."""
    from .detail import thumbnail

    return halfblocks(thumbnail(path, size=2 * 2 * IMG_H))


def _tile_or_none(path: str):
    try:
        return load_tile(path)
    except Exception:  # unreadable now (moved, deleted, broken): the tile says so
        return None


class GalleryGrid(Widget):
    """A page of tiles: thumbnail, name (● when selected), confidence; the cursor's tile in reverse."""

    DEFAULT_CSS = "GalleryGrid { height: 1fr; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: list[Row] = []  # this page's photos
        self.cursor = 0  # index into ``rows``
        self.selected: set[str] = set()
        self.tiles: dict[str, list[list[Segment]] | None] = {}  # path → segments (None: could not be read)
        self.show_images = True  # False: browse --no-images (no thumbnails either)

    @property
    def columns(self) -> int:
        return max(1, self.size.width // TILE_W)

    @property
    def page_size(self) -> int:
        return self.columns * max(1, self.size.height // TILE_H)

    def render_line(self, y: int) -> Strip:
        tile_row, line = divmod(y, TILE_H)
        cols = self.columns
        segs: list[Segment] = []
        tiles = range(tile_row * cols, min(len(self.rows), (tile_row + 1) * cols))
        for i in tiles:
            segs.extend(self._tile_line(i, line))
            segs.append(Segment("  "))
        # every tile line is IMG_W cells (_fit makes it so): telling Strip saves measuring ~100 segments a line
        return Strip(segs, len(tiles) * TILE_W).adjust_cell_length(self.size.width)

    def _tile_line(self, i: int, line: int) -> list[Segment]:
        row = self.rows[i]
        if line < IMG_H:
            tile = self.tiles.get(row.pred.path)
            if tile:
                return tile[line]
            if not self.show_images:
                text = "no picture"
            elif row.pred.path in self.tiles or row.pred.error:
                text = "unreadable"
            else:
                text = "…"  # decoding
            text = text if line == IMG_H // 2 else ""
            return [Segment(text.center(IMG_W), _BLANK)]
        here = Style(reverse=True) if i == self.cursor else Style()
        if line == IMG_H:
            mark = "● " if row.key in self.selected else ""
            name = _fit(mark + row.name, IMG_W)
            return [Segment(name, here + Style(bold=True, color="yellow" if mark else None))]
        return [Segment(_fit(confidence(row), IMG_W), here + Style(color=_confidence_colour(row)))]

    def on_click(self, event: events.Click) -> None:
        col, tile_row = event.x // TILE_W, event.y // TILE_H
        i = tile_row * self.columns + col
        if col < self.columns and 0 <= i < len(self.rows):
            self.cursor = i
            self.refresh()
            self.post_message(GalleryGrid.Moved())

    class Moved(events.Message):
        """The cursor was moved with the mouse."""


def score(row: Row) -> float:
    """The top class's calibrated confidence (issue 16), or its probability in results written before it."""
    return (getattr(row.top, "confidence", None) or row.top.probability) if row.top else -1.0


def confidence(row: Row) -> str:
    """``0.83``, and what a person said: ``✓`` reviewed, ``✎ class`` corrected."""
    if row.pred.error or row.top is None:
        return "error"
    text = f"{score(row):.2f}"
    if row.correction == row.top.name:
        return text + " ✓"
    if row.correction:
        return f"{text} ✎ {'unknown' if row.correction == UNKNOWN else row.correction}"
    if getattr(row.pred, "unknown", None):  # open-set rejection (issue 16): like none of the classes
        return text + " unknown?"
    return text


def _confidence_colour(row: Row) -> str | None:
    if row.pred.error or row.top is None:
        return "red"
    if row.correction:
        return "cyan" if row.correction != row.top.name else "green"
    return "yellow" if row.low_confidence else None


def _fit(text: str, width: int) -> str:
    """``text`` in exactly ``width`` cells (wide characters counted as two), cut with an ellipsis."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


class Gallery(Screen):
    """The photos whose class (corrections applied) is ``class_name``, a page at a time."""

    DEFAULT_CSS = """
    Gallery #gallery-title { height: 1; padding: 0 1; text-style: bold; background: $primary-darken-2; }
    Gallery #gallery-status { height: 1; padding: 0 1; }
    Gallery GalleryGrid { padding: 1 1 0 1; }
    """
    BINDINGS = [  # the footer shows the bulk-correction keys first: they are what a gallery is for
        Binding("space", "toggle_select", "select"),
        Binding("asterisk", "select_all", "all"),
        Binding("x", "correct", "class"),
        Binding("n", "mark_unknown", "unknown"),
        Binding("y", "accept", "ok"),
        Binding("u", "undo", "undo"),
        Binding("right_square_bracket,tab", "next_class(1)", "next", key_display="]"),
        Binding("o", "order", "order"),
        Binding("escape", "back", "back", key_display="esc"),
        Binding("left_square_bracket,shift+tab", "next_class(-1)", "previous", show=False),
        Binding("right,l", "move(1)", "→", show=False),
        Binding("left,h", "move(-1)", "←", show=False),
        Binding("down,j", "move_rows(1)", "↓", show=False),
        Binding("up,k", "move_rows(-1)", "↑", show=False),
        Binding("pagedown", "page(1)", "page", show=False),
        Binding("pageup", "page(-1)", "page back", show=False),
        Binding("g", "first", "first", show=False),
        Binding("G", "last", "last", show=False),
        Binding("shift+right,shift+down", "extend_select(1)", "", show=False),
        Binding("shift+left,shift+up", "extend_select(-1)", "", show=False),
        Binding("delete", "forget", "forget", show=False),
        Binding("enter", "open", "table", show=False),
        Binding("v,q", "close", "close", show=False),
    ]

    def __init__(self, class_name: str, low_first: bool = False, start: str | None = None):
        super().__init__()
        self.class_name, self.low_first = class_name, low_first
        self.photos: list[Row] = []
        self.first = 0  # index in ``photos`` of the page's first tile
        self._start = start  # key of the photo to open at
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Static(id="gallery-title")
        yield GalleryGrid(id="grid")
        yield Static(id="gallery-status")
        yield Footer(compact=True)

    @property
    def grid(self) -> GalleryGrid:
        return self.query_one(GalleryGrid)

    def on_mount(self) -> None:
        self.grid.selected = self.app.results.selected  # one selection for the table and the galleries
        self.grid.show_images = self.app.show_images
        self._ready = True
        self.refresh_view(keep=self._start)

    def on_resize(self) -> None:
        self.refresh_view()

    # ------------------------------------------------------------------------------------ the view
    def class_names(self) -> list[str]:
        return sorted({r.label for r in self.app.results.rows.values() if r.label} |
                      ({"error"} if any(r.pred.error for r in self.app.results.rows.values()) else set()))

    def members(self, name: str) -> list[Row]:
        rows = [r for r in self.app.results.rows.values() if (r.label or "error") == name]
        if self.low_first:  # lowest confidence first; errors before everything
            return sorted(rows, key=lambda r: (score(r), r.name))
        return sorted(rows, key=lambda r: (r.name, r.pred.path))

    def current(self) -> Row | None:
        g = self.grid
        return g.rows[g.cursor] if 0 <= g.cursor < len(g.rows) else None

    def refresh_view(self, keep: str | None = None) -> None:
        """Recompute the class's photos (a correction moves photos out of it) and draw the page that holds
        ``keep`` (default: the photo under the cursor, else the same position)."""
        if not self._ready:
            return
        g = self.grid
        cur = self.current()
        keep = keep or (cur.key if cur else None)
        pos = self.first + g.cursor
        self.photos = self.members(self.class_name)
        keys = [r.key for r in self.photos]
        if keep in keys:
            pos = keys.index(keep)
        self.show_at(min(pos, len(self.photos) - 1))

    def show_at(self, index: int) -> None:
        g = self.grid
        size = g.page_size
        index = max(0, index)
        self.first = (index // size) * size
        g.rows = self.photos[self.first:self.first + size]
        g.cursor = min(index - self.first, max(0, len(g.rows) - 1))
        g.refresh()
        self.update_title()
        if self.app.show_images:
            ahead = self.photos[self.first + size:self.first + 2 * size]  # the next page, while this one is read
            self.load_thumbnails([r.pred.path for r in g.rows + ahead if r.pred.path not in g.tiles and not r.pred.error])

    def update_title(self) -> None:
        g, n = self.grid, len(self.photos)
        pages = max(1, -(-n // g.page_size))
        name = "unknown" if self.class_name == UNKNOWN else self.class_name
        title = f"{name} · {n} photo{'s' if n != 1 else ''} · page {self.first // g.page_size + 1}/{pages}"
        title += " · low confidence first" if self.low_first else " · by file name"
        self.query_one("#gallery-title", Static).update(title)
        status = []
        sel = self.app.results.selected
        if sel:
            status.append(f"{len(sel)} selected")
        cur = self.current()
        if cur is not None:
            status.append(f"{cur.name}: {cur.top.name if cur.top else 'error'} {confidence(cur)}")
        if not n:
            status.append("no photos left in this class: ] next class, escape back")
        self.query_one("#gallery-status", Static).update(" · ".join(status))

    @work(thread=True, exclusive=True, group="gallery", exit_on_error=False)
    def load_thumbnails(self, paths: list[str]) -> None:
        """Decode ``paths`` (this page, then the next) on a few threads (JPEG decoding releases the GIL),
        handing them over a batch at a time: the page fills in as it decodes; paging on cancels the rest."""
        from concurrent.futures import ThreadPoolExecutor

        worker = get_current_worker()
        with ThreadPoolExecutor(DECODE_THREADS) as pool:
            for start in range(0, len(paths), TILE_BATCH):
                if worker.is_cancelled:
                    return
                batch = paths[start:start + TILE_BATCH]
                tiles = dict(zip(batch, pool.map(_tile_or_none, batch)))
                if not worker.is_cancelled:
                    self.app.call_from_thread(self.thumbnails_ready, tiles)

    def thumbnails_ready(self, tiles: dict) -> None:
        g = self.grid
        g.tiles.update(tiles)
        if len(g.tiles) > TILE_CACHE:  # forget the oldest, never this page's
            keep = {r.pred.path for r in g.rows}
            for path in [p for p in g.tiles if p not in keep][: len(g.tiles) - TILE_CACHE]:
                del g.tiles[path]
        if any(r.pred.path in tiles for r in g.rows):
            g.refresh()

    # ------------------------------------------------------------------------------------ moving
    def on_gallery_grid_moved(self, event: GalleryGrid.Moved) -> None:
        self.update_title()

    def move_to(self, index: int) -> None:
        if not self.photos:
            return
        index = max(0, min(index, len(self.photos) - 1))
        if self.first <= index < self.first + self.grid.page_size:
            self.grid.cursor = index - self.first
            self.grid.refresh()
            self.update_title()
        else:
            self.show_at(index)

    def action_move(self, step: int) -> None:
        self.move_to(self.first + self.grid.cursor + step)

    def action_move_rows(self, step: int) -> None:
        self.move_to(self.first + self.grid.cursor + step * self.grid.columns)

    def action_page(self, step: int) -> None:
        self.move_to(self.first + step * self.grid.page_size)

    def action_first(self) -> None:
        self.move_to(0)

    def action_last(self) -> None:
        self.move_to(len(self.photos) - 1)

    def action_next_class(self, step: int) -> None:
        names = sorted(set(self.class_names()) | {self.class_name})  # this class may have just emptied
        self.class_name = names[(names.index(self.class_name) + step) % len(names)]
        self.first, self.grid.cursor = 0, 0
        self.photos = self.members(self.class_name)
        self.show_at(0)

    def action_order(self) -> None:
        self.low_first = not self.low_first
        self.refresh_view()

    # ---------------------------------------------------------------------------- selection, fixes
    def _redraw(self) -> None:
        self.grid.refresh()
        self.update_title()

    def action_toggle_select(self) -> None:
        row = self.current()
        if row is not None:
            self.app.results.selected.symmetric_difference_update({row.key})
            self.action_move(1)
            self._redraw()

    def action_extend_select(self, step: int) -> None:
        row = self.current()
        if row is None:
            return
        self.app.results.selected.add(row.key)
        self.action_move(step)
        self.app.results.selected.add(self.current().key)
        self._redraw()

    def action_select_all(self) -> None:
        """Every photo of this class (all pages); again: none of them."""
        keys = {r.key for r in self.photos}
        sel = self.app.results.selected
        if keys and keys <= sel:
            sel.difference_update(keys)
        else:
            sel.update(keys)
        self._redraw()

    def targets(self) -> list[Row]:
        sel = self.app.results.selected
        if sel:
            return [self.app.results.rows[k] for k in sel if k in self.app.results.rows]
        row = self.current()
        return [row] if row is not None else []

    def action_correct(self) -> None:
        self.app.ask_correction(self.targets())

    def action_mark_unknown(self) -> None:
        self.app.apply_corrections({r.key: UNKNOWN for r in self.targets()})

    def action_accept(self) -> None:
        self.app.apply_corrections({r.key: r.correction or r.top.name for r in self.targets() if r.top})

    def action_forget(self) -> None:
        self.app.apply_corrections({r.key: None for r in self.targets()})

    def action_undo(self) -> None:
        self.app.action_undo()

    def action_back(self) -> None:
        """escape: the selection first, then the gallery."""
        if self.app.results.selected:
            self.app.results.selected.clear()
            self._redraw()
        else:
            self.action_close()

    def action_open(self) -> None:
        """enter: back to the table, on this photo."""
        row = self.current()
        self.dismiss(row.key if row else None)

    def action_close(self) -> None:
        self.dismiss(None)
