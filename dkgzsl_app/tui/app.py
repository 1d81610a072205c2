"""The browser app: results table, detail pane, corrections, export; model work in thread workers.

Nothing slow runs on the UI thread: loading the model, classifying (chunk by chunk, the table filling as
chunks finish), decoding pictures, explaining and re-scoring all run in ``run_worker(thread=True)`` and
hand their results back with ``call_from_thread``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static
from textual.worker import get_current_worker

from ..models.errors import DkgzslError
from .detail import DetailPane, thumbnail
from .dialogs import ClassPicker, HelpScreen, Prompt
from .engine import Engine
from .gallery import Gallery
from .results import SORTS, UNKNOWN, ResultSet, Row, RunStore, export
from .table import ResultsTable

ACTIONS = [  # (action, palette title, help) — one command palette entry per action
    ("sort", "Sort: next column", "Sort by file, class, score or seen/unseen (cycles)"),
    ("reverse", "Sort: reverse", "Reverse the order of the rows"),
    ("filter_text", "Filter by text", "Show rows whose file, class or truth contains the text"),
    ("filter_class", "Filter by class", "Show the photos of one class only"),
    ("filter_unknown", "Filter: unknown photos (again: all)", "Photos like none of the classes: flagged by the model or marked unknown"),
    ("clear_filters", "Clear filters", "Show every row again"),
    ("next_low", "Jump to next low-confidence prediction", "Rows whose top probability is below 0.5"),
    ("correct", "Correct the selected prediction(s)", "Pick the right class for this photo or the selected ones"),
    ("mark_unknown", "Mark as unknown", "None of the classes: this photo or the selected ones (sort files them in _unknown)"),
    ("accept", "Accept as reviewed", "The prediction is right: this photo or the selected ones"),
    ("undo", "Undo the last correction", "Reverse the last change (single or bulk)"),
    ("forget", "Forget corrections", "Remove the correction of this photo or the selected ones"),
    ("toggle_select", "Select or unselect this photo", "Selected photos take bulk corrections"),
    ("select_all", "Select all in view (again: none)", "Every photo the filters show"),
    ("gallery", "Class gallery", "Thumbnails of the photos of one class, low confidence first on request"),
    ("sort_files", "File photos into class folders (dkgzsl sort)", "Copy, link or move the photos, corrections applied"),
    ("export", "Export results and corrections", "Write CSV, JSONL or JSON"),
    ("edit_class", "Class editor", "Change a class's attributes and save it as a new class"),
    ("help", "Help", "Keys and what the columns mean"),
]


BROWSE_ACTIONS = {a for a, _, _ in ACTIONS} | {"extend_select"}


class BrowseApp(App):
    TITLE = "dkgzsl browse"
    # below 140 columns the detail pane goes below the table, so the class column keeps its width (issue 19)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]
    CSS = """
    #main { height: 1fr; layout: vertical; }
    Screen.-wide #main { layout: horizontal; }
    Screen.-narrow DetailPane { height: 10; }
    Screen.-wide DetailPane { width: 40%; max-width: 64; height: 1fr; }
    Screen.-wide DetailPane #body { layout: vertical; }
    Screen.-wide DetailPane #picture-box { width: 100%; height: 20; }
    Screen.-wide DetailPane #topk { width: 100%; margin-top: 1; }
    Screen.-wide DetailPane #why { width: 100%; margin-top: 1; }
    #statusbar { height: 1; }
    #status { width: 1fr; height: 1; padding: 0 1; }
    #progress { width: 36; height: 1; }
    #progress.-done { display: none; }
    """
    BINDINGS = [
        Binding("question_mark", "help", "help"),
        Binding("slash", "filter_text", "find"),
        Binding("c", "filter_class", "class"),
        Binding("o", "filter_unknown", "unknown only", show=False),
        Binding("s", "sort", "sort", show=False),  # also: click a column header
        Binding("r", "reverse", "reverse", show=False),
        Binding("l", "next_low", "low", show=False),  # the gallery (v) shows low confidence first
        Binding("x", "correct", "correct"),
        Binding("space", "toggle_select", "select", show=False),
        Binding("shift+down", "extend_select(1)", "select down", show=False),
        Binding("shift+up", "extend_select(-1)", "select up", show=False),
        Binding("asterisk", "select_all", "all", show=False),
        Binding("n", "mark_unknown", "unknown", show=False),
        Binding("y", "accept", "accept", show=False),
        Binding("u", "undo", "undo", show=False),
        Binding("delete", "forget", "forget", show=False),
        Binding("v", "gallery", "gallery"),
        Binding("f", "sort_files", "file", show=False),
        Binding("e", "export", "export"),
        Binding("a", "edit_class", "edit"),
        Binding("escape", "clear_filters", "clear", show=False),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, engine: Engine, store: RunStore, preds: list | None = None, paths: list[str] | None = None,
                 corrections: dict[str, str] | None = None, show_images: bool = True, source: str = ""):
        super().__init__()
        self.engine, self.store, self.show_images = engine, store, show_images
        self.results = ResultSet()
        self._initial = (preds or [], corrections or {})
        self.paths = list(paths or [])
        self.source = source
        self.classifying = bool(self.paths)
        self._done = 0
        self._preview_timer = None
        self.sub_title = source
        if self.paths and engine.options.model is not None and not engine.loaded:
            # classifying photos needs torch at once: import it before the first frame, not in the
            # worker, where the import's GIL-held stretches stall the UI (issue 17; a results file opens
            # without waiting, and its model still loads in the worker)
            from .engine import preload_libraries

            preload_libraries()

    # ----------------------------------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield ResultsTable(id="table")
            yield DetailPane(self.show_images, id="detail")
        with Horizontal(id="statusbar"):
            yield Static(id="status")
            yield ProgressBar(total=len(self.paths) or None, show_eta=False, id="progress")
        yield Footer(compact=True)

    @property
    def table(self) -> ResultsTable:
        return self.query_one("#table", ResultsTable)

    @property
    def detail(self) -> DetailPane:
        return self.query_one("#detail", DetailPane)

    def on_mount(self) -> None:
        preds, corrections = self._initial
        self.table.selected = self.results.selected  # one selection set, drawn by the table
        self.resolve_origins(self.results.add(preds, corrections))
        self.table.show(self.results.visible())
        if not self.paths:
            self.query_one("#progress").add_class("-done")
        self.update_status()
        self.table.focus()
        self.start_model()

    # ------------------------------------------------------------------------------ model workers
    @work(thread=True, group="model", exit_on_error=False)
    def start_model(self) -> None:
        worker = get_current_worker()
        if self.engine.options.model is None:  # browse only: no explanations, no class editor
            return
        try:
            self.call_from_thread(self.update_status, "loading the model…" if not self.engine.loaded else None)
            # feature-cache notices (turned off, rebuilt) as a toast, not lost in engine.notices
            self.engine.warn = lambda note: self.call_from_thread(self.notify, note, title="feature cache",
                                                                  severity="warning")
            self.engine.load()
            if not self.paths:
                self.call_from_thread(self.model_ready)
                return
            def chunk(start: int, preds: list) -> None:
                try:
                    self.store.save_results(preds)  # autosave in the worker: no disk I/O on the UI thread
                except DkgzslError as e:
                    self.call_from_thread(self.notify, str(e), severity="warning")
                self.call_from_thread(self.add_predictions, preds)

            self.engine.classify(self.paths, chunk, lambda n: self.call_from_thread(self.advance, n),
                                 lambda: worker.is_cancelled)
            self.call_from_thread(self.classify_done)
        except DkgzslError as e:
            self.call_from_thread(self.model_failed, str(e))

    def model_ready(self) -> None:
        self.update_status()
        self.schedule_preview()

    def model_failed(self, message: str) -> None:
        self.classifying = False
        self.query_one("#progress").add_class("-done")
        self.notify(message, title="model unavailable", severity="error", timeout=10)
        self.update_status()

    def advance(self, n: int) -> None:
        self._done += n
        self.query_one("#progress", ProgressBar).advance(n)
        self.update_status()

    def add_predictions(self, preds: list) -> None:
        first = not self.results.rows
        rows = self.results.add(preds, self.store.load_corrections() if first else None)
        self.resolve_origins(rows)
        if self.results.sort_by or self.results.class_filter or self.results.text_filter or self.results.reverse:
            self.table.show(self.results.visible())
        else:
            self.table.append(rows)
        if first:
            self.schedule_preview()
        self.update_status()

    def classify_done(self) -> None:
        self.classifying = False
        self.query_one("#progress").add_class("-done")
        self.update_status()
        self.notify(f"classified {len(self.results.rows)} photos; results in {self.store.folder}")

    def predictions(self) -> list:
        return [r.pred for r in self.results.rows.values()]

    # ---------------------------------------------------------------------------------- status
    def update_status(self, text: str | None = None) -> None:
        r = self.results
        if text is None:
            parts = [r.summary()]
            if self.classifying:
                parts.insert(0, f"classifying {self._done}/{len(self.paths)}")
            if r.sort_by or r.reverse:
                parts.append(f"sort {r.sort_by or 'arrival'}{' ↓' if r.reverse else ''}")
            if r.class_filter:
                parts.append(f"class = {r.class_filter}")
            if r.text_filter:
                parts.append(f"filter “{r.text_filter}”")
            shown = self.table.row_count if self.is_mounted else 0
            if (r.class_filter or r.text_filter) and shown != len(r.rows):
                parts.append(f"{shown} shown")
            if r.selected:
                parts.append(f"{len(r.selected)} selected")
            text = " · ".join(parts)
        self.query_one("#status", Static).update(text)

    # ---------------------------------------------------------------------------- selection
    def current_row(self) -> Row | None:
        key = self.table.current_key()
        return self.results.rows.get(key) if key else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.detail.show_row(self.current_row())
        self.schedule_preview()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_correct()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        key = {"photo": "file", "truth": "class"}.get(key, key)
        if key in SORTS:
            self.results.reverse = self.results.sort_by == key and not self.results.reverse
            self.results.sort_by = key
            self.refresh_table()

    def schedule_preview(self) -> None:
        """Picture and explanation after the cursor rests for 80 ms (key repeat does not pile up work)."""
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(0.08, self._start_preview)

    def _start_preview(self) -> None:
        if not self.screen_stack or not self.is_running:  # the timer fired while the app was closing
            return
        try:
            row = self.current_row()
        except NoMatches:  # the main screen is already gone (closing)
            return
        self.detail.show_row(row)
        if row is not None:
            self.preview(row)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def preview(self, row: Row) -> None:
        worker = get_current_worker()
        if self.show_images and not row.pred.error:
            try:
                im = thumbnail(row.pred.path)
            except Exception:  # unreadable now (moved, deleted): the pane says so through the error row
                im = None
            if im is not None and not worker.is_cancelled:
                self.call_from_thread(self.detail.set_picture, row.key, im)
        label = row.label
        if label == UNKNOWN:  # marked "none of the classes": explain the model's best guess instead
            label = row.top.name if row.top else None
        if worker.is_cancelled or not label or row.pred.error:  # an error row's pane already says why
            return
        if not self.engine.loaded:
            reason = ("no model: browsing results only" if self.engine.options.model is None else
                      "the model is loading…")
            self.call_from_thread(self.detail.set_why, row.key, label, [], reason)
            return
        try:
            evidence = self.engine.explain(row.pred.path, label)
        except Exception as e:  # never let an explanation take the app down
            self.call_from_thread(self.notify, f"{row.name}: no explanation ({e})", severity="warning")
            evidence = []
        if not worker.is_cancelled:
            self.call_from_thread(self.detail.set_why, row.key, label, evidence)

    # ------------------------------------------------------------------------------- the view
    def refresh_table(self) -> None:
        self.table.show(self.results.visible())
        self.update_status()
        self.detail.show_row(self.current_row())
        self.schedule_preview()

    def action_sort(self) -> None:
        r = self.results
        r.sort_by = SORTS[(SORTS.index(r.sort_by) + 1) % len(SORTS)] if r.sort_by else SORTS[0]
        r.reverse = False
        self.refresh_table()
        self.table.move_cursor(row=0, scroll=True)

    def action_reverse(self) -> None:
        self.results.reverse = not self.results.reverse
        self.refresh_table()

    def action_filter_text(self) -> None:
        def done(text: str | None) -> None:
            if text is not None:
                self.results.text_filter = text.strip()
                self.refresh_table()

        self.push_screen(Prompt("Filter by text (empty: show all)", self.results.text_filter,
                                "file name, class or truth"), done)

    def action_filter_class(self) -> None:
        counts: dict[str, int] = {}
        for row in self.results.rows.values():
            if row.label:
                counts[row.label] = counts.get(row.label, 0) + 1
        choices = [(n, f"{c} photos") for n, c in sorted(counts.items())]

        def done(name: str | None) -> None:
            if name is not None:
                self.results.class_filter = name
                self.refresh_table()

        self.push_screen(ClassPicker("Show one class", choices, self.results.class_filter), done)

    def action_filter_unknown(self) -> None:
        from .openset import FLAGGED

        self.results.class_filter = None if self.results.class_filter == FLAGGED else FLAGGED
        self.refresh_table()

    def action_clear_filters(self) -> None:
        """escape: first the selection, then the filters."""
        if self.results.selected:
            rows = [self.results.rows[k] for k in self.results.selected if k in self.results.rows]
            self.results.selected.clear()
            for row in rows:
                self.table.redraw(row)
            self.update_status()
            return
        if self.results.class_filter or self.results.text_filter:
            self.results.class_filter, self.results.text_filter = None, ""
            self.refresh_table()

    def action_next_low(self) -> None:
        keys = self.table.keys_in_order()
        if not keys:
            return
        start = self.table.cursor_row
        for step in range(1, len(keys) + 1):
            i = (start + step) % len(keys)
            if self.results.rows[keys[i]].low_confidence:
                self.table.move_cursor(row=i, scroll=True)
                return
        self.notify("no low-confidence predictions in view")

    # ---------------------------------------------------------------------------- corrections
    def origin_of(self, name: str) -> str:
        """seen / unseen / user of class ``name``: from the model when loaded, else from the guesses."""
        if self.engine.loaded:
            return self.engine.origin_of(name)
        return dict(self.class_choices()).get(name, "")

    def resolve_origins(self, rows: Iterable[Row]) -> None:
        """Corrected rows learn their new class's origin (corrections read from disk know only the name)."""
        todo = [r for r in rows if r.correction and not r.correction_origin]
        if todo:
            origins = dict(self.class_choices())  # once: without a model it scans every row's guesses
            for row in todo:
                row.correction_origin = origins.get(row.correction) or None

    def class_choices(self) -> list[tuple[str, str]]:
        if self.engine.loaded:
            return [(n, self.engine.origin_of(n)) for n in self.engine.class_names]
        seen: dict[str, str] = {}
        for row in self.results.rows.values():
            for g in row.pred.top:
                seen.setdefault(g.name, g.origin)
        return sorted(seen.items())

    def targets(self) -> list[Row]:
        """What a correction acts on: the selected photos, else the one under the cursor."""
        if self.results.selected:
            return [self.results.rows[k] for k in self.results.selected if k in self.results.rows]
        row = self.current_row()
        return [row] if row is not None else []

    def action_correct(self) -> None:
        self.ask_correction(self.targets())

    def ask_correction(self, rows: list[Row]) -> None:
        """Pick the right class for ``rows`` (one photo, or a bulk correction)."""
        if not rows:
            return
        title = f"Right class for {rows[0].name}" if len(rows) == 1 else f"Right class for {len(rows)} photos"
        current = rows[0].label if len(rows) == 1 else None

        def done(name: str | None) -> None:
            if name is not None:
                self.apply_corrections({r.key: name for r in rows})

        self.push_screen(ClassPicker(title, self.class_choices(), current), done)

    def action_mark_unknown(self) -> None:
        self.apply_corrections({r.key: UNKNOWN for r in self.targets()})

    def action_accept(self) -> None:
        """Reviewed: the prediction is right (a corrected photo keeps its correction)."""
        self.apply_corrections({r.key: r.correction or r.top.name for r in self.targets() if r.top})

    def action_forget(self) -> None:
        self.apply_corrections({r.key: None for r in self.targets()})

    def action_undo(self) -> None:
        rows = self.results.undo()
        if not rows:
            self.notify("nothing to undo")
            return
        self.corrections_changed(rows)
        self.notify(f"undone: {len(rows)} photo{'s' if len(rows) != 1 else ''}")

    def set_correction(self, row: Row, name: str | None) -> None:
        self.apply_corrections({row.key: name})

    def apply_corrections(self, changes: dict[str, str | None]) -> None:
        """One undoable change (single or bulk), saved at once; the selection is cleared after it."""
        rows = self.results.correct(changes)
        if self.results.selected:
            cleared = [self.results.rows[k] for k in self.results.selected if k in self.results.rows]
            self.results.selected.clear()
            rows = list({r.key: r for r in cleared + rows}.values())
        self.corrections_changed(rows)
        if len(changes) > 1:
            self.notify(f"{len(changes)} photos → {self._what(next(iter(changes.values())), changes)}")

    @staticmethod
    def _what(first: str | None, changes: dict) -> str:
        if len(set(changes.values())) > 1:
            return "accepted as reviewed"
        return {None: "corrections forgotten", UNKNOWN: "unknown"}.get(first, first or "")

    def corrections_changed(self, rows: list[Row]) -> None:
        """Origins, autosave, and every view of ``rows``."""
        for row in rows:
            row.correction_origin = (self.origin_of(row.correction) or None) if row.correction else None
        try:
            self.store.save_corrections(self.results.corrections)
        except DkgzslError as e:
            self.notify(str(e), title="corrections not saved", severity="error")
        for row in rows:
            self.table.redraw(row)
        self.detail.show_row(self.current_row())
        self.schedule_preview()
        self.update_status()
        for screen in self.screen_stack:
            if isinstance(screen, Gallery):
                screen.refresh_view()

    # ------------------------------------------------------------------------------- selection
    def action_toggle_select(self) -> None:
        row = self.current_row()
        if row is None:
            return
        self.results.selected.symmetric_difference_update({row.key})
        self.table.redraw(row)
        self.table.action_cursor_down()
        self.update_status()

    def action_extend_select(self, step: int) -> None:
        """shift+↓/↑: select this photo and the next one (a range, as the key is held)."""
        row = self.current_row()
        if row is None:
            return
        self.results.selected.add(row.key)
        self.table.redraw(row)
        (self.table.action_cursor_down if step > 0 else self.table.action_cursor_up)()
        nxt = self.current_row()
        if nxt is not None:
            self.results.selected.add(nxt.key)
            self.table.redraw(nxt)
        self.update_status()

    def action_select_all(self) -> None:
        """Select every photo in view; when all are already selected, select none."""
        keys = set(self.table.keys_in_order())
        sel = self.results.selected
        if keys and keys <= sel:
            sel.difference_update(keys)
        else:
            sel.update(keys)
        for k in keys:
            self.table.redraw(self.results.rows[k])
        self.update_status()

    # ------------------------------------------------------------------------ galleries, sorting
    def action_gallery(self) -> None:
        """The gallery of the class under the cursor (low confidence first)."""
        row = self.current_row()
        if row is None:
            return
        name = row.label or "error"

        def done(key: str | None) -> None:
            self.refresh_table()
            if key is not None and key in self.table.rows:
                self.table.move_cursor(row=self.table.get_row_index(key), scroll=True)

        self.push_screen(Gallery(name, low_first=True, start=row.key), done)

    def action_sort_files(self) -> None:
        """File the photos into one folder per class (``dkgzsl sort``), corrections applied."""
        from ..sort import DEFAULT_MIN_CONFIDENCE

        def mode_chosen(mode: str | None, folder: str) -> None:
            if mode is not None:
                self.sort_files(Path(folder).expanduser(), mode, DEFAULT_MIN_CONFIDENCE,
                                [r.pred for r in self.results.rows.values()], dict(self.results.corrections))

        def folder_chosen(folder: str | None) -> None:
            if folder and folder.strip():
                choices = [("copy", "the photos stay where they are"), ("link", "hard links, no extra space"),
                           ("move", "undo with dkgzsl sort --undo")]
                self.push_screen(ClassPicker(f"Copy, link or move into {folder.strip()}?", choices, "copy"),
                                 lambda mode: mode_chosen(mode, folder.strip()))

        self.push_screen(Prompt("File the photos into folders by class, in", str(self.store.folder / "sorted"),
                                "a folder (created when missing)"), folder_chosen)

    @work(thread=True, exclusive=True, group="sort", exit_on_error=False)
    def sort_files(self, into: Path, mode: str, min_confidence: float, preds: list, corrections: dict) -> None:
        """In a worker (copying thousands of photos takes a while); ``preds`` and ``corrections`` are a
        snapshot taken on the UI thread."""
        from ..sort import sort_photos

        try:
            res = sort_photos(self.store.results_file, into, mode, min_confidence, preds=preds,
                              corrections=corrections)
        except DkgzslError as e:
            self.call_from_thread(self.notify, str(e), title="not sorted", severity="error")
            return
        msg = f"{res.filed} photos into {len(res.counts)} folders in {into}; undo: dkgzsl sort --undo {res.manifest}"
        if res.missing:
            msg += f"; {len(res.missing)} not found"
        self.call_from_thread(self.notify, msg, title="sorted", timeout=10)

    def action_export(self) -> None:
        default = str(self.store.folder / f"{self.store.stem}-corrected.csv")

        def done(name: str | None) -> None:
            if not name:
                return
            try:
                path = export(list(self.results.rows.values()), Path(name).expanduser())
            except (ValueError, DkgzslError) as e:
                self.notify(str(e), title="not exported", severity="error")
                return
            self.notify(f"wrote {len(self.results.rows)} rows to {path}", title="exported")

        self.push_screen(Prompt("Export to (.csv, .jsonl or .json)", default), done)

    # ------------------------------------------------------------------------------ classes
    def action_edit_class(self) -> None:
        from .editor import ClassEditor

        if not self.engine.loaded:
            self.notify("no model loaded (still loading, unavailable, or --no-model)", severity="warning")
            return
        row = self.current_row()
        start = row.label if row and row.label in self.engine.class_names else self.engine.class_names[0]
        self.push_screen(ClassEditor(self.engine, start))

    @work(thread=True, group="model", exit_on_error=False)
    def rescore(self, added: str = "") -> None:
        """After the class list changed: reload classes, re-score every photo from cached features."""
        try:
            self.engine.reload_classes()
            rows = [r for r in self.results.rows.values() if not r.pred.error]
            preds = self.engine.rescore([r.pred.path for r in rows])
        except DkgzslError as e:
            self.call_from_thread(self.notify, str(e), title="re-scoring failed", severity="error")
            return
        if self.paths:  # photos classified here: the run folder's autosave follows the new scores
            try:        # (an opened results file is the user's own and is never rewritten)
                self.store.save_results([p for p in preds if not p.error])
            except DkgzslError as e:
                self.call_from_thread(self.notify, str(e), severity="warning")
        self.call_from_thread(self.apply_rescore, [(r.key, p) for r, p in zip(rows, preds)], added)

    def apply_rescore(self, pairs: list, added: str) -> None:
        missing = 0
        for key, pred in pairs:
            if pred.error:
                missing += 1
                continue
            self.results.rows[key].pred = pred
        moved = sum(1 for k, _ in pairs if (self.results.rows[k].top and self.results.rows[k].top.name == added))
        self.refresh_table()
        msg = f"re-scored {len(pairs) - missing} photos" + (f"; {moved} now {added}" if added else "")
        if missing:
            msg += f"; {missing} photos could not be read and keep their old scores"
        self.notify(msg, title="classes changed")

    # --------------------------------------------------------------------------------- misc
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The browser's keys act on the browser only (not inside the class editor or a dialog)."""
        if action in BROWSE_ACTIONS and len(self.screen_stack) > 1:
            return False
        return True

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action, title, help_text in ACTIONS:
            yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
