"""The model card's validation table (S/U/H, CZSL, AUSUC of the selected epoch) and its AUSUC plot (ausuc.png):
recorded during selection without changing the training, drawn with Pillow, pushed with the bundle, and a
bundle without the plot still loads and says so."""
import json
import math

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from conftest import make_feature_set, tiny_config
from dkgzsl_app.card import build_card, training_record, write_card
from dkgzsl_app.models.bundle import CURVE_FILE, load_bundle
from dkgzsl_app.trainer import metrics, train as train_module
from dkgzsl_app.trainer.train import train_bundle
from test_bundle import make_bundle
from test_hub_push import files_on, hub, push  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def data():
    return make_feature_set(n_classes=12, n_unseen=4)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A tiny selection run (2 epochs) and its bundle with the card `dkgzsl train` writes."""
    out = train_bundle(data, tiny_config(epochs=2, teacher_epochs=1), tmp_path_factory.mktemp("run"))
    write_card(out.bundle_dir, training=training_record("dkgzsl train --features f", 1.0, "cpu", out))
    return out


def selected(out) -> dict:
    return next(r for r in out.select_history if r["epoch"] == out.best_epoch)


def test_selection_records_czsl_ausuc_and_a_thinned_curve(trained):
    for row in (r for r in trained.select_history if r["epoch"] > 0):
        assert 0.0 <= row["val_CZSL"] <= 1.0 and 0.0 <= row["val_AUSUC"] <= 1.0, row
        curve = row["val_curve"]
        assert 2 <= len(curve["S"]) == len(curve["U"]) == len(curve["gamma"]) <= 64
        assert curve["gamma"] == sorted(curve["gamma"])
        # the drawn points lie on the curve whose exact area is val_AUSUC
        assert metrics._area(np.array(curve["S"]), np.array(curve["U"])) == pytest.approx(row["val_AUSUC"], abs=0.03)
        assert metrics.harmonic_mean(row["val_S_cal"], row["val_U_cal"]) == pytest.approx(row["val_H_cal"])


def test_the_figures_do_not_change_training(trained, data, tmp_path, monkeypatch):
    """The card's figures are NumPy on scores already computed under no_grad: without them the run selects
    the same epoch and γ and writes the same weights, with the same losses and S/U/H every epoch."""
    monkeypatch.setattr(train_module, "selection_curve", lambda *a: {})
    bare = train_bundle(data, tiny_config(epochs=2, teacher_epochs=1), tmp_path / "bare")
    sha = lambda out: json.loads((out.bundle_dir / "config.json").read_text())["weights_sha256"]  # noqa: E731
    assert sha(bare) == sha(trained) and (bare.best_epoch, bare.calibration) == (trained.best_epoch, trained.calibration)
    assert [{k: v for k, v in r.items() if k in b} for r, b in zip(trained.select_history, bare.select_history)] \
        == bare.select_history
    assert "val_AUSUC" not in bare.select_history[-1] and "val_AUSUC" in trained.select_history[-1]


def test_card_table_has_the_recorded_czsl_and_ausuc(trained):
    row, folder = selected(trained), trained.bundle_dir
    card = ModelCard.load(folder / "README.md")
    val = card.data.dkgzsl["training"]["validation"]
    assert val["CZSL"] == round(row["val_CZSL"], 6) and val["AUSUC"] == round(row["val_AUSUC"], 6)
    assert "curve" not in val and val["plot"]["file"] == CURVE_FILE  # the points went into the PNG, not the YAML
    assert "| selected epoch | S (seen) | U (unseen) | H at γ = 0 | S at γ | U at γ | H at γ | γ | CZSL | AUSUC |" \
        in card.text
    figures = [row[k] for k in ("val_S", "val_U", "val_H", "val_S_cal", "val_U_cal", "val_H_cal")]
    line = (f"| {row['epoch']} | " + " | ".join(f"{v:.3f}" for v in figures) + f" | {row['val_gamma']:.4g} | "
            f"{row['val_CZSL']:.3f} | {row['val_AUSUC']:.3f} |")
    assert line in card.text
    assert f"]({CURVE_FILE})" in card.text and "AUSUC plot is not in this bundle" not in card.text


def test_plot_is_a_png_of_the_curve(trained):
    path = trained.bundle_dir / CURVE_FILE
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.size == (520, 520)
        pixels = np.asarray(img.convert("RGB"))
    assert ((pixels == (31, 119, 180)).all(axis=-1)).sum() > 100  # the curve's colour
    assert ((pixels == (214, 39, 40)).all(axis=-1)).sum() > 10  # the operating point at the chosen γ


def test_bundle_without_the_plot_loads_and_its_card_says_so(trained, tmp_path):
    import shutil

    folder = shutil.copytree(trained.bundle_dir, tmp_path / "copy")
    (folder / CURVE_FILE).write_bytes(b"not the plot that was drawn")
    assert f"]({CURVE_FILE})" not in build_card(folder)  # a file other than the recorded one is not shown
    (folder / CURVE_FILE).unlink()
    load_bundle(folder)
    text = build_card(folder)
    assert f"]({CURVE_FILE})" not in text and f"The AUSUC plot is not in this bundle (no `{CURVE_FILE}`" in text
    assert "| CZSL | AUSUC |" in text  # the figures stay: they are in the card's metadata
    plain, _, _ = make_bundle(tmp_path)  # never trained by `dkgzsl train`: no figures, no plot
    text = build_card(plain)
    assert "not recorded in this bundle, nor its AUSUC plot" in text and CURVE_FILE not in text


def test_thin_curve_keeps_the_ends_and_the_area():
    rng = np.random.default_rng(0)
    seen = np.arange(20) < 14
    labels = rng.integers(0, 20, 3000)
    scores = rng.normal(size=(3000, 20))
    scores[np.arange(3000), labels] += 2.0
    g, s, u = metrics.seen_unseen_curve(scores, labels, seen)
    tg, ts, tu = metrics.thin_curve(g, s, u)
    assert len(s) > 1000 and len(ts) <= 64
    assert (tg[0], ts[0], tu[0], tg[-1], ts[-1], tu[-1]) == (g[0], s[0], u[0], g[-1], s[-1], u[-1])
    assert metrics._area(ts, tu) == pytest.approx(metrics.ausuc(scores, labels, seen), abs=2e-3)
    assert metrics.thin_curve(g[:10], s[:10], u[:10])[1].tolist() == s[:10].tolist()  # short: kept whole
    nan = metrics.thin_curve(g, np.full_like(s, math.nan), u)
    assert len(nan[0]) == 64 and nan[0][0] == g[0] and nan[0][-1] == g[-1]


def test_push_uploads_the_plot_and_a_download_brings_it(hub, trained, tmp_path, monkeypatch):  # noqa: F811
    from dkgzsl_app.hub import HubRef, download_bundle

    r = push(trained.bundle_dir, "acme/shapes", "--json")
    assert r.exit_code == 0, r.output
    on_hub = files_on(hub, "acme/shapes")
    assert on_hub[CURVE_FILE] == (trained.bundle_dir / CURVE_FILE).read_bytes()
    assert f"]({CURVE_FILE})" in on_hub["README.md"].decode()
    again = push(trained.bundle_dir, "acme/shapes", "--json")  # a repository holding the plot is ours
    assert again.exit_code == 0, again.output
    monkeypatch.setenv("DKGZSL_HOME", str(tmp_path / "fresh-home"))
    folder = download_bundle(HubRef("acme/shapes"))
    assert (folder / CURVE_FILE).read_bytes() == on_hub[CURVE_FILE] and f"]({CURVE_FILE})" in build_card(folder)
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors", "classes.csv", "README.md"):  # the bundle without its plot
        (bare / f).write_bytes((trained.bundle_dir / f).read_bytes())
    r = push(bare, "acme/bare", "--json")
    assert r.exit_code == 0, r.output
    assert CURVE_FILE not in files_on(hub, "acme/bare")
    assert "The AUSUC plot is not in this bundle" in files_on(hub, "acme/bare")["README.md"].decode()
    r = push(bare, "acme/shapes", "--json")  # over a push that had a plot: the stale plot goes
    assert r.exit_code == 0, r.output
    assert CURVE_FILE not in files_on(hub, "acme/shapes")
    assert "The AUSUC plot is not in this bundle" in files_on(hub, "acme/shapes")["README.md"].decode()
