"""dkgzsl sort: filing photos by class (copy, link, move), clashes, dry run, undo, interrupted runs."""
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dkgzsl_app import sort as sorting
from dkgzsl_app.cli import app

from tui_helpers import ROWS, write_results

runner = CliRunner()

# with min-confidence 0.5: cat__0002 (teapot 0.44) and espresso__0002 (teapot 0.38) are low confidence
EXPECTED = {"cat/cat__0001.jpg", "_low_confidence/cat__0002.jpg", "espresso/espresso__0001.jpg",
            "_low_confidence/espresso__0002.jpg", "teapot/teapot__0001.jpg", "cat/mystery.jpg"}


@pytest.fixture
def photos(tmp_path):
    """Six small files with distinct bytes (sort never decodes them) and their results file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (name, _) in enumerate(ROWS):
        (folder / name).write_bytes(f"photo {i} {name}".encode() * (i + 1))
    return folder, write_results(tmp_path / "preds.jsonl", folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name → bytes), the manifest left out."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != sorting.MANIFEST}


def filed(into: Path) -> set[str]:
    return set(snapshot(into)) if into.exists() else set()


def sort_cli(*args):
    return runner.invoke(app, ["sort", *map(str, args)])


@pytest.mark.parametrize("mode", ["copy", "link", "move"])
def test_sort_files_by_class_and_undo_restores_names_and_bytes(photos, tmp_path, mode):
    folder, results = photos
    before = snapshot(folder)
    into = tmp_path / "sorted"
    r = sort_cli(results, "--into", into, f"--{mode}")
    assert r.exit_code == 0, r.output
    assert filed(into) == EXPECTED
    got = snapshot(into)
    for rel in EXPECTED:
        assert got[rel] == before[Path(rel).name]
    if mode == "move":
        assert snapshot(folder) == {}
    else:
        assert snapshot(folder) == before
    if mode == "link":
        assert os.path.samefile(into / "cat/cat__0001.jpg", folder / "cat__0001.jpg")
    manifest = json.loads((into / sorting.MANIFEST).read_text())
    assert manifest["complete"] and {e["status"] for e in manifest["entries"]} == {"done"}

    r = sort_cli("--undo", into / sorting.MANIFEST)
    assert r.exit_code == 0, r.output
    assert "restored 6 photos" in r.output
    assert snapshot(folder) == before  # names and bytes
    assert sorted(p.name for p in into.iterdir()) == [sorting.MANIFEST]  # the class folders are gone


def test_corrections_win_and_unknown_and_errors_get_their_folders(photos, tmp_path):
    folder, results = photos
    (folder / "broken.jpg").write_bytes(b"not a photo")
    with results.open("a") as fh:
        fh.write(json.dumps({"path": str(folder / "broken.jpg"), "top_k": [], "error": "cannot read"}) + "\n")
    # the browser's autosave beside the results file: a correction, a confirmation, and "unknown"
    (tmp_path / "preds.corrections.json").write_text(json.dumps({"format": "dkgzsl-corrections/1", "corrections": {
        str(folder / "cat__0002.jpg"): "cat", str(folder / "espresso__0002.jpg"): "teapot",
        str(folder / "mystery.jpg"): sorting.UNKNOWN}}))
    into = tmp_path / "sorted"
    r = sort_cli(results, "--into", into)
    assert r.exit_code == 0, r.output
    assert filed(into) == {"cat/cat__0001.jpg", "cat/cat__0002.jpg", "espresso/espresso__0001.jpg",
                           "teapot/espresso__0002.jpg", "teapot/teapot__0001.jpg", "_unknown/mystery.jpg",
                           "_unreadable/broken.jpg"}


def test_min_confidence_zero_files_everything_by_class_and_unknown_field_is_honoured(photos, tmp_path):
    folder, results = photos
    from dkgzsl_app.output import read_predictions

    preds, _ = read_predictions(results)
    preds[0].unknown = True  # open-set rejection (issue 16) marks a prediction unknown
    res = sorting.sort_photos(results, tmp_path / "s", min_confidence=0.0, preds=preds, corrections={})
    assert res.counts == {"_unknown": 1, "cat": 1, "espresso": 1, "teapot": 3}


def test_name_clashes_get_suffixes_and_nothing_is_overwritten(photos, tmp_path):
    folder, results = photos
    into = tmp_path / "sorted"
    (into / "cat").mkdir(parents=True)
    (into / "cat" / "cat__0001.jpg").write_bytes(b"already here")
    (into / "cat" / "cat__0001-2.jpg").write_bytes(b"this too")
    # a second photo of the same name from another folder, predicted cat as well
    other = tmp_path / "other"
    other.mkdir()
    (other / "cat__0001.jpg").write_bytes(b"another cat")
    lines = results.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["path"] = str(other / "cat__0001.jpg")
    results.write_text("\n".join(lines + [json.dumps(rec)]) + "\n")
    assert sort_cli(results, "--into", into).exit_code == 0
    got = snapshot(into)
    assert got["cat/cat__0001.jpg"] == b"already here" and got["cat/cat__0001-2.jpg"] == b"this too"
    assert got["cat/cat__0001-3.jpg"] == (folder / "cat__0001.jpg").read_bytes()
    assert got["cat/cat__0001-4.jpg"] == b"another cat"
    # undo removes what the sort made and nothing else
    assert sort_cli("--undo", into).exit_code == 0
    assert snapshot(into) == {"cat/cat__0001.jpg": b"already here", "cat/cat__0001-2.jpg": b"this too"}


def test_dry_run_touches_nothing(photos, tmp_path):
    folder, results = photos
    before = snapshot(folder)
    into = tmp_path / "sorted"
    r = sort_cli(results, "--into", into, "--move", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "would file 6 photos" in r.output and "_low_confidence 2" in r.output
    assert f"{folder / 'teapot__0001.jpg'} -> {into / 'teapot' / 'teapot__0001.jpg'}" in r.output
    assert not into.exists() and snapshot(folder) == before


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_an_interrupted_sort_is_finished_by_running_it_again(photos, tmp_path, monkeypatch, mode):
    folder, results = photos
    before = snapshot(folder)
    into = tmp_path / "sorted"
    real, calls = sorting.file_one, []

    def dies_after_three(e, root):
        if len(calls) == 3:  # a crash (power, kill -9) in the middle of the run: no last manifest save
            monkeypatch.setattr(sorting, "save_manifest", lambda *a: None)
            raise KeyboardInterrupt
        calls.append(e.source)
        return real(e, root)

    monkeypatch.setattr(sorting, "file_one", dies_after_three)
    monkeypatch.setattr(sorting, "SAVE_EVERY", 2)  # so the manifest on disk lags one filed photo behind
    with pytest.raises(KeyboardInterrupt):
        sorting.sort_photos(results, into, mode)
    manifest = json.loads((into / sorting.MANIFEST).read_text())
    assert not manifest["complete"] and len(manifest["entries"]) == 6  # the whole plan was written first
    # the manifest lags behind the disk: 2 recorded done, 3 filed
    assert [e["status"] for e in manifest["entries"]].count("done") == 2
    assert len(filed(into)) == 3
    monkeypatch.undo()

    r = sort_cli(results, "--into", into, f"--{mode}")
    assert r.exit_code == 0, r.output
    assert filed(into) == EXPECTED  # each photo once: nothing filed twice under a suffix
    assert "filed before" in r.output
    manifest = json.loads((into / sorting.MANIFEST).read_text())
    assert manifest["complete"] and {e["status"] for e in manifest["entries"]} == {"done"}
    # running it a third time does nothing
    r = sort_cli(results, "--into", into, f"--{mode}")
    assert r.exit_code == 0 and "0 photos" in r.output and filed(into) == EXPECTED
    assert sort_cli("--undo", into).exit_code == 0
    assert snapshot(folder) == before


def test_an_interrupted_undo_is_finished_by_running_it_again(photos, tmp_path, monkeypatch):
    folder, results = photos
    before = snapshot(folder)
    into = tmp_path / "sorted"
    sorting.sort_photos(results, into, "move")
    real, calls = sorting.undo_one, []

    def dies(e, root):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(e, root)

    monkeypatch.setattr(sorting, "undo_one", dies)
    with pytest.raises(KeyboardInterrupt):
        sorting.undo_sort(into / sorting.MANIFEST)
    monkeypatch.undo()
    res = sorting.undo_sort(into / sorting.MANIFEST)
    assert res.restored + res.already == 6 and not res.kept
    assert snapshot(folder) == before


def test_undo_keeps_a_copy_changed_since_and_says_so(photos, tmp_path):
    folder, results = photos
    into = tmp_path / "sorted"
    sorting.sort_photos(results, into, "copy")
    (into / "teapot/teapot__0001.jpg").write_bytes(b"edited")
    r = sort_cli("--undo", into)
    assert r.exit_code == 3
    assert "changed since sorting" in r.output
    assert filed(into) == {"teapot/teapot__0001.jpg"}


def test_sort_usage_errors(photos, tmp_path):
    folder, results = photos
    assert sort_cli(results).exit_code == 2
    assert sort_cli(results, "--into", tmp_path / "s", "--copy", "--move").exit_code == 2
    assert sort_cli(results, "--into", tmp_path / "s", "--min-confidence", "2").exit_code == 2
    r = sort_cli("--undo", tmp_path / "nowhere.json")
    assert r.exit_code == 1 and "no sort manifest" in r.output


def test_rerunning_a_move_with_paths_relative_to_the_results_file_files_nothing_twice(photos, tmp_path, monkeypatch):
    folder, _ = photos
    results = write_results(tmp_path / "rel.jsonl", Path("photos"))  # relative paths: photos/<name>
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the paths resolve beside the results file, not here
    into = tmp_path / "sorted"
    assert sort_cli(results, "--into", into, "--move").exit_code == 0
    assert filed(into) == EXPECTED and snapshot(folder) == {}
    r = sort_cli(results, "--into", into, "--move")  # the sources are gone now: not "missing", just done
    assert r.exit_code == 0 and "0 photos" in r.output, r.output
