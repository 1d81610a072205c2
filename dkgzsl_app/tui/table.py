"""The results table: one row per photo, keyed by the row's key, drawn from a ResultSet's view."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from .results import Row

ORIGIN_STYLE = {"seen": "green", "unseen": "magenta", "user": "cyan"}
COLUMNS = ("photo", "class", "origin", "score", "truth")
FIXED = {"origin": 6, "score": 6}
SHARE = {"photo": 0.36, "class": 0.32, "truth": 0.32}  # of the width left after the fixed columns


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` with an ellipsis in the middle (file names differ at both ends)."""
    if width <= 0 or len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def cells(row: Row, widths: dict[str, int]) -> list:
    """The cells of one row; a corrected row shows its new class (✎), a confirmed one a ✓."""
    photo = fit(row.name, widths["photo"])
    if row.pred.error:
        return [photo, Text(fit("error: " + row.pred.error, widths["class"]), style="red"), "", "",
                fit(row.truth or "", widths["truth"])]
    top = row.top
    score = Text(f"{top.score:6.3f}", style="yellow" if row.low_confidence else "")
    truth = Text(fit(row.truth or "", widths["truth"]), style="dim" if row.truth == row.label else "bold red")
    if row.correction and row.correction != top.name:
        cls = Text(fit("✎ " + row.correction, widths["class"]), style="bold cyan")
    elif row.correction:
        cls = Text(fit("✓ " + top.name, widths["class"]), style="green")
    else:
        cls = Text(fit(top.name, widths["class"]))
    origin = row.origin  # a corrected row shows its new class's origin
    return [photo, cls, Text(origin, style=ORIGIN_STYLE.get(origin, "")), score, truth]


class ResultsTable(DataTable):
    """A DataTable of Rows. The app owns the ResultSet; this widget only draws what it is given."""

    DEFAULT_CSS = """
    ResultsTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.widths = self._widths(80)
        self._shown: list[Row] | None = None

    def on_mount(self) -> None:
        self.widths = self._widths(self.size.width)
        self._add_columns()

    def _widths(self, total: int) -> dict[str, int]:
        # each column has one cell of padding either side; 2 for the scrollbar
        free = max(30, total - 2 * len(COLUMNS) - sum(FIXED.values()) - 2)
        widths = {k: max(8, int(free * share)) for k, share in SHARE.items()}
        return {**widths, **FIXED}

    def _add_columns(self) -> None:
        for key in COLUMNS:
            self.add_column(key, width=self.widths[key], key=key)

    def on_resize(self) -> None:
        widths = self._widths(self.size.width)
        if widths != self.widths and self._shown is not None:
            self.widths = widths
            self.clear(columns=True)
            self._add_columns()
            self.show(self._shown)

    def show(self, rows: list[Row]) -> None:
        """Replace the contents with ``rows`` in this order; the cursor stays on the same photo if shown."""
        keep = self.current_key()
        self._shown = list(rows)
        self.clear()
        for row in rows:
            self.add_row(*cells(row, self.widths), key=row.key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), scroll=True)

    def append(self, rows: list[Row]) -> None:
        self._shown = (self._shown or []) + list(rows)
        for row in rows:
            self.add_row(*cells(row, self.widths), key=row.key)

    def redraw(self, row: Row) -> None:
        if row.key not in self.rows:
            return
        for col, value in zip(COLUMNS, cells(row, self.widths)):
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
