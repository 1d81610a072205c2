"""Small modal screens: pick a class (type to narrow the list), ask for a line of text, help."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Markdown, OptionList
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


HELP = """\
# dkgzsl browse

Each row is a photo with the class the model gives it: **seen** classes had training photos, **unseen**
ones only an attribute description, **user** ones were added later. The score is the calibrated
probability (γ subtracted for seen classes); yellow scores are low-confidence (probability < 0.5).
**truth** is the class in a labelled file name (`<class>__0001.jpg`), red when it differs.

| key | action |
|---|---|
| ↑ ↓ PgUp PgDn | move through the photos; the pane shows the selected one |
| `s` / `r` | sort by file → class → score → seen/unseen; reverse the order |
| `/` | filter by text (file name, class, truth); empty to clear |
| `c` | show one class only (`escape` clears every filter) |
| `l` | jump to the next low-confidence prediction |
| `x` / `enter` | mark the prediction wrong and pick the right class (pick the same one to confirm it) |
| `u` | undo the correction of this photo |
| `e` | export results and corrections (.csv, .jsonl, .json) |
| `a` | class editor: change a class's attributes and save it as a new class |
| `ctrl+p` | command palette: every action by name |
| `?` | this help · `q` quit |

Corrections are saved to the run folder on every change; nothing is lost when you quit.
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 100%; height: 90%; border: thick $primary;
        background: $surface; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
