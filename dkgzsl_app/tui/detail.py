"""The detail pane for the selected photo: the picture, the top-k classes as bars, and why.

The picture is drawn by textual-image (Kitty graphics or Sixel where the terminal supports them,
coloured half-block cells otherwise). Decoding and shrinking happen in a thread worker, so a 20-megapixel
photo never stalls the UI; so does the explanation, which may need one backbone pass.
"""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.containers import Container, Vertical
from textual.widgets import Static

from .results import Row

BAR = 16


def bar(value: float, width: int = BAR, style: str = "") -> Text:
    """A horizontal bar for ``value`` in [0, 1] in eighth-cell steps."""
    value = min(max(value, 0.0), 1.0)
    eighths = round(value * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return Text(text.ljust(width, " "), style=style or "cyan")


def topk_table(row: Row, width: int = BAR) -> Table:
    t = Table.grid(padding=(0, 1), expand=True)
    t.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    t.add_column(no_wrap=True, width=width)
    t.add_column(justify="right", no_wrap=True)
    if row.pred.error:
        t.add_row(Text(row.pred.error, style="red"), "", "")
    for g in row.pred.top:
        mark = "✓ " if row.truth == g.name else ""
        style = {"seen": "green", "unseen": "magenta", "user": "cyan"}.get(g.origin, "white")
        t.add_row(Text(mark + g.name, style="bold" if g is row.top else ""), bar(g.probability, width, style),
                  f"{g.probability:.2f}")
    return t


def why_table(evidence: list, limit: int = 3, reason: str = "") -> Table | Text:
    """Largest agreements first (+), then largest disagreements (−): photo value vs class value."""
    if not evidence:
        return Text(reason or "no attribute evidence: the photo could not be read", style="dim")
    agree = [e for e in evidence if e.agreement > 0][:limit]
    disagree = [e for e in evidence if e.agreement <= 0][:limit]
    t = Table.grid(padding=(0, 1), expand=True)
    t.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_row(Text("attribute", style="dim"), Text("photo", style="dim"), Text("class", style="dim"))
    for e in agree + disagree:
        good = e.agreement > 0
        t.add_row(Text(("+ " if good else "− ") + e.attribute, style="green" if good else "red"),
                  f"{e.observed:.2f}", f"{e.expected:.2f}")
    return t


def make_image_widget(show_images: bool):
    """textual-image's best widget for this terminal, or a placeholder when pictures are off."""
    if show_images:
        from textual_image.widget import Image

        return Image(id="picture")
    return Static("(pictures off)", id="picture")


class DetailPane(Container):
    DEFAULT_CSS = """
    DetailPane { height: 1fr; border: round $primary-darken-2; padding: 0 1; }
    DetailPane #title { height: 1; text-style: bold; }
    DetailPane #body { layout: horizontal; height: 1fr; }
    DetailPane #picture-box { width: 18; height: 100%; }
    DetailPane #picture { width: auto; height: auto; max-width: 100%; max-height: 100%; }
    DetailPane #topk { width: 1fr; height: auto; padding-right: 1; }
    DetailPane #why { width: 1fr; height: auto; }
    """

    def __init__(self, show_images: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.show_images = show_images
        self.row: Row | None = None
        self.evidence: list = []  # what the "why" section shows for ``row``

    def compose(self):
        yield Static("no photo selected", id="title")
        with Container(id="body"):
            with Vertical(id="picture-box"):
                yield make_image_widget(self.show_images)
            yield Static(id="topk")
            yield Static(Text("why: select a photo", style="dim"), id="why")

    def show_row(self, row: Row | None) -> None:
        """Title and bars now (cheap); the picture and the explanation follow from workers."""
        self.row, self.evidence = row, []
        title = self.query_one("#title", Static)
        if row is None:
            title.update("no photo selected")
            self.query_one("#topk", Static).update("")
            self.query_one("#why", Static).update("")
            return
        t = Text(row.name, style="bold")
        if row.truth:
            t.append(f"  truth: {row.truth}", style="dim")
        if row.correction:
            t.append(f"  → {row.correction}", style="bold cyan")
            if row.origin:
                t.append(f" ({row.origin})", style="cyan")
        title.update(t)
        self.query_one("#topk", Static).update(topk_table(row, BAR if self.screen.has_class("-wide") else 8))
        if row.pred.error:  # nothing to explain, and no worker will: say why now
            why = Text("why: no explanation: ", style="dim")
            why.append(row.pred.error, style="red")
        else:
            why = Text("why: working…", style="dim")
        self.query_one("#why", Static).update(why)

    def set_picture(self, key: str, image) -> None:
        if self.row is None or self.row.key != key or not self.show_images:
            return
        self.query_one("#picture").image = image

    def set_why(self, key: str, class_name: str, evidence: list, reason: str = "") -> None:
        if self.row is None or self.row.key != key:
            return
        self.evidence = evidence
        head = Text("why ", style="bold")
        head.append(class_name, style="bold cyan")
        if evidence:  # which read-out gave the photo's values: the model's own (ARA) or the ridge on v
            from ..explain import SOURCES

            source = getattr(evidence[0], "source", "")
            head.append(f" · {SOURCES.get(source, source)}", style="dim")
        from rich.console import Group

        self.query_one("#why", Static).update(Group(head, why_table(evidence, reason=reason)))


def thumbnail(path: str, size: int = 160):
    """A small RGB copy of the photo for the terminal (JPEG draft mode: cheap even for huge photos). Small on
    purpose: textual-image walks the pixels in Python on the UI thread (a 384 px copy stalled it ~300 ms)."""
    from ..images import load_rgb

    im = load_rgb(path, draft=(size, size))
    im.thumbnail((size, size))
    return im
