"""DKGZSL as a method plug-in: training on pooled and region features, bundles, refusals, resume, CLI."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import Interrupt, make_feature_set, stop_after, tiny_config
from dkgzsl_app.cli import app
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.errors import BundleError, DataError
from dkgzsl_app.models.methods import canonical_method
from dkgzsl_app.trainer.data import save_feature_folder
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.train import train_bundle


def dk_config(**overrides):
    base = dict(method="dkgzsl", attn_dim=16, teacher_epochs=5, teacher_lr=1e-2, epochs=20)
    base.update(overrides)
    return tiny_config(**base)


@pytest.fixture(scope="module")
def trained_regions(regions, tmp_path_factory):
    out = train_bundle(regions, dk_config(select="none"), tmp_path_factory.mktemp("dk"))
    return out, load_bundle(out.bundle_dir)


def test_regions_training_beats_chance_by_a_wide_margin(trained_regions, regions):
    _, bundle = trained_regions
    m = evaluate_bundle(bundle, regions)
    assert m["CZSL"] > 0.6 and m["H"] > 0.5, m  # chance 0.17 and 0.03 (measured: 0.93 and 0.88)


def test_regions_bundle_says_what_was_trained(trained_regions, regions):
    out, bundle = trained_regions
    cfg = bundle.config
    assert cfg.method == "dkgzsl" and cfg.feature_kind == "regions" and cfg.feature_dim == regions.features.shape[-1]
    assert cfg.options == {"fde": True, "ara": True, "ktn": True, "fde_mask": "soft", "fde_topk": 0, "attn_dim": 16}
    assert "Method `dkgzsl` on regions" in (out.bundle_dir / "README.md").read_text()
    x = torch.from_numpy(regions.features[:5])  # (5, R, C) float16, as the cache returns them
    with torch.no_grad():
        s = bundle.model.attribute_scores(x)
        p = bundle.model.class_scores(x)
    assert s.shape == (5, len(regions.attribute_names)) and torch.allclose(p.sum(1), torch.ones(5))


def test_regions_bundle_round_trip_scores_identically(trained_regions, regions, tmp_path):
    from dkgzsl_app.models.bundle import save_bundle

    _, bundle = trained_regions
    again = load_bundle(save_bundle(bundle.model, bundle.config, tmp_path / "copy", bundle.origins))
    x = torch.from_numpy(regions.features[:8])
    with torch.no_grad():
        assert torch.equal(bundle.model.class_scores(x), again.model.class_scores(x))


def test_pooled_dkgzsl_runs_without_sovr_and_says_so(tmp_path):
    fs = make_feature_set(n_classes=12, n_unseen=4)
    out = train_bundle(fs, dk_config(epochs=2, select="none"), tmp_path)
    bundle = load_bundle(out.bundle_dir)
    assert bundle.config.feature_kind == "pooled"
    assert bundle.config.options["fde"] is False and bundle.config.options["ara"] is False
    assert bundle.config.options["ktn"] is True and bundle.model.sovr is None
    assert "ktn" in out.final_history[-1]  # KTN's reconstruction trained with G


def test_ablation_switches_remove_their_parts(regions, tmp_path):
    out = train_bundle(regions, dk_config(epochs=1, teacher_epochs=1, select="none", fde=False, ktn=False), tmp_path)
    m = load_bundle(out.bundle_dir).model
    assert m.sovr.fde is None and m.sovr.ara is not None
    assert not any(k.startswith("generator.ktn") for k in m.state_dict())
    assert "ktn" not in out.final_history[-1] and "ara" in out.final_history[-1]


def test_regions_with_fde_and_ara_off_train_on_the_mean_region(regions, tmp_path):
    out = train_bundle(regions, dk_config(epochs=1, teacher_epochs=1, select="none", fde=False, ara=False), tmp_path)
    m = load_bundle(out.bundle_dir).model
    assert m.sovr is not None and not list(m.sovr.parameters())
    x = torch.from_numpy(regions.features[:3])
    assert torch.allclose(m.visual(x), m.scale_features(x.float()).mean(1))


def test_d3gzsl_refuses_region_features(regions, tmp_path):
    with pytest.raises(DataError, match="dkgzsl"):
        train_bundle(regions, tiny_config(epochs=1), tmp_path)


def test_evaluate_refuses_the_other_feature_kind(trained_regions, regions):
    _, bundle = trained_regions
    pooled = make_feature_set(n_classes=30, n_unseen=6)
    with pytest.raises(DataError, match="regions features"):
        evaluate_bundle(bundle, pooled)


@pytest.mark.parametrize("extra", [{}, {"g_mean_weight": 1.0}], ids=["default", "class-mean-term"])
def test_resume_equals_uninterrupted_on_regions(regions, tmp_path, extra):
    """Also with G's class-mean term, whose real means follow the per-epoch snapshot of v (a resumed run
    computes them from the restored snapshot, so they must never be a stale copy of an earlier one)."""
    cfg = dk_config(epochs=2, teacher_epochs=2, val_class_fraction=0.2, **extra)
    full = train_bundle(regions, cfg, tmp_path / "full")

    run = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_bundle(regions, cfg, run, on_epoch=stop_after("select", 1))
    with pytest.raises(Interrupt):
        train_bundle(regions, cfg, run, resume=True, on_epoch=stop_after("final", 1))
    resumed = train_bundle(regions, cfg, run, resume=True)
    a, b = load_bundle(full.bundle_dir).model.state_dict(), load_bundle(resumed.bundle_dir).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method, message", [("msdn", "options do not fit"), ("ce-gzsl", "not implemented"),
                                             ("magic", "unknown method")])
def test_unimplemented_or_unknown_methods_are_refused(trained_regions, tmp_path, method, message):
    import shutil

    out, _ = trained_regions
    copy = shutil.copytree(out.bundle_dir, tmp_path / "b")
    data = json.loads((copy / "config.json").read_text())
    data["method"] = method
    (copy / "config.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_legacy_f_clswgan_label_loads_as_d3gzsl():
    assert canonical_method("f-clswgan") == "d3gzsl"


def test_options_a_method_does_not_know_are_refused(trained_regions, tmp_path):
    import shutil

    out, _ = trained_regions
    copy = shutil.copytree(out.bundle_dir, tmp_path / "b")
    data = json.loads((copy / "config.json").read_text())
    data["options"]["warp_drive"] = True
    (copy / "config.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="warp_drive"):
        load_bundle(copy)


def test_cli_trains_dkgzsl_on_a_region_feature_folder(regions, tmp_path):
    save_feature_folder(regions, tmp_path / "feats")
    r = CliRunner().invoke(app, ["train", "--features", str(tmp_path / "feats"), "--out", str(tmp_path / "run"),
                                 "--method", "dkgzsl", "--epochs", "1", "--teacher-epochs", "1", "--hidden-dim", "32",
                                 "--embed-dim", "16", "--batch-size", "32", "--no-ara", "--select", "none", "--json"])
    assert r.exit_code == 0, r.output
    cfg = load_bundle(tmp_path / "run" / "bundle").config
    assert cfg.method == "dkgzsl" and cfg.feature_kind == "regions" and cfg.options["ara"] is False


def test_cli_says_dkgzsl_on_pooled_features_has_no_sovr(tmp_path):
    save_feature_folder(make_feature_set(), tmp_path / "feats")
    r = CliRunner().invoke(app, ["train", "--features", str(tmp_path / "feats"), "--out", str(tmp_path / "run"),
                                 "--method", "dkgzsl", "--epochs", "1", "--teacher-epochs", "1", "--hidden-dim", "32",
                                 "--embed-dim", "16", "--select", "none", "--json"])
    assert r.exit_code == 0, r.output
    assert "SOVR (FDE, ARA) is off" in r.output
