"""User mistakes end in `error: ...` and the right exit code, never a traceback, and before any work.

Covers the one CLI error path (DkgzslGroup), unwritable outputs, missing named files, non-finite
calibration, the one device parser, file modes of atomic writes and the offline download message.
"""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dkgzsl_app.classify
from dkgzsl_app.cli import app
from dkgzsl_app.devices import parse_device
from dkgzsl_app.images import ImageLoadError, load_rgb
from dkgzsl_app.models.atomic import atomic_write_bytes, check_writable_file
from dkgzsl_app.models.errors import DkgzslError, OutputError, UsageError

runner = CliRunner()
ASSETS = Path(__file__).parent / "assets"
ROOT = os.name == "posix" and os.geteuid() == 0
needs_permissions = pytest.mark.skipif(ROOT or os.name != "posix", reason="root ignores file permissions")


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts loading a model: output checks must come first."""
    def forbidden(*a, **k):
        raise AssertionError("the command started working before checking its output")

    monkeypatch.setattr(dkgzsl_app.classify, "load", forbidden)


def clean_error(r, code: int, *words: str) -> None:
    assert r.exit_code == code, (r.exit_code, r.output)
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output, r.output
    for w in words:
        assert w in r.stderr, (w, r.stderr)


# --- the one error path -------------------------------------------------------------------------------

def test_no_command_catches_dkgzsl_error_itself():
    src = (Path(__file__).parents[1] / "dkgzsl_app" / "cli.py").read_text(encoding="utf-8")
    assert "except DkgzslError" not in src


def test_library_error_through_main_is_one_line_with_its_exit_code(tmp_path):
    """`python -m dkgzsl_app` (main()), not only CliRunner: a BundleError is `error: ...`, exit 1."""
    r = subprocess.run([sys.executable, "-m", "dkgzsl_app", "evaluate", "--model", "zebra-v1", "--features",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: model 'zebra-v1'"), r.stderr
    assert "Traceback" not in r.stderr


def test_usage_error_from_the_library_exits_2(tmp_path):
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), "--device", "tpu"])
    clean_error(r, 2, "--device tpu", "cuda:N", "mps")


# --- outputs that cannot be written: refused before working --------------------------------------------

def test_classify_output_onto_a_folder(tmp_path, no_work):
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), "-o", str(tmp_path), "-f", "csv"])
    clean_error(r, 1, "is a folder", "results.csv")


@needs_permissions
def test_classify_output_into_a_read_only_folder(read_only, no_work):
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), "-o", str(read_only / "out.jsonl")])
    clean_error(r, 1, "cannot write", str(read_only))


def test_train_out_onto_a_file(tmp_path):
    (tmp_path / "run").write_text("")
    r = runner.invoke(app, ["train", "--features", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cpu"])
    clean_error(r, 1, "is a file")


@needs_permissions
def test_train_out_into_a_read_only_folder(tmp_path, read_only):
    r = runner.invoke(app, ["train", "--features", str(tmp_path), "--out", str(read_only / "run"), "--device", "cpu"])
    clean_error(r, 1, "cannot write", "run folder")


def test_evaluate_plot_onto_a_folder(tmp_path):
    r = runner.invoke(app, ["evaluate", "--features", str(tmp_path), "--plot", str(tmp_path)])
    clean_error(r, 1, "is a folder", "curve.png")


@needs_permissions
def test_evaluate_plot_into_a_read_only_folder(tmp_path, read_only):
    r = runner.invoke(app, ["evaluate", "--features", str(tmp_path), "--plot", str(read_only / "c.png")])
    clean_error(r, 1, "cannot write")


def test_demo_onto_a_file(tmp_path):
    (tmp_path / "photos").write_text("")
    clean_error(runner.invoke(app, ["demo", str(tmp_path / "photos")]), 1, "is a file")


@needs_permissions
def test_demo_into_a_read_only_folder(read_only):
    clean_error(runner.invoke(app, ["demo", str(read_only / "photos")]), 1, "cannot write", "demo folder")


def test_atomic_write_onto_a_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_bytes(tmp_path, b"x")
    with pytest.raises(OutputError, match="is a folder"):
        check_writable_file(tmp_path)


# --- wrong outcomes -----------------------------------------------------------------------------------

def test_a_missing_named_file_is_an_error_row_and_exit_3(tmp_path):
    missing = tmp_path / "nope.jpg"
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), str(missing), "--format", "json",
                            "--device", "cpu", "--workers", "0", "--no-cache"])
    assert r.exit_code == 3, r.output
    rows = {row["path"]: row for row in json.loads(r.stdout)}
    assert rows[str(ASSETS / "coffee.jpg")]["class"] and not rows[str(ASSETS / "coffee.jpg")]["error"]
    assert "no such file" in rows[str(missing)]["error"]
    assert r.stderr.count(str(missing)) == 1  # warned once, not twice


def test_api_says_no_such_file_not_corrupt(tmp_path):
    clf = dkgzsl_app.classify.load("demo-shapes", device="cpu")
    preds = clf.classify([str(tmp_path / "gone.jpg"), str(ASSETS / "coffee.jpg")], workers=0)
    assert preds[0].error == "no such file" and preds[1].top


@needs_permissions
def test_unreadable_file_says_permission_denied(tmp_path):
    p = tmp_path / "secret.jpg"
    p.write_bytes((ASSETS / "coffee.jpg").read_bytes())
    p.chmod(0)
    try:
        with pytest.raises(ImageLoadError, match="permission denied"):
            load_rgb(p)
    finally:
        p.chmod(0o600)


def test_missing_file_or_a_folder_is_not_called_corrupt(tmp_path):
    with pytest.raises(ImageLoadError, match="^no such file$"):
        load_rgb(tmp_path / "gone.jpg")
    with pytest.raises(ImageLoadError, match="a folder"):
        load_rgb(tmp_path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_calibration_is_refused(tmp_path, value):
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), "--calibration", value])
    assert r.exit_code == 2 and "finite" in r.output, r.output
    r = runner.invoke(app, ["evaluate", "--features", str(tmp_path), "--calibration", value])
    assert r.exit_code == 2 and "finite" in r.output, r.output
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), "--tui", "--calibration", value])
    assert r.exit_code == 2 and "finite" in r.output, r.output


def test_api_refuses_non_finite_calibration():
    clf = dkgzsl_app.classify.load("demo-shapes", device="cpu")
    with pytest.raises(UsageError, match="finite"):
        clf.classify([str(ASSETS / "coffee.jpg")], calibration=float("nan"), workers=0)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "new.txt", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_writes_keep_an_existing_mode_and_honour_an_explicit_one(tmp_path):
    p = tmp_path / "kept.txt"
    p.write_bytes(b"old")
    p.chmod(0o640)
    atomic_write_bytes(p, b"new")
    assert stat.S_IMODE(p.stat().st_mode) == 0o640 and p.read_bytes() == b"new"
    atomic_write_bytes(tmp_path / "secret", b"k", mode=0o600)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


# --- one device parser --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cuda:-1", "gpu", ""])
def test_device_parser_refuses_unknown_names(name):
    if name == "":
        assert parse_device(name) in ("cpu", "cuda", "mps")  # empty means auto
        return
    with pytest.raises(UsageError, match="auto, cpu, cuda, cuda:N or mps") as info:
        parse_device(name)
    assert info.value.exit_code == 2


def test_device_parser_accepts_what_it_lists():
    import torch

    assert parse_device("cpu") == "cpu" and parse_device("CPU") == "cpu"
    assert parse_device("auto") in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            parse_device("cuda:0")
    mps = getattr(torch.backends, "mps", None)
    if not (mps and mps.is_available()):
        with pytest.raises(UsageError, match="no Apple MPS"):
            parse_device("mps")
    else:
        assert parse_device("mps") == "mps"


def test_train_and_classify_share_the_device_parser(tmp_path):
    """Before, `train --device mps` said 'use auto, cpu, cuda or cuda:N' while classify accepted mps."""
    r = runner.invoke(app, ["train", "--features", str(tmp_path), "--out", str(tmp_path / "r"), "--device", "tpu"])
    clean_error(r, 2, "cuda:N or mps")
    assert dkgzsl_app.classify.pick_device("cpu") == "cpu"


# --- small truths -------------------------------------------------------------------------------------

def test_classify_help_lists_every_exit_code():
    r = runner.invoke(app, ["classify", "--help"])
    for code in ("0 all", "1 the", "2 a bad", "3 some", "4 no"):
        assert code in " ".join(r.stdout.split()), code


def test_offline_download_error_does_not_advise_the_same_command():
    r = runner.invoke(app, ["models", "download", "hf-hub:acme/absent", "--offline"])
    clean_error(r, 1, "--offline", "without --offline")
    assert "models download" not in r.stderr


def test_dkgzsl_errors_carry_exit_codes():
    assert DkgzslError().exit_code == 1 and UsageError().exit_code == 2 and OutputError().exit_code == 1


def test_unwritable_output_refused_even_as_root(tmp_path, monkeypatch, no_work):
    """The permission tests above skip as root; here the folder's refusal is simulated at the probe."""
    import dkgzsl_app.models.atomic as atomic

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), "-o", str(tmp_path / "out.csv")])
    clean_error(r, 1, "cannot write", "Permission denied")
    for args in (["demo", str(tmp_path / "d")], ["evaluate", "--features", str(tmp_path), "--plot", str(tmp_path / "c.png")],
                 ["train", "--features", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cpu"]):
        clean_error(runner.invoke(app, args), 1, "cannot write", "Permission denied")


# --- one training configuration -----------------------------------------------------------------------

def test_train_option_defaults_are_train_config_defaults():
    import typer.main

    from dkgzsl_app.trainer.config import TrainConfig

    from dkgzsl_app.trainer.methods import recommended

    cfg, checked = TrainConfig(), 0
    method_decides = {"batch_size"}  # None: the method's own default (MSDN: 50), else TrainConfig's
    for p in typer.main.get_command(app).commands["train"].params:
        if hasattr(cfg, p.name):
            default = getattr(p.default, "value", p.default)
            if p.name in method_decides:
                assert default is None and recommended("d3gzsl").get(p.name, getattr(cfg, p.name)) == 256
                assert recommended("msdn")[p.name] == 50
            else:
                assert default == getattr(cfg, p.name), p.name
            checked += 1
    assert checked >= 15


def test_train_defaults_are_read_from_the_dataclass_not_copied():
    """Change a TrainConfig default before the CLI is imported: `train --help` follows it."""
    code = ("from dkgzsl_app.trainer.config import TrainConfig; "
            "TrainConfig.__dataclass_fields__['epochs'].default = 777; "
            "import typer.main; from dkgzsl_app.cli import app; "
            "p = [p for p in typer.main.get_command(app).commands['train'].params if p.name == 'epochs'][0]; "
            "print(p.default)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "777"


# --- progress on long work ----------------------------------------------------------------------------

def test_photo_progress_is_quiet_off_a_terminal():
    from dkgzsl_app.progress import photo_progress

    with photo_progress(10_000, "extracting features", min_total=1) as tick:
        assert tick is None  # pytest's stderr is not a terminal


def test_evaluate_images_reports_extraction_progress(tmp_path, monkeypatch):
    import contextlib

    import dkgzsl_app.cli as cli

    calls = []

    @contextlib.contextmanager
    def recording(total, label="classifying", min_total=64):
        calls.append([label, total, 0])
        yield lambda n: calls[-1].__setitem__(2, calls[-1][2] + n)

    monkeypatch.setattr(cli, "photo_progress", recording)
    assert runner.invoke(app, ["demo", str(tmp_path / "photos"), "--per-class", "1"]).exit_code == 0
    n = len(list((tmp_path / "photos").iterdir()))
    r = runner.invoke(app, ["evaluate", "--model", "demo-shapes", "--images", str(tmp_path / "photos"), "--json"])
    assert r.exit_code == 0, r.output
    assert calls == [["extracting features", n, n]]


def test_training_extraction_reports_progress(tmp_path, monkeypatch):
    """feature_set_from_images (train --images) opens progress(total) and ticks every photo."""
    import torch

    import dkgzsl_app.extract as extract
    from dkgzsl_app.image_data import feature_set_from_images

    for c in ("a", "b", "c"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "photos" / c / f"{i}.jpg").write_bytes(b"")
    (tmp_path / "classes.csv").write_text("name,x,y\na,1,0\nb,0,1\nc,1,1\nd,0,0\n")

    def fake(backbone, paths, device, batch_size, workers, cache, on_batch, *precision_and_layout, **options):
        for start in range(0, len(paths), 4):
            on_batch(len(paths[start:start + 4]))
        return extract.Extracted(features={i: torch.zeros(2) for i in range(len(paths))})

    monkeypatch.setattr(extract, "extract_cached", fake)
    seen = []

    def progress(total):
        import contextlib

        seen.append([total, 0])
        return contextlib.nullcontext(lambda n: seen[-1].__setitem__(1, seen[-1][1] + n))

    fs = feature_set_from_images(tmp_path / "photos", tmp_path / "classes.csv", backbone=None, progress=progress)
    assert seen == [[9, 9]] and len(fs.labels) == 9


def test_train_science_options_reach_the_config(tmp_path, monkeypatch):
    """--final-length/--final-gamma/--ood-score/--energy-norm/--g-od-real map onto TrainConfig."""
    import dkgzsl_app.trainer.train as train_mod

    seen = {}

    def fake_train_bundle(fs, cfg, out, **kw):
        seen["cfg"] = cfg
        raise train_mod.DataError("stop here")  # a DkgzslError: the CLI's one error path ends the command

    monkeypatch.setattr(train_mod, "train_bundle", fake_train_bundle)
    from dkgzsl_app.trainer.data import save_feature_folder
    from dkgzsl_app.trainer.synthetic import make_feature_set

    feats = tmp_path / "feats"
    save_feature_folder(make_feature_set(), feats)
    result = CliRunner().invoke(app, ["train", "--features", str(feats), "--out", str(tmp_path / "run"),
                                      "--final-length", "iterations", "--final-gamma", "seen_rate",
                                      "--ood-score", "energy", "--energy-norm", "none", "--g-od-real"])
    assert result.exit_code == 1 and "stop here" in result.output
    cfg = seen["cfg"]
    assert (cfg.final_length, cfg.final_gamma, cfg.ood_score, cfg.energy_norm, cfg.g_od_real) == (
        "iterations", "seen_rate", "energy", "none", True)


def test_train_refuses_seen_rate_gamma_without_validation(tmp_path):
    result = CliRunner().invoke(app, ["train", "--features", str(tmp_path), "--out", str(tmp_path / "run"),
                                      "--final-gamma", "seen_rate", "--select", "none"])
    assert result.exit_code == 2 and "select" in result.output
