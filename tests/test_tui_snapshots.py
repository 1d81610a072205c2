"""Snapshots of the main screens at 80×24, 120×34 and 160×48 (pytest-textual-snapshot; update with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the SVGs). Fixed data, no pictures."""
from pathlib import Path

import pytest
from textual.widgets import Input

from dkgzsl_app.tui import EngineOptions, create_app

from tui_helpers import make_bundle, with_long_class_names, write_results

SIZES = [(80, 24), (120, 34), (160, 48)]


@pytest.fixture
def results(tmp_path, monkeypatch):
    # relative photo paths (the snapshot must not depend on tmp_path); the photos need not exist
    monkeypatch.chdir(tmp_path)
    return write_results(Path("preds.jsonl"), Path("photos"), relative=True)


def app_for(results, **kw):
    return create_app(results, options=EngineOptions(model=None), show_images=False, **kw)


async def settle(pilot, *keys):
    await pilot.press(*keys)
    await pilot.pause(0.3)  # the detail pane fills after the cursor rests (80 ms)...
    await pilot.app.workers.wait_for_complete()  # ...from a worker: wait for it even on a loaded machine
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_browser(snap_compare, results, size):
    async def run_before(pilot):
        await settle(pilot, "down", "x", *"cat", "enter", "down", "down")

    assert snap_compare(app_for(results), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sorted_and_filtered(snap_compare, results, size):
    async def run_before(pilot):
        await settle(pilot, "s", "s", "s", "c", *"teapot", "enter")

    assert snap_compare(app_for(results), terminal_size=size, run_before=run_before)


@pytest.fixture
def long_names(results):
    """The same rows with demo-length class names (the demo's longest has 23 characters)."""
    return with_long_class_names(results)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_long_class_names_shown_whole(snap_compare, long_names, size):
    """Issue 19: at 120×34 the class column was cut to 10 characters; the detail pane gives way first."""
    async def run_before(pilot):
        await settle(pilot, "j", "x", *"yellow", "enter", "j", "j")

    assert snap_compare(app_for(long_names), terminal_size=size, run_before=run_before)


def test_bulk_selection(snap_compare, results):
    async def run_before(pilot):
        await settle(pilot, "space", "shift+down", "j", "j", "space")

    assert snap_compare(app_for(results), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_gallery(snap_compare, results, size):
    async def run_before(pilot):
        await settle(pilot, "j", "v", "space", "l", "y")  # pictures off: the tiles say so

    assert snap_compare(app_for(results), terminal_size=size, run_before=run_before)


def test_correction_picker(snap_compare, results):
    async def run_before(pilot):
        await settle(pilot, "down", "x", *"e")

    assert snap_compare(app_for(results), terminal_size=(80, 24), run_before=run_before)


def test_help(snap_compare, results):
    async def run_before(pilot):
        await settle(pilot, "question_mark")

    assert snap_compare(app_for(results), terminal_size=(80, 24), run_before=run_before)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("snap-bundle") / "b")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_class_editor(snap_compare, results, bundle, size):
    async def run_before(pilot):
        app = pilot.app
        for _ in range(600):
            if app.engine.loaded:
                break
            await pilot.pause(0.05)
        await settle(pilot, "down", "down", "a")
        app.screen.query_one("#name", Input).value = "hot_espresso"
        for field in app.screen.query(Input):
            field.cursor_blink = False  # a blinking cursor makes the picture depend on timing
        await settle(pilot)

    app = create_app(results, options=EngineOptions(model=f"local-dir:{bundle}", device="cpu", workers=0),
                     show_images=False)
    app.sub_title = "preds.jsonl · tiny bundle"  # the bundle lives in a temp folder
    assert snap_compare(app, terminal_size=size, run_before=run_before)
