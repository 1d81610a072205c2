"""The terminal UI (Textual): ``dkgzsl browse`` and ``dkgzsl classify --tui``.

``create_app`` is the one way to build the app, shared by the CLI and the tests (like posting's).
Importing this package loads Textual but not torch; the model loads in a worker once the app runs.
"""
from __future__ import annotations

from pathlib import Path

from .engine import Engine, EngineOptions


def create_app(results_file: Path | None = None, paths: list[str] | None = None,
               options: EngineOptions | None = None, show_images: bool = True, store=None, engine=None):
    """The browser over a results file written by ``classify`` (CSV/JSON/JSONL), or over photos it
    classifies itself (``paths``). Corrections autosave to ``store`` (a RunStore): beside the results file,
    or a fresh ``runs/<timestamp>`` folder under the user data folder."""
    from ..output import read_predictions
    from .app import BrowseApp
    from .results import RunStore

    if show_images:
        # textual-image asks the terminal what it can draw (Sixel, Kitty graphics) on import: that must
        # happen before Textual takes over the terminal
        import textual_image.widget  # noqa: F401
    engine = engine or Engine(options)
    if results_file is not None:
        preds, corrections = read_predictions(results_file)
        store = store or RunStore.beside(results_file)
        corrections.update(store.load_corrections())  # the autosave is newer than the file's column
        return BrowseApp(engine, store, preds=preds, corrections=corrections, show_images=show_images,
                         source=f"{Path(results_file).name} · {engine.options.model or 'results only'}")
    store = store or RunStore.fresh()
    return BrowseApp(engine, store, paths=[str(p) for p in paths or []], show_images=show_images,
                     source=f"{len(paths or [])} photos · {engine.options.model}")


__all__ = ["create_app", "Engine", "EngineOptions"]
