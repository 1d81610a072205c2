"""dkgzsl add-class and dkgzsl classes through CliRunner: bad CSVs one by one, export round trips."""
import json

import pytest
from typer.testing import CliRunner

from dkgzsl_app.cli import app

from userclass_helpers import tiny_bundle, write_csv

pytestmark = pytest.mark.filterwarnings("ignore:.*generated features")
runner = CliRunner()
HEADER = "name,furry,hot,ceramic,size\n"


@pytest.fixture
def model(tmp_path):
    return f"local-dir:{tiny_bundle(tmp_path / 'bundle')}"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def add(model, path):
    return cli("add-class", "--attributes", path, "--model", model)


def user_classes(model):
    r = cli("classes", "list", "--user", "--json", "--model", model)
    assert r.exit_code == 0, r.output
    return [row["name"] for row in json.loads(r.stdout)]


def test_add_list_show_rename_remove(model, tmp_path):
    path = write_csv(tmp_path / "new.csv", HEADER + "hot_cat,1,1,0,0.5\nbig_pot,0,1,1,1\n")
    r = add(model, path)
    assert r.exit_code == 0, r.output
    assert "added 2 classes" in r.stdout and "hot_cat, big_pot" in r.stdout
    r = cli("classes", "list", "--model", model, "--json")
    rows = json.loads(r.stdout)
    assert rows[0] == {"name": "cat", "origin": "seen"} and rows[-1] == {"name": "big_pot", "origin": "user"}
    assert len(rows) == 7
    r = cli("classes", "show", "big_pot", "--model", model, "--json")
    assert json.loads(r.stdout) == {"name": "big_pot", "origin": "user",
                                    "attributes": {"furry": 0.0, "hot": 1.0, "ceramic": 1.0, "size": 1.0}}
    r = cli("classes", "show", "hot_kat", "--model", model)
    assert r.exit_code == 1 and "did you mean 'hot_cat'" in r.stderr
    assert cli("classes", "rename", "hot_cat", "warm_cat", "--model", model).exit_code == 0
    assert user_classes(model) == ["warm_cat", "big_pot"]
    r = cli("classes", "remove", "warm_cat", "big_pot", "--model", model)
    assert r.exit_code == 0 and user_classes(model) == []
    assert "no user classes" in cli("classes", "list", "--user", "--model", model).stdout


def test_from_class_with_set(model):
    r = cli("add-class", "--from-class", "cat", "--name", "hot_cat", "--set", "hot=1", "--set", "size=0.9",
            "--model", model, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == ["hot_cat"]
    shown = json.loads(cli("classes", "show", "hot_cat", "--model", model, "--json").stdout)["attributes"]
    assert shown == {"furry": 1.0, "hot": 1.0, "ceramic": 0.0, "size": pytest.approx(0.9)}
    r = cli("add-class", "--from-class", "cat", "--set", "hot=1", "--model", model)
    assert r.exit_code == 2 and "--name" in r.stderr
    r = cli("add-class", "--from-class", "cat", "--name", "x", "--set", "hott=1", "--model", model)
    assert r.exit_code == 1 and "did you mean 'hot'" in r.stderr
    r = cli("add-class", "--from-class", "kat", "--name", "x", "--model", model)
    assert r.exit_code == 1 and "did you mean 'cat'" in r.stderr
    r = cli("add-class", "--from-class", "cat", "--name", "x", "--set", "hot", "--model", model)
    assert r.exit_code == 2 and "ATTRIBUTE=VALUE" in r.stderr


def test_export_round_trip(model, tmp_path):
    add(model, write_csv(tmp_path / "new.csv", HEADER + "hot_cat,1,1,0,0.123456789\nb,0.3,0.1,1,0.7\n"))
    out = tmp_path / "user.csv"
    assert cli("classes", "export", "--user-only", "--output", out, "--model", model).exit_code == 0
    exported = out.read_bytes()
    assert exported.startswith(b"name,origin,furry,hot,ceramic,size\nhot_cat,user,")
    manifest = lambda: next((tmp_path / "dkgzsl-home" / "data" / "classes").glob("*/manifest.json")).read_text()  # noqa: E731
    state = manifest()
    assert cli("classes", "remove", "hot_cat", "b", "--model", model).exit_code == 0
    r = add(model, out)
    assert r.exit_code == 0, r.output
    assert manifest() == state  # the same classes, values and head (hashes) as before
    r = cli("classes", "export", "--user-only", "--model", model)
    assert r.stdout.encode() == exported
    everything = tmp_path / "all.csv"
    cli("classes", "export", "-o", everything, "--model", model)
    r = add(model, everything)  # the whole model read back: nothing new
    assert r.exit_code == 0 and "nothing to add" in r.stdout, r.output
    assert "already a user class with the same values" in r.stderr
    assert manifest() == state


# one bad file per case: (file text or bytes, encoding, what the error must say)
BAD = {
    "unknown attribute": (HEADER.replace("furry", "furyy") + "x,1,1,0,0.5\n",
                          "row 1 \\(header\\): unknown column 'furyy' \\(did you mean 'furry'\\?\\)"),
    "missing attribute": ("name,furry,hot,ceramic\nx,1,1,0\n", "missing column\\(s\\) 'size'"),
    "non-numeric": (HEADER + "x,1,warm,0,0.5\n", "row 2, column 'hot' \\(C\\): 'warm' is not a number"),
    "NaN": (HEADER + "x,1,1,nan,0.5\n", "row 2, column 'ceramic' \\(D\\): 'nan' is not a finite number"),
    "inf": (HEADER + "ok,0,0,0,0\nx,1,1,0,-inf\n", "row 3, column 'size' \\(E\\): '-inf' is not a finite number"),
    "out of range": (HEADER + "x,1,1,0,2.5\n", "row 2, column 'size' \\(E\\): 2.5 is out of range.*span 0 to 1; "
                     "values from -0.1 to 1.1 are accepted \\(10% slack on each side\\)"),
    "blank cell": (HEADER + "x,1,,0,0.5\n", "row 2, column 'hot' \\(C\\) is blank"),
    "duplicate in file": (HEADER + "x,1,1,0,0.5\ny,0,0,1,0.5\nx,0,1,0,0.5\n",
                          "row 4: class name 'x' is already used in row 2"),
    "clash with built-in": (HEADER + "teapot,1,1,0,0.5\n", "row 2: 'teapot' is a built-in \\(unseen\\) class"),
    "empty file": ("", "the file is empty"),
    "header only": (HEADER, "no class rows follow"),
    "latin-1": (HEADER + "café,1,1,0,0.5\n", "row 2 contains bytes that are not UTF-8.*CSV UTF-8"),
    "UTF-16": (HEADER + "x,1,1,0,0.5\n", "UTF-16 encoded.*CSV UTF-8"),
    "tab separated": (HEADER.replace(",", "\t") + "x\t1\t1\t0\t0.5\n", "tab-separated"),
    "wrong origin": ("name,origin,furry,hot,ceramic,size\nx,seen,1,1,0,0.5\n",
                     "row 2: origin 'seen', but 'x' is not one of this model's seen classes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_csv(model, tmp_path, case):
    text, pattern = BAD[case]
    encoding = {"latin-1": "latin-1", "UTF-16": "utf-16"}.get(case, "utf-8")
    path = write_csv(tmp_path / "bad classes.csv", text, encoding)
    r = add(model, path)
    assert r.exit_code == 1, r.output
    assert str(path) in r.stderr and "Traceback" not in r.output
    import re

    assert re.search(pattern, " ".join(r.stderr.split())), r.stderr
    assert user_classes(model) == []


def test_clash_with_existing_user_class(model, tmp_path):
    add(model, write_csv(tmp_path / "a.csv", HEADER + "x,1,1,0,0.5\n"))
    r = add(model, write_csv(tmp_path / "b.csv", HEADER + "x,0,1,1,0.5\n"))
    assert r.exit_code == 1 and "b.csv: row 2: 'x' is already a user class" in r.stderr
    assert "dkgzsl classes remove x" in r.stderr


@pytest.mark.parametrize("text", [
    "\ufeff" + HEADER + "x,1,1,0,0.5\n",  # Excel's UTF-8 BOM
    "name;furry;hot;ceramic;size\nx;1;1;0;0,5\n",  # decimal-comma locales: ';' and ','
    "size,ceramic,hot,furry,name\n0.5,0,1,1,x\n",  # any column order
])
def test_accepted_variants(model, tmp_path, text):
    r = add(model, write_csv(tmp_path / "ok.csv", text))
    assert r.exit_code == 0, r.output
    shown = json.loads(cli("classes", "show", "x", "--model", model, "--json").stdout)["attributes"]
    assert shown == {"furry": 1.0, "hot": 1.0, "ceramic": 0.0, "size": 0.5}


def test_identical_vector_is_a_warning(model, tmp_path):
    r = add(model, write_csv(tmp_path / "same.csv", HEADER + "kitty,1,0,0,0.5\n"))
    assert r.exit_code == 0 and "warning" in r.stderr and "same attribute values as 'cat'" in r.stderr
    assert user_classes(model) == ["kitty"]


def test_option_errors(model, tmp_path):
    assert cli("add-class", "--model", model).exit_code == 2
    r = cli("add-class", "--attributes", tmp_path / "nope.csv", "--model", model)
    assert r.exit_code == 1 and "nope.csv: file not found" in r.stderr
    r = cli("classes", "remove", "cat", "--model", model)
    assert r.exit_code == 1 and "only user classes can be removed" in r.stderr


def advised_command(stderr: str) -> list[str]:
    """The `dkgzsl ...` command an error message advises, as CliRunner arguments."""
    import re
    import shlex

    found = re.search(r"`dkgzsl (classes repair[^`]*)`", " ".join(stderr.split()))
    assert found, stderr
    return shlex.split(found.group(1))


def tamper_table(model):
    from pathlib import Path

    from dkgzsl_app.classes.registry import registry_dir
    from dkgzsl_app.models.bundle import load_bundle

    folder = registry_dir(load_bundle(Path(model.removeprefix("local-dir:"))).config.weights_sha256)
    table = next(folder.glob("classes-*.csv"))
    table.write_text(table.read_text().replace("big_pot,user,0,1,1,1", "big_pot,user,0,1,1,0.9"))
    return table


def test_a_hand_edited_registry_is_not_a_dead_end(model, tmp_path):
    """Defect 4: the advice after a hand edit (then `classes remove`) failed with the same error."""
    assert add(model, write_csv(tmp_path / "new.csv", HEADER + "hot_cat,1,1,0,0.5\nbig_pot,0,1,1,1\n")).exit_code == 0
    table = tamper_table(model)
    r = cli("classes", "list", "--model", model)
    assert r.exit_code == 1 and "does not match the sha256" in r.stderr and "Traceback" not in r.output
    args = advised_command(r.stderr)
    assert args == ["classes", "repair", "--model", model]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert "kept 1 user class: hot_cat" in r.stdout and "big_pot" in r.stdout and "moved to" in r.stdout
    assert user_classes(model) == ["hot_cat"]
    aside = [p for p in table.parent.iterdir() if p.name.startswith("set-aside-")]
    assert len(aside) == 1 and "big_pot,user,0,1,1,0.9" in (aside[0] / table.name).read_text()
    r = cli("classes", "repair", "--model", model, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["set_aside"] is None
    r = cli("classes", "remove", "hot_cat", "--model", model)
    assert r.exit_code == 0 and user_classes(model) == []


def test_classify_on_a_hand_edited_registry_advises_a_repair_that_works(tmp_path):
    from tui_helpers import make_bundle, make_photos

    model = f"local-dir:{make_bundle(tmp_path / 'photo-bundle')}"
    photo = str(make_photos(tmp_path / "photos")[0])
    r = cli("add-class", "--from-class", "cat", "--name", "big_pot", "--set", "hot=1", "--model", model)
    assert r.exit_code == 0, r.output
    from dkgzsl_app.classes.registry import registry_dir
    from dkgzsl_app.models.bundle import load_bundle

    folder = registry_dir(load_bundle(tmp_path / "photo-bundle").config.weights_sha256)
    table = next(folder.glob("classes-*.csv"))
    table.write_text(table.read_text() + "\n")  # any edit by hand
    args = ["classify", photo, "--model", model, "--device", "cpu", "--format", "json", "--no-cache"]
    r = cli(*args)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "classes remove" not in r.stderr  # the old advice, which failed with the same error
    r = cli(*advised_command(r.stderr))
    assert r.exit_code == 0 and "kept 1 user class: big_pot" in r.stdout, r.output
    r = cli(*args)
    assert r.exit_code == 0, r.output


def test_show_prints_the_shortest_float32_text(model, tmp_path):
    add(model, write_csv(tmp_path / "x.csv", HEADER + "x,0.3,1,0,0.1\n"))
    r = cli("classes", "show", "x", "--model", model)
    assert "0.300000012" not in r.stdout and r.stdout.split() == ["x", "(user)", "furry", "0.3", "hot", "1.0",
                                                                   "ceramic", "0.0", "size", "0.1"]
    assert json.loads(cli("classes", "show", "x", "--model", model, "--json").stdout)["attributes"]["furry"] == 0.3


def test_missing_column_message_says_origin_is_optional(model, tmp_path):
    r = add(model, write_csv(tmp_path / "x.csv", "name,furry,hot,ceramic\nx,1,1,0\n"))
    assert r.exit_code == 1 and "missing column(s) 'size'" in r.stderr
    text = " ".join(r.stderr.split())
    assert "exactly name, optionally origin, and the model's 4 attributes" in text


def test_too_many_rows_are_refused_at_once(model, tmp_path, monkeypatch):
    """Defect 1: a 10,000-row add-class tried to allocate 34 GB and died after 2 silent minutes."""
    import dkgzsl_app.classes.refit as refit
    from dkgzsl_app.classes.validate import MAX_USER_CLASSES

    monkeypatch.setattr(refit, "fit_user_rows", lambda *a, **k: pytest.fail("fitted before the limit check"))
    rows = "".join(f"c{i},{(i % 97) / 97},{(i // 97) / 97},0,0.5\n" for i in range(MAX_USER_CLASSES + 1))
    r = add(model, write_csv(tmp_path / "many.csv", HEADER + rows))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{MAX_USER_CLASSES + 1} new classes would make {MAX_USER_CLASSES + 1} user classes; a model can have " \
           f"at most {MAX_USER_CLASSES}" in " ".join(r.stderr.split())
