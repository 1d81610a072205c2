"""The class editor: a class's attribute vector as editable numbers, saved as a new user class.

Saving goes through the same code path as ``dkgzsl add-class`` (``classes.add_classes``), then the app
reloads the class list and re-scores every photo from cached features: the backbone does not run again.
"""
from __future__ import annotations

import math

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from .detail import bar
from .dialogs import ClassPicker


class AttributeRow(Horizontal):
    DEFAULT_CSS = """
    AttributeRow { height: 1; }
    AttributeRow Label { width: 28; }
    AttributeRow Input { width: 12; height: 1; border: none; padding: 0 1; }
    AttributeRow .bar { width: 1fr; padding-left: 1; }
    """

    def __init__(self, index: int, name: str, value: float, top: float):
        super().__init__(id=f"attr-{index}")
        self.attr, self.value, self.top = name, value, max(top, 1e-6)

    def compose(self) -> ComposeResult:
        yield Label(self.attr)
        yield Input(f"{self.value:g}", type="number", classes="value")
        yield Static(bar(self.value / self.top, 20), classes="bar")

    def on_input_changed(self, event: Input.Changed) -> None:
        try:
            v = float(event.value)
        except ValueError:
            return
        self.query_one(".bar", Static).update(bar(v / self.top, 20) if math.isfinite(v) else "")


class ClassEditor(Screen):
    """Edit a copy of class ``start``'s attributes; ctrl+s saves it as a new user class."""

    DEFAULT_CSS = """
    ClassEditor #head { height: auto; padding: 0 1; }
    ClassEditor #name-row { height: 3; padding: 0 1; }
    ClassEditor #name-row Label { width: 28; padding-top: 1; }
    ClassEditor #name { width: 40; }
    ClassEditor #attrs { height: 1fr; padding: 0 1; border: round $primary-darken-2; }
    ClassEditor #buttons { height: 3; padding: 0 1; }
    ClassEditor Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "save as new class"),
        Binding("ctrl+o", "pick", "start from…"),
        Binding("escape", "app.pop_screen", "back"),
    ]

    def __init__(self, engine, start: str):
        super().__init__()
        self.engine, self.start = engine, start

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="head")
        with Horizontal(id="name-row"):
            yield Label("new class name")
            yield Input(placeholder="e.g. orange_striped_circle", id="name")
        yield VerticalScroll(id="attrs")
        with Horizontal(id="buttons"):
            yield Button("Save as new class", variant="primary", id="save")
            yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.load_class(self.start)

    def load_class(self, name: str) -> None:
        self.start = name
        vec = self.engine.class_vector(name)
        names = self.engine.explainer.attribute_names
        top = float(abs(self.engine.classifier.bundle.model.class_attributes).max())
        head = Text("Attributes of ", style="dim")
        head.append(name, style="bold cyan")
        head.append(f" ({self.engine.origin_of(name)}). Change values, name the class, ctrl+s saves it as a new "
                    "user class and re-scores every photo.", style="dim")
        self.query_one("#head", Static).update(head)
        box = self.query_one("#attrs", VerticalScroll)
        box.remove_children()
        box.mount_all([AttributeRow(i, a, float(v), top) for i, (a, v) in enumerate(zip(names, vec))])
        self.query_one("#name", Input).focus()

    def values(self) -> dict[str, float]:
        """The edited vector; raises ValueError naming the first attribute that is not a finite number."""
        out = {}
        for row in self.query(AttributeRow):
            text = row.query_one(Input).value.strip()
            try:
                v = float(text)
            except ValueError:
                raise ValueError(f"{row.attr}: {text!r} is not a number") from None
            if not math.isfinite(v):
                raise ValueError(f"{row.attr}: {text!r} is not a finite number")
            out[row.attr] = v
        return out

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.app.pop_screen()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "name":
            self.action_save()

    def action_pick(self) -> None:
        choices = [(n, self.engine.origin_of(n)) for n in self.engine.class_names]
        self.app.push_screen(ClassPicker("Start from class", choices, self.start),
                             lambda name: name and self.load_class(name))

    def action_save(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.notify("give the new class a name", severity="warning")
            return
        if name in self.engine.class_names:
            self.notify(f"a class called {name!r} exists already; choose another name", severity="warning")
            return
        try:
            values = self.values()
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        self.query_one("#save", Button).disabled = True
        self.save(name, values)

    @work(thread=True, exclusive=True, group="save-class", exit_on_error=False)
    def save(self, name: str, values: dict[str, float]) -> None:
        from ..models.errors import DkgzslError
        from ..classes import add_classes

        try:
            add_classes(self.engine.options.model, {name: values}, offline=self.engine.options.offline,
                        warn=lambda note: self.app.call_from_thread(self.notify, note, title="note",
                                                                    severity="warning", timeout=10))
        except (DkgzslError, ValueError) as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self._saved, name)

    def _failed(self, message: str) -> None:
        self.query_one("#save", Button).disabled = False
        self.notify(message, title="class not saved", severity="error", timeout=10)

    def _saved(self, name: str) -> None:
        self.notify(f"saved class {name!r}; re-scoring…")
        self.app.pop_screen()
        self.app.rescore(name)
