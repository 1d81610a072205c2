"""The command line through Typer's CliRunner (and one subprocess, to see what --help imports)."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import make_feature_set
from dkgzsl_app import __version__
from dkgzsl_app.cli import app
from dkgzsl_app.trainer.data import save_feature_folder

runner = CliRunner()
TINY = ["--epochs", "2", "--teacher-epochs", "2", "--batch-size", "32", "--hidden-dim", "32",
        "--embed-dim", "16", "--critic-steps", "2", "--device", "cpu"]


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"dkgzsl {__version__}"


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from dkgzsl_app.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "assert 'train' in r.output; heavy = [m for m in ('torch', 'timm', 'textual', 'scipy') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    path = tmp_path_factory.mktemp("features")
    save_feature_folder(make_feature_set(n_classes=20, n_unseen=5), path)
    return path


def test_train_then_evaluate(features, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--features", str(features), "--out", str(out), "--json", *TINY])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["bundle"] == str(out / "bundle") and 1 <= result["selected_epoch"] <= 2
    png = tmp_path / "curve.png"
    r = runner.invoke(app, ["evaluate", "--model", f"local-dir:{out / 'bundle'}", "--features", str(features),
                            "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    assert {"U", "S", "H", "CZSL", "AUSUC"} <= set(metrics) and 0 <= metrics["H"] <= 1
    o = metrics["open_set"]  # train fitted a threshold: what it costs on the test split
    assert o["score"] == "prototype" and 0 <= o["flagged_seen"] <= 1 and 0 <= o["flagged_unseen"] <= 1
    assert o["S"] <= metrics["S"] + 1e-9 and o["U"] <= metrics["U"] + 1e-9
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["evaluate", "--model", str(out / "bundle"), "--features", str(features)])
    assert r.exit_code == 0 and "CZSL" in r.stdout and "γ = 0" in r.stdout
    flat = " ".join(r.stdout.split())
    assert "unknown = wrong" in flat and "flagged unknown (prototype <" in flat


def test_train_refuses_existing_run_without_resume(features, tmp_path):
    args = ["train", "--features", str(features), "--out", str(tmp_path), "--select", "none", *TINY]
    assert runner.invoke(app, args).exit_code == 0
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "--resume" in r.output and "Traceback" not in r.output
    assert runner.invoke(app, [*args, "--resume"]).exit_code == 0


def test_missing_features_folder_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["train", "--features", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 1 and "no such folder" in r.output and "Traceback" not in r.output


def test_empty_features_folder_says_what_is_expected(tmp_path):
    r = runner.invoke(app, ["train", "--features", str(tmp_path), "--out", str(tmp_path / "run"), *TINY])
    assert r.exit_code == 1 and "att_splits.mat" in r.output


def test_bad_option_values(features, tmp_path):
    r = runner.invoke(app, ["train", "--features", str(features), "--out", str(tmp_path), "--batch-size", "0"])
    assert r.exit_code == 2 and "--batch-size" in r.output
    r = runner.invoke(app, ["train", "--features", str(features), "--out", str(tmp_path), "--device", "tpu"])
    assert r.exit_code == 2 and "--device tpu" in r.output


def test_evaluate_bad_model(features, tmp_path):
    r = runner.invoke(app, ["evaluate", "--model", "zebra-v1", "--features", str(features)])
    assert r.exit_code == 1 and "local-dir:" in r.output
    (tmp_path / "config.json").write_text("{}")
    r = runner.invoke(app, ["evaluate", "--model", f"local-dir:{tmp_path}", "--features", str(features)])
    assert r.exit_code == 1 and "format version" in r.output
