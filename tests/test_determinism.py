"""Reproducible training (issue 20): the conditions a byte-identical rebuild needs are pinned where torch
allows (deterministic algorithms, a fixed training thread count) and recorded; what holds otherwise is the
accuracy tolerance the model card states."""
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_feature_set, tiny_config
from dkgzsl_app.cli import app
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.trainer.determinism import conditions, deterministic_training
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.train import TRAIN_THREADS, train_bundle

runner = CliRunner()
CARD = Path(__file__).parents[1] / "models" / "pretrained" / "demo-shapes" / "README.md"


@pytest.fixture(scope="module")
def data():
    """Wide features (EfficientNet-lite0's 1280): there 1 and 2 threads round differently (measured on
    AVX512; the 64-wide default set gives the same bits either way)."""
    return make_feature_set(n_classes=10, n_unseen=3, dim=1280, per_class=20)


def small(**overrides):
    return tiny_config(**{"epochs": 2, "teacher_epochs": 2, **overrides})


def provenance(out):
    return json.loads((out.bundle_dir / "config.json").read_text())["provenance"]


def sha(out):
    return json.loads((out.bundle_dir / "config.json").read_text())["weights_sha256"]


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_deterministic_training_pins_and_restores(restore_threads):
    torch.set_num_threads(2)
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_training(1) as rec:
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert rec["threads"] == 1 and rec["deterministic"] is True
        assert rec["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert rec["torch"] == torch.__version__
    assert torch.get_num_threads() == 2 and torch.are_deterministic_algorithms_enabled() == before
    with pytest.raises(ValueError, match="threads"):
        with deterministic_training(-1):
            pass


def test_kernel_environment_is_recorded(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    assert conditions()["kernel_env"] == {"MKL_CBWR": "AVX2"}


def test_bytes_do_not_depend_on_the_machines_thread_setting(data, tmp_path, restore_threads):
    """Before: training used torch's default thread count (the machine's cores), and 1 and 2 threads give
    different float32 bits. Now the run's thread count is its own: the caller's setting does not leak in."""
    cfg = small(select="none")
    torch.set_num_threads(2)
    a = train_bundle(data, cfg, tmp_path / "a", threads=1)
    assert torch.get_num_threads() == 2  # given back
    torch.set_num_threads(1)
    b = train_bundle(data, cfg, tmp_path / "b", threads=1)
    assert sha(a) == sha(b)
    p = provenance(a)
    assert (p["threads"], p["deterministic"], p["cpu_capability"]) == (1, True, conditions()["cpu_capability"])
    assert TRAIN_THREADS == 2  # the count the bundled demo model was built with (its card says so)


def test_other_thread_count_within_the_stated_tolerance(data, tmp_path):
    """1 vs 2 threads: the bytes may differ (the provenance says which), the accuracy does not beyond noise."""
    cfg = small(epochs=1, select="none")
    one = train_bundle(data, cfg, tmp_path / "one", threads=1)
    two = train_bundle(data, cfg, tmp_path / "two", threads=2)
    assert provenance(one)["threads"] == 1 and provenance(two)["threads"] == 2
    m1 = evaluate_bundle(load_bundle(one.bundle_dir), data)
    m2 = evaluate_bundle(load_bundle(two.bundle_dir), data)
    for k in ("S", "U", "H"):
        assert abs(m1[k] - m2[k]) <= 0.1, (k, m1, m2)  # ~100 test images: one is 1-3 points


def test_cli_trains_with_two_threads_unless_told(tmp_path, restore_threads):
    from dkgzsl_app.trainer.data import save_feature_folder

    feats = tmp_path / "f"
    save_feature_folder(make_feature_set(n_classes=12, n_unseen=4), feats)
    base = ["train", "--features", str(feats), "--epochs", "1", "--teacher-epochs", "1", "--hidden-dim", "32",
            "--embed-dim", "16", "--batch-size", "32", "--select", "none", "--device", "cpu", "--json"]
    runs = {}
    for name, extra in (("default", []), ("one", ["--threads", "1"])):
        r = runner.invoke(app, [*base, "--out", str(tmp_path / name), *extra])
        assert r.exit_code == 0, r.output
        runs[name] = json.loads((tmp_path / name / "bundle" / "config.json").read_text())["provenance"]
    assert runs["default"]["threads"] == 2 and runs["one"]["threads"] == 1
    card = (tmp_path / "default" / "bundle" / "README.md").read_text()
    assert "byte-identical" in card and "threads: 2" in card


def test_shipped_card_states_the_conditions_and_the_tolerance():
    card = " ".join(CARD.read_text().split())
    assert "byte for byte (`runs/demo-shapes" not in card  # the old, unconditional promise
    for needed in ("only under the conditions", "torch 2.14.1", "AVX512", "2 training threads", "--threads",
                   "within 2.5 points", "seed 1", "seed 2"):
        assert needed in card, needed


@pytest.mark.slow  # ~2 × (render 960 photos + extract + score) on 2 cores: a few minutes
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", [1, 2])
def test_card_table_reproduces_exactly(tmp_path, seed):
    """The card's check: `dkgzsl evaluate` on its stated test seeds gives its table, to the digit."""
    rows = dict(re.findall(r"^\| seed (\d) \| (.+?) \|$", CARD.read_text(), re.M))
    want = [float(v) for v in rows[str(seed)].split(" | ")]
    r = runner.invoke(app, ["demo", "--per-class", "20", "--seed", str(seed), str(tmp_path / "photos")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", "--model", "demo-shapes", "--images", str(tmp_path / "photos"),
                            "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    got = [round(m[k], 3) for k in ("S", "U", "H", "CZSL", "AUSUC")]
    assert got == want, (got, want)


@pytest.mark.slow  # two small trainings on photos: ~3 minutes on 2 cores
@pytest.mark.timeout(1800)
def test_small_demo_with_two_thread_counts_keeps_the_guarantee(tmp_path):
    """The demo recipe at small scale, trained with 1 and with 2 threads (and 2 again): the same thread
    count rebuilds the same bytes; the other count stays within the card's accuracy tolerance."""
    from dkgzsl_app.trainer.render import write_test_photos, write_training_folder

    train, test = tmp_path / "train", tmp_path / "test"
    write_training_folder(train, per_class=10, seed=0, quality=85)
    write_test_photos(test, per_class=5, seed=1, quality=85)
    base = ["train", "--images", str(train), "--attributes", str(train / "classes.csv"), "--epochs", "8",
            "--hidden-dim", "512", "--embed-dim", "256", "--lr", "1e-3", "--cls-weight", "1.0",
            "--gen-per-unseen", "20", "--seed", "0", "--device", "cpu", "--json"]
    out = {}
    for name, threads in (("t2", "2"), ("t1", "1"), ("t2b", "2")):
        r = runner.invoke(app, [*base, "--out", str(tmp_path / name), "--threads", threads])
        assert r.exit_code == 0, r.output
        cfg = json.loads((tmp_path / name / "bundle" / "config.json").read_text())
        r = runner.invoke(app, ["evaluate", "--model", str(tmp_path / name / "bundle"), "--images", str(test),
                                "--device", "cpu", "--json"])
        assert r.exit_code == 0, r.output
        out[name] = (cfg["weights_sha256"], json.loads(r.stdout))
    assert out["t2"][0] == out["t2b"][0]
    for k in ("S", "U", "H"):
        assert abs(out["t1"][1][k] - out["t2"][1][k]) <= 0.05, (k, out)
