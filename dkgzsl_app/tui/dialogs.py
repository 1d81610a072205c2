"""Small modal screens: pick a class (type to narrow the list), ask for a line of text, help."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 60; max-width: 95%; height: auto; max-height: 90%; border: thick $primary;
    background: $surface; padding: 0 1; }}
{name} Label {{ width: 100%; text-style: bold; }}
{name} OptionList {{ height: auto; max-height: 14; }}
"""


class ClassPicker(ModalScreen[str | None]):
    """Choose one class; typing narrows the list. Dismisses with the name, or None on escape."""

    DEFAULT_CSS = MODAL_CSS.format(name="ClassPicker")
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel"), Binding("down", "focus_list", show=False)]

    def __init__(self, title: str, classes: list[tuple[str, str]], current: str | None = None):
        """``classes``: (name, origin) pairs in display order."""
        super().__init__()
        self.title_text, self.choices, self.current = title, classes, current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(placeholder="type to filter, enter to pick", id="query")
            yield OptionList(id="choices")

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#query", Input).focus()

    def _fill(self, query: str) -> None:
        ol = self.query_one("#choices", OptionList)
        ol.clear_options()
        words = query.lower().split()
        for name, origin in self.choices:
            if all(w in name.lower() for w in words):
                label = Text(name)
                label.append(f"  {origin}", style="dim")
                if name == self.current:
                    label.append("  (current)", style="italic")
                ol.add_option(Option(label, id=name))
        if ol.option_count:
            ol.highlighted = 0

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        ol = self.query_one("#choices", OptionList)
        if ol.highlighted is not None and ol.option_count:
            self.dismiss(ol.get_option_at_index(ol.highlighted).id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_focus_list(self) -> None:
        self.query_one("#choices", OptionList).focus()


class Prompt(ModalScreen[str | None]):
    """Ask for one line of text (a filter, a file name); escape cancels."""

    DEFAULT_CSS = MODAL_CSS.format(name="Prompt")
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = ""):
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(self.value, placeholder=self.placeholder, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


HELP_KEYS = [  # (keys, what they do): every binding of the browser, including those the footer hides
    ("↑ ↓ j k g G", "move through the photos (g G: first, last); the pane shows the photo"),
    ("s  r", "sort: file → class → score → seen/unseen; reverse the order"),
    ("/  c", "find: rows whose file, class or truth has the text; one class only"),
    ("o", "only the unknown photos: flagged by the model, or marked (again: all)"),
    ("l", "jump to the next low-confidence prediction"),
    ("space", "select this photo (●); corrections then act on every selected one"),
    ("shift+up shift+down", "select a range of photos"),
    ("*  escape", "select all in view (again: none); select none, then clear filters"),
    ("x  enter", "correct: pick the right class (the same class confirms it)"),
    ("n  y", "mark unknown (none of the classes); accept as reviewed (✓)"),
    ("u  delete", "undo the last correction, single or bulk; forget corrections"),
    ("v", "class gallery: thumbnails of this photo's class (] [ other classes)"),
    ("f", "file the photos into one folder per class (as dkgzsl sort does)"),
    ("e", "export results and corrections (.csv, .jsonl, .json)"),
    ("a", "class editor: change attributes, save them as a new class"),
    ("ctrl+p", "command palette: every action by name"),
    ("?  q", "this help (escape or ? closes it); quit"),
]

HELP_COLUMNS = [  # (column, what it means)
    ("origin", "seen classes had training photos, unseen ones only an attribute description, user ones "
               "were added later"),
    ("score", "the confidence (calibrated, sums to 1 over the classes); yellow below 0.5 probability"),
    ("truth", "the class in a labelled file name (<class>__0001.jpg), red when it differs"),
]


def help_text(width: int = 80) -> Group:
    """The help as one compact block (no rules between rows: it fits a 100×30 terminal whole)."""
    keys = Table.grid(padding=(0, 2))
    keys.add_column(style="bold cyan", no_wrap=True)
    keys.add_column(ratio=1)
    for k, what in HELP_KEYS:
        keys.add_row(k, what)
    cols = Table.grid(padding=(0, 2))
    cols.add_column(style="bold", no_wrap=True)
    cols.add_column(ratio=1)
    for c, what in HELP_COLUMNS:
        cols.add_row(c, what)
    return Group(Text("dkgzsl browse: keys", style="bold"), keys, Text(""),
                 Text("Each row is a photo and the class the model gives it. Columns:", style="bold"), cols,
                 Text(""), Text("Corrections are saved to the run folder on every change; nothing is lost "
                                "when you quit.", style="dim"))


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1; }
    HelpScreen Static { width: 100%; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():  # scrolls (arrows, PgDn) where the terminal is smaller still
            yield Static(help_text(), id="help")
