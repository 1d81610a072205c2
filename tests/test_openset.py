"""Issue 16: the readable confidence and open-set rejection (models/openset.py) through every method, training,
bundles, the classify API and CLI, the output formats, calibrate-openset and the browser."""
import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import dkgzsl_app
from dkgzsl_app.cli import app
from dkgzsl_app.models.bundle import load_bundle, load_config
from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
from dkgzsl_app.models.errors import BundleError
from dkgzsl_app.models.methods import model_class
from dkgzsl_app.models.openset import (DEFAULT_TEMPERATURE, confidence, expected_calibration_error, fit_records,
                                       fit_temperature, fit_threshold, score_photos)
from dkgzsl_app.output import read_predictions, records, render
from dkgzsl_app.trainer.data import carve_validation
from dkgzsl_app.trainer.train import train_bundle

from conftest import make_feature_set, tiny_config
from tui_helpers import ASSETS, make_bundle

runner = CliRunner()


# ---- the pieces ------------------------------------------------------------------------------------------
def test_threshold_keeps_the_share_asked_for():
    scores = np.arange(40, dtype=float)  # 5% of 40: two photos may fall below
    thr = fit_threshold(scores, 0.95)
    assert (scores < thr).sum() == 2 and thr == 1.5
    assert (scores < fit_threshold(scores, 1.0)).sum() == 0
    with pytest.raises(ValueError):
        fit_threshold([], 0.95)


def test_confidence_is_a_distribution_ranked_as_the_calibrated_score():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(50, 6, generator=g), 1)
    seen = torch.tensor([1.0, 1, 1, 0, 0, 0])
    conf = confidence(probs, seen, 0.3, 0.05)
    assert torch.allclose(conf.sum(1), torch.ones(50)) and conf.min() >= 0 and conf.max() <= 1
    assert torch.equal(conf.argsort(1), (probs - 0.3 * seen).argsort(1))
    assert torch.equal(confidence(probs, seen, 0.3, None), confidence(probs, seen, 0.3, DEFAULT_TEMPERATURE))


def test_fitted_temperature_is_the_least_nll_and_calibrates():
    """Labels drawn from softmax(s / 0.2): the fitted T is near 0.2 and the ECE at it is small."""
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(2 * torch.randn(2000, 5, generator=g), 1)
    seen = torch.zeros(5)
    labels = torch.multinomial(torch.softmax(probs / 0.2, 1), 1, generator=g).squeeze(1)
    t = fit_temperature(probs, labels, seen, 0.0)
    assert 0.17 < t < 0.23
    conf = confidence(probs, seen, 0.0, t)
    ece, bins = expected_calibration_error(conf.max(1).values, (conf.argmax(1) == labels).float())
    assert ece < 0.04 and len(bins) == 15
    far, _ = expected_calibration_error(confidence(probs, seen, 0.0, 0.01).max(1).values,
                                        (conf.argmax(1) == labels).float())
    assert far > 3 * ece


def _config(method: str, kind: str, options=None) -> ModelConfig:
    return ModelConfig(method=method, feature_dim=8, attribute_names=[f"a{i}" for i in range(5)],
                       class_names=[f"c{i}" for i in range(6)], seen=[True] * 4 + [False] * 2,
                       generator=GeneratorConfig(noise_dim=5, hidden_dim=16, critic_hidden_dim=16),
                       head=HeadConfig(embed_dim=8), feature_kind=kind, options=options or {})


@pytest.mark.parametrize("method,kind,own", [("d3gzsl", "pooled", "prototype"), ("dkgzsl", "regions", "prototype"),
                                             ("msdn", "regions", "attribute_cosine"),
                                             ("msdnpp", "regions", "attribute_cosine")])
def test_every_method_gives_open_set_scores(method, kind, own):
    torch.manual_seed(0)
    cfg = _config(method, kind, {"attr_embed_dim": 4} if method.startswith("msdn") else None)
    model = model_class(method).from_config(cfg).eval()
    model.class_attributes.copy_(torch.rand(6, 5))
    raw = torch.rand(7, 8) if kind == "pooled" else torch.rand(7, 3, 8)
    probs, scores = score_photos(model, cfg, raw)
    assert probs.shape == (7, 6) and model.open_set_default == own
    assert set(scores) == {"msp", "max_logit", "energy", own}
    for s in scores.values():
        assert s.shape == (7,) and torch.isfinite(s).all()
    again = score_photos(model, cfg, raw)[1]
    assert all(torch.equal(scores[k], again[k]) for k in scores)  # generated prototypes: a fixed seed
    rec, conf = fit_records(model, cfg, raw, [0, 1, 2, 3, 0, 1, 2])
    assert rec["score"] == own and rec["photos"] == 7 and conf["temperature"] > 0
    with pytest.raises(ValueError, match="unseen"):  # the threshold never sees an unseen class's photo
        fit_records(model, cfg, raw, [0, 1, 2, 3, 4, 1, 2])


# ---- training -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = make_feature_set()
    return data, train_bundle(data, tiny_config(epochs=1, teacher_epochs=1), tmp_path_factory.mktemp("run"))


@pytest.mark.timeout(900)  # a tiny training run (seconds; minutes on a loaded 2-core machine)
def test_train_fits_the_threshold_on_seen_validation_photos_only(trained):
    data, out = trained
    bundle = load_bundle(out.bundle_dir)
    rec, cfg = bundle.config.open_set, tiny_config(epochs=1, teacher_epochs=1)
    vs = carve_validation(data, cfg.seed, cfg.val_class_fraction, cfg.seen_holdout)
    assert data.seen[data.labels[vs.val_seen]].all()
    assert rec["score"] == "prototype" and rec["keep"] == 0.95 and rec["photos"] == len(vs.val_seen)
    _, scores = score_photos(bundle.model, bundle.config, torch.from_numpy(data.features[vs.val_seen]))
    assert rec["threshold"] == pytest.approx(fit_threshold(scores["prototype"].numpy(), 0.95))
    assert (scores["prototype"] < rec["threshold"]).float().mean() <= 0.05
    assert bundle.config.confidence["temperature"] > 0
    # the test photos of unseen classes played no part: scoring them again changes nothing recorded
    assert "validation" in rec["fitted_on"]


def test_evaluate_reports_what_the_threshold_costs(trained):
    from dkgzsl_app.trainer.evaluate import evaluate_bundle

    data, out = trained
    bundle = load_bundle(out.bundle_dir)
    m = evaluate_bundle(bundle, data)
    o = m["open_set"]
    assert o["score"] == bundle.config.open_set["score"] and o["threshold"] == bundle.config.open_set["threshold"]
    bundle.config.open_set = {**bundle.config.open_set, "threshold": -2.0}  # a cosine is never below -2: none flagged
    none = evaluate_bundle(bundle, data)["open_set"]
    assert none["flagged_seen"] == none["flagged_unseen"] == 0.0
    assert (none["S"], none["U"], none["H"]) == pytest.approx((m["S"], m["U"], m["H"]))
    bundle.config.open_set = {**bundle.config.open_set, "threshold": 2.0}  # ... never reaches 2: all flagged
    every = evaluate_bundle(bundle, data)["open_set"]
    assert every["flagged_seen"] == every["flagged_unseen"] == 1.0 and every["S"] == every["U"] == every["H"] == 0.0
    bundle.config.open_set = None
    assert "open_set" not in evaluate_bundle(bundle, data)


# ---- bundles, classify, output --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("openset") / "plain")


def _with_records(src: Path, dest: Path, threshold: float) -> Path:
    shutil.copytree(src, dest)
    cfg = load_config(dest)
    cfg.open_set = {"score": "prototype", "threshold": threshold, "keep": 0.95, "photos": 9, "fitted_on": "test"}
    cfg.confidence = {"temperature": 0.2, "photos": 9, "fitted_on": "test"}
    (dest / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    return dest


def test_bundle_without_threshold_behaves_as_before(plain_bundle):
    data = json.loads((plain_bundle / "config.json").read_text())
    assert "open_set" not in data and "confidence" not in data  # written as before the fields existed
    clf = dkgzsl_app.load(f"local-dir:{plain_bundle}", device="cpu")
    preds = clf.classify([str(ASSETS / "chelsea.jpg"), str(ASSETS / "coffee.jpg")], top_k=3, workers=0)
    for p in preds:
        assert p.unknown is None and p.open_set_score is None
        for g in p.top:
            assert g.score == pytest.approx(g.probability - (0.1 if g.origin == "seen" else 0.0), abs=1e-6)
        assert sum(g.confidence for g in p.top) <= 1 + 1e-6
        assert p.temperature == DEFAULT_TEMPERATURE and p.calibration == 0.1
    row = records(preds)[0]
    assert "unknown" not in row and "open_set_score" not in row
    assert row["score"] == pytest.approx(preds[0].top[0].score, abs=1e-6)  # score keeps its meaning
    assert row["confidence"] == pytest.approx(preds[0].top[0].confidence, abs=1e-6)


def test_rejection_flags_unknown_in_every_format(plain_bundle, tmp_path):
    strict = _with_records(plain_bundle, tmp_path / "strict", threshold=2.0)  # a cosine never reaches 2
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(ASSETS / "chelsea.jpg", photos / "cat.jpg")
    shutil.copy(ASSETS / "coffee.jpg", photos / "cup.jpg")
    clf = dkgzsl_app.load(f"local-dir:{strict}", device="cpu")
    preds = clf.classify([str(photos / "cat.jpg")], workers=0)
    assert preds[0].unknown is True and preds[0].open_set_score < 2.0 and preds[0].top  # the best guess stays
    assert preds[0].temperature == 0.2
    assert clf.classify([str(photos / "cat.jpg")], workers=0, reject=False)[0].unknown is None

    for fmt in ("json", "jsonl", "csv"):
        out = tmp_path / f"r.{fmt}"
        r = runner.invoke(app, ["classify", str(photos), "--model", f"local-dir:{strict}", "-o", str(out),
                                "--device", "cpu", "--workers", "0"])
        assert r.exit_code == 0, r.output
        back, _ = read_predictions(out)
        assert [p.unknown for p in back] == [True, True]
        assert all(p.top[0].confidence is not None for p in back)
        text = out.read_text()
        assert "confidence" in text and "unknown" in text
        if fmt != "csv":
            row = json.loads(text)[0] if fmt == "json" else json.loads(text.splitlines()[0])
            assert row["unknown"] is True and row["calibration"] == 0.1 and row["temperature"] == 0.2
            assert 0 <= row["confidence"] <= 1 and row["open_set_score"] < 2
    r = runner.invoke(app, ["classify", str(photos), "--model", f"local-dir:{strict}", "--device", "cpu",
                            "--workers", "0", "--no-reject", "-f", "jsonl"])
    assert r.exit_code == 0 and all("unknown" not in json.loads(line) for line in r.stdout.splitlines())
    r = runner.invoke(app, ["classify", str(photos), "--model", f"local-dir:{strict}", "--device", "cpu",
                            "--workers", "0"], env={"COLUMNS": "160"})
    flat = " ".join(r.stdout.split())
    assert r.exit_code == 0 and "2 unknown" in flat and "confidence" in flat  # the table's count


def test_a_bad_record_is_refused(plain_bundle, tmp_path):
    bad = _with_records(plain_bundle, tmp_path / "bad", threshold=0.5)
    data = json.loads((bad / "config.json").read_text())
    data["open_set"]["score"] = "vibes"
    (bad / "config.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="open_set"):
        load_bundle(bad)


def test_calibrate_openset_fits_on_seen_photos_and_keeps_the_weights(plain_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(plain_bundle, bundle)
    weights = (bundle / "model.safetensors").read_bytes()
    photos = tmp_path / "val"
    for cls, src in (("cat", "chelsea.jpg"), ("espresso", "coffee.jpg")):
        (photos / cls).mkdir(parents=True)
        shutil.copy(ASSETS / src, photos / cls / "0.jpg")
    r = runner.invoke(app, ["calibrate-openset", str(bundle), "--images", str(photos), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    fitted = json.loads(r.stdout)
    cfg = load_config(bundle)
    assert cfg.open_set == fitted["open_set"] and cfg.open_set["photos"] == 2
    assert cfg.confidence["temperature"] > 0  # class folders: the temperature is fitted too
    assert (bundle / "model.safetensors").read_bytes() == weights
    load_bundle(bundle)  # the weights' hash still verifies
    (photos / "teapot").mkdir()
    shutil.copy(ASSETS / "coffee.jpg", photos / "teapot" / "0.jpg")
    r = runner.invoke(app, ["calibrate-openset", str(bundle), "--images", str(photos), "--device", "cpu"])
    assert r.exit_code == 1 and "unseen" in r.output


# ---- the browser ----------------------------------------------------------------------------------------
def test_browser_shows_and_filters_unknown(tmp_path):
    from dkgzsl_app.tui import EngineOptions, create_app
    from dkgzsl_app.tui.openset import FLAGGED

    from tui_helpers import make_photos, write_results

    photos = make_photos(tmp_path / "photos")
    results = write_results(tmp_path / "preds.jsonl", photos[0].parent)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["unknown"] = i in (1, 5)  # cat__0002 and mystery
        for g in row["top_k"]:
            g["confidence"] = 0.5
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))

    async def run():
        tui = create_app(results, options=EngineOptions(model=None), show_images=False)
        async with tui.run_test(size=(120, 30)) as pilot:
            texts = [str(tui.table.get_row(k)[2]) for k in tui.table.keys_in_order()]
            assert texts[1].startswith("unknown") and "teapot" in texts[1] and not texts[0].startswith("unknown")
            await pilot.press("o")
            shown = [tui.results.rows[k].name for k in tui.table.keys_in_order()]
            assert shown == ["cat__0002.jpg", "mystery.jpg"]
            assert tui.results.class_filter == FLAGGED
            assert "2 shown" in str(tui.query_one("#status").render())
            await pilot.press("o")
            assert tui.table.row_count == len(rows)

    asyncio.run(run())


def test_classify_tui_honours_no_reject(plain_bundle, tmp_path, monkeypatch):
    """`classify --tui --no-reject`: the browser's engine classifies without flagging photos unknown."""
    from dkgzsl_app import cli
    from dkgzsl_app.tui.engine import Engine, EngineOptions

    strict = _with_records(plain_bundle, tmp_path / "strict", threshold=2.0)  # every photo below the threshold
    seen = {}
    monkeypatch.setattr(cli, "_run_tui", lambda results, paths, opts, show_images=True: seen.setdefault("o", opts) and [])
    for flags, reject in (([], True), (["--no-reject"], False)):
        seen.clear()
        r = runner.invoke(app, ["classify", str(ASSETS / "chelsea.jpg"), "--tui", "--model", f"local-dir:{strict}",
                                "--device", "cpu", *flags])
        assert r.exit_code == 0, r.output
        assert seen["o"].reject is reject
    photo = [str(ASSETS / "chelsea.jpg")]
    opts = EngineOptions(model=f"local-dir:{strict}", device="cpu", workers=0, use_cache=False)
    assert Engine(opts).load().classify(photo, workers=0)[0].unknown is True
    off = Engine(dataclasses.replace(opts, reject=False)).load()
    assert off.classify(photo, workers=0)[0].unknown is None
