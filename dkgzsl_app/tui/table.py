"""The results table: one row per photo, keyed by the row's key, drawn from a ResultSet's view."""
from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from .openset import flagged_text, shown_score
from .results import Row

ORIGIN_STYLE = {"seen": "green", "unseen": "magenta", "user": "cyan"}
COLUMNS = ("sel", "photo", "class", "origin", "score", "truth")
FIXED = {"sel": 1, "origin": 6, "score": 6}
MIN_WIDTH = 8  # the photo and truth columns never get narrower than this


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` with an ellipsis in the middle (file names differ at both ends)."""
    if width <= 0 or len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def class_text(row: Row) -> str:
    """What the class column says (before fitting): the prediction, ``✎ correction`` or ``✓ prediction``."""
    if row.pred.error or row.top is None:
        return "error: " + row.pred.error
    if row.correction and row.correction != row.top.name:
        return "✎ " + row.correction
    return flagged_text(row) or ("✓ " if row.correction else "") + row.top.name


def cells(row: Row, widths: dict[str, int], selected: bool = False) -> list:
    """The cells of one row; a corrected row shows its new class (✎), a confirmed one a ✓; a selected row
    a ● in the first column."""
    sel = Text("●", style="bold yellow") if selected else ""
    photo = fit(row.name, widths["photo"])
    if row.pred.error:
        return [sel, photo, Text(fit("error: " + row.pred.error, widths["class"]), style="red"), "", "",
                fit(row.truth or "", widths["truth"])]
    top = row.top
    score = Text(f"{shown_score(top):6.3f}", style="yellow" if row.low_confidence else "")
    truth = Text(fit(row.truth or "", widths["truth"]), style="dim" if row.truth == row.label else "bold red")
    style = "bold cyan" if row.correction and row.correction != top.name else "green" if row.correction else ""
    cls = Text(fit(class_text(row), widths["class"]), style=style)
    origin = row.origin  # a corrected row shows its new class's origin
    return [sel, photo, cls, Text(origin, style=ORIGIN_STYLE.get(origin, "")), score, truth]


class ResultsTable(DataTable):
    """A DataTable of Rows. The app owns the ResultSet; this widget only draws what it is given.

    The class column is as wide as the longest class shown (whole wherever the terminal allows); the photo
    and truth columns share what is left."""

    DEFAULT_CSS = """
    ResultsTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
        Binding("g", "scroll_top", "first", show=False),
        Binding("G", "scroll_bottom", "last", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.selected: set[str] = set()  # keys of the selected rows (the app's ResultSet owns the set)
        self._longest = 0  # the longest class text shown
        self.widths = self._widths(80)
        self._shown: list[Row] | None = None

    def on_mount(self) -> None:
        self.widths = self._widths(self.size.width)
        self._add_columns()

    def _widths(self, total: int) -> dict[str, int]:
        # each column has one cell of padding either side; 2 for the scrollbar
        free = max(3 * MIN_WIDTH, total - 2 * len(COLUMNS) - sum(FIXED.values()) - 2)
        cls = max(MIN_WIDTH, min(self._longest, free - 2 * MIN_WIDTH))
        rest = free - cls
        photo = max(MIN_WIDTH, int(rest * 0.55))
        return {"photo": photo, "class": cls, "truth": max(MIN_WIDTH, rest - photo), **FIXED}

    def _add_columns(self) -> None:
        for key in COLUMNS:
            self.add_column("" if key == "sel" else key, width=self.widths[key], key=key)

    def _relayout(self) -> None:
        widths = self._widths(self.size.width)
        if widths != self.widths and self._shown is not None:
            keep = self.current_key()  # before clearing: a key pressed while the layout settles stays pressed
            self.widths = widths
            self.clear(columns=True)
            self._add_columns()
            self.show(self._shown, keep)

    def on_resize(self) -> None:
        self._relayout()

    def _measure(self, rows: list[Row]) -> bool:
        """Grow the class column to the longest class in ``rows``; True when the columns must change."""
        self._longest = max([self._longest] + [len(class_text(r)) for r in rows if not r.pred.error])
        return self.is_mounted and self._widths(self.size.width) != self.widths

    def show(self, rows: list[Row], keep: str | None = None) -> None:
        """Replace the contents with ``rows`` in this order; the cursor stays on the same photo (or on
        ``keep``) if shown."""
        keep = keep or self.current_key()
        self._shown = list(rows)
        if self._measure(self._shown):
            self.widths = self._widths(self.size.width)
            self.clear(columns=True)
            self._add_columns()
        self.clear()
        for row in rows:
            self.add_row(*cells(row, self.widths, row.key in self.selected), key=row.key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), scroll=True)

    def append(self, rows: list[Row]) -> None:
        if self._measure(rows):
            self.show((self._shown or []) + list(rows))
            return
        self._shown = (self._shown or []) + list(rows)
        for row in rows:
            self.add_row(*cells(row, self.widths, row.key in self.selected), key=row.key)

    def redraw(self, row: Row) -> None:
        if row.key not in self.rows:
            return
        if self._measure([row]):
            self.show(self._shown or [])
            return
        for col, value in zip(COLUMNS, cells(row, self.widths, row.key in self.selected)):
            self.update_cell(row.key, col, value)

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # cursor out of range while the table is being refilled
            return None

    def keys_in_order(self) -> list[str]:
        return [self.coordinate_to_cell_key((i, 0)).row_key.value for i in range(self.row_count)]
