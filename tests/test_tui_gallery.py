"""Issue 19 in the browser, through Pilot: whole class names, vim keys, bulk corrections with undo, class
galleries, and filing the photos (dkgzsl sort) from the TUI."""
import asyncio
import json

import pytest
from rich.console import Console
from textual.widgets import Input

from dkgzsl_app.tui import EngineOptions, create_app
from dkgzsl_app.tui.dialogs import ClassPicker, Prompt
from dkgzsl_app.tui.gallery import Gallery, GalleryGrid
from dkgzsl_app.tui.results import UNKNOWN, RunStore

from tui_helpers import LONG_NAMES, ROWS, make_photos, wait_until, with_long_class_names, write_results


@pytest.fixture
def results(tmp_path):
    photos = make_photos(tmp_path / "photos")
    return write_results(tmp_path / "preds.jsonl", photos[0].parent)


def browse(path, show_images=False):
    return create_app(path, options=EngineOptions(model=None), show_images=show_images)


def names(app):
    return [app.results.rows[k].name for k in app.table.keys_in_order()]


def saved(results):
    return json.loads(RunStore.beside(results).corrections_file.read_text())["corrections"]


def long_class_results(tmp_path):
    """ROWS with demo-length class names (23 characters, as yellow_checked_triangle)."""
    return with_long_class_names(write_results(tmp_path / "long.jsonl", tmp_path / "photos")), LONG_NAMES


@pytest.mark.parametrize("size", [(80, 24), (120, 34), (160, 48)])
def test_the_class_is_shown_whole_at_every_size(tmp_path, size):
    """At 120×34 the class column was cut to 10 characters by the detail pane ("gree…ircle")."""
    path, long = long_class_results(tmp_path)

    async def run():
        app = browse(path)
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.1)
            for key in app.table.keys_in_order():
                row = app.results.rows[key]
                assert str(app.table.get_cell(key, "class")) == row.top.name  # whole, no ellipsis
            assert app.table.widths["class"] >= max(map(len, long.values()))
            # the detail pane gave way: below the table up to 140 columns, beside it from there
            stacked = app.detail.region.y > app.table.region.y
            assert stacked == (size[0] < 140)
            await pilot.press("x", *"yellow", "enter")  # a correction (✎ + name) is whole too
            row = app.current_row()
            assert str(app.table.get_cell(row.key, "class")) in (f"✎ {row.correction}", f"✓ {row.correction}")

    asyncio.run(run())


def test_vim_keys_move_the_cursor(results):
    async def run():
        app = browse(results)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("j", "j")
            assert app.table.cursor_row == 2
            await pilot.press("k")
            assert app.table.cursor_row == 1
            await pilot.press("G")
            assert app.table.cursor_row == len(ROWS) - 1
            await pilot.press("g")
            assert app.table.cursor_row == 0

    asyncio.run(run())


def test_bulk_select_correct_undo_and_autosave(results):
    async def run():
        app = browse(results)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("space")  # cat__0001, and the cursor moves on
            assert app.table.cursor_row == 1
            await pilot.press("shift+down", "shift+down")  # cat__0002, espresso__0001, espresso__0002
            sel = {app.results.rows[k].name for k in app.results.selected}
            assert sel == {"cat__0001.jpg", "cat__0002.jpg", "espresso__0001.jpg", "espresso__0002.jpg"}
            assert str(app.table.get_cell(app.table.keys_in_order()[0], "sel")) == "●"
            assert "4 selected" in str(app.query_one("#status").render())
            await pilot.press("x")
            assert isinstance(app.screen, ClassPicker) and "4 photos" in app.screen.title_text
            await pilot.press(*"teapot", "enter")
            fixed = {app.results.rows[k].name: app.results.rows[k].correction for k in app.results.rows}
            assert [n for n, c in fixed.items() if c == "teapot"] == [r[0] for r in ROWS[:4]]
            assert not app.results.selected  # a bulk correction clears the selection
            assert len(saved(results)) == 4  # autosaved at once

            await pilot.press("u")  # undo: the whole bulk change at once
            assert not any(r.correction for r in app.results.rows.values())
            assert saved(results) == {}

            await pilot.press("c", *"teapot", "enter")  # select all in view: the 3 predicted teapot
            await pilot.press("asterisk")
            assert len(app.results.selected) == 3
            await pilot.press("y")  # accept as reviewed: the prediction confirmed
            assert {r.correction for r in app.results.rows.values() if r.correction} == {"teapot"}
            assert len(saved(results)) == 3
            await pilot.press("asterisk", "n")  # the same three: none of the classes
            assert sorted(saved(results).values()) == [UNKNOWN] * 3
            await pilot.press("u")
            assert sorted(saved(results).values()) == ["teapot"] * 3  # back to accepted, not to nothing
            await pilot.press("asterisk", "asterisk")  # again: none selected
            assert not app.results.selected
            await pilot.press("space", "escape")  # escape clears the selection before the filters
            assert not app.results.selected and app.results.class_filter == "teapot"
            await pilot.press("escape")
            assert app.results.class_filter is None
            await pilot.press("asterisk", "delete")  # forget every correction in view
            assert saved(results) == {}

        again = browse(results)  # reopened: what was saved is what is shown
        async with again.run_test(size=(100, 30)):
            assert not any(r.correction for r in again.results.rows.values())

    asyncio.run(run())


def test_gallery_pages_classes_order_thumbnails_and_bulk(results):
    async def run():
        app = browse(results, show_images=True)
        # 40×20: two tiles a row, one row a page (18×10 cells each)
        async with app.run_test(size=(40, 20)) as pilot:
            await pilot.press("j")  # cat__0002, predicted teapot
            await pilot.press("v")
            gallery = app.screen
            assert isinstance(gallery, Gallery) and gallery.class_name == "teapot"
            # low confidence first: espresso__0002 (0.38), cat__0002 (0.44), teapot__0001 (0.83)
            assert [r.name for r in gallery.photos] == ["espresso__0002.jpg", "cat__0002.jpg", "teapot__0001.jpg"]
            assert gallery.current().name == "cat__0002.jpg"  # opened at the photo under the table's cursor
            grid = gallery.query_one(GalleryGrid)
            assert grid.page_size == 2
            await wait_until(pilot, lambda: all(r.pred.path in grid.tiles for r in grid.rows), 10)
            assert all(grid.tiles[r.pred.path] for r in grid.rows)  # decoded: 8 lines of 16 half blocks
            assert len(grid.tiles[grid.rows[0].pred.path]) == 8
            assert "page 1/2" in str(gallery.query_one("#gallery-title").render())
            assert "0.38" in "".join(s.text for s in grid.render_line(9))  # the confidence line
            await pilot.press("pagedown")
            assert [r.name for r in grid.rows] == ["teapot__0001.jpg"] and "page 2/2" in str(
                gallery.query_one("#gallery-title").render())
            await pilot.press("o")  # by file name
            assert [r.name for r in gallery.photos] == ["cat__0002.jpg", "espresso__0002.jpg", "teapot__0001.jpg"]
            await pilot.press("g", "space")  # select cat__0002; space moves on to espresso__0002
            assert gallery.current().name == "espresso__0002.jpg"
            await pilot.press("space", "x", *"espresso", "enter")  # both selected: they are espresso
            assert isinstance(app.screen, Gallery)
            assert [r.name for r in gallery.photos] == ["teapot__0001.jpg"]  # they left the teapot gallery
            assert len(saved(results)) == 2
            await pilot.press("u")
            assert len(gallery.photos) == 3 and saved(results) == {}
            await pilot.press("right_square_bracket")  # next class (alphabetical after teapot: wraps to cat)
            assert gallery.class_name == "cat" and [r.name for r in gallery.photos] == ["cat__0001.jpg", "mystery.jpg"]
            await pilot.press("asterisk", "n")  # the whole class is unknown
            assert gallery.photos == [] and sorted(saved(results).values()) == [UNKNOWN] * 2
            await pilot.press("left_square_bracket")  # the previous class is now (unknown)
            assert gallery.class_name == UNKNOWN and len(gallery.photos) == 2
            await pilot.press("j", "enter")  # back to the table, on that photo
            assert not isinstance(app.screen, Gallery)
            assert app.current_row().name == "mystery.jpg" and app.current_row().correction == UNKNOWN

    asyncio.run(run())


def test_sort_from_the_browser_files_the_current_results(results, tmp_path):
    async def run():
        app = browse(results)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("j", "x", *"cat", "enter")  # cat__0002 is a cat after all
            await pilot.press("f")
            assert isinstance(app.screen, Prompt)
            app.screen.query_one(Input).value = str(tmp_path / "sorted")
            await pilot.press("enter")
            assert isinstance(app.screen, ClassPicker)
            await pilot.press(*"link", "enter")
            await wait_until(pilot, lambda: (tmp_path / "sorted" / "dkgzsl-sort.json").exists()
                             and json.loads((tmp_path / "sorted" / "dkgzsl-sort.json").read_text()).get("complete"))
        got = {str(p.relative_to(tmp_path / "sorted")) for p in (tmp_path / "sorted").rglob("*.jpg")}
        assert got == {"cat/cat__0001.jpg", "cat/cat__0002.jpg", "cat/mystery.jpg", "espresso/espresso__0001.jpg",
                       "_low_confidence/espresso__0002.jpg", "teapot/teapot__0001.jpg"}
        assert (tmp_path / "sorted/cat/cat__0002.jpg").samefile(tmp_path / "photos/cat__0002.jpg")

    asyncio.run(run())


def test_why_of_a_photo_marked_unknown_explains_the_best_guess(results):
    """A photo marked unknown has no class to explain: the pane explains the model's best guess, not "(unknown)"."""

    async def run():
        app = browse(results)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(0.1)
            await pilot.press("n")
            row = app.current_row()
            assert row.correction == UNKNOWN
            def why() -> str:
                console = Console(width=160)
                with console.capture() as shown:
                    console.print(app.detail.query_one("#why").content)
                return shown.get()

            await wait_until(pilot, lambda: "no model" in why())
            assert row.top.name in why() and UNKNOWN not in why()

    asyncio.run(run())
