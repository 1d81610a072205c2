"""Training end to end on tiny synthetic features: it learns unseen classes, is deterministic, resumes exactly."""
import json

import numpy as np
import pytest
import torch

from conftest import Interrupt, make_feature_set, stop_after, tiny_config
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.errors import DataError
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.train import train_bundle


@pytest.fixture(scope="module")
def data():
    return make_feature_set(n_classes=30, n_unseen=6)  # chance on unseen: 1/6 (CZSL), 1/30 (GZSL)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = train_bundle(data, tiny_config(ablation="both", epochs=20), tmp_path_factory.mktemp("run"))
    return out, evaluate_bundle(load_bundle(out.bundle_dir), data)


def test_beats_chance_on_unseen_by_a_wide_margin(trained):
    out, m = trained
    assert m["CZSL"] > 0.6, m  # chance 0.17
    assert m["U"] > 0.5 and m["S"] > 0.5 and m["H"] > 0.5, m  # chance 0.03


def test_selection_uses_validation_only(trained, data):
    out, _ = trained
    assert 1 <= out.best_epoch <= 20
    assert all("val_H_cal" in r for r in out.select_history if r["epoch"] > 0)
    bundle = load_bundle(out.bundle_dir)
    assert bundle.config.calibration == pytest.approx(out.calibration)
    assert bundle.config.provenance["data_sha256"] == data.sha256()
    assert bundle.config.provenance["selected_epoch"] == out.best_epoch


def test_run_folder_has_logs_and_checkpoints(trained):
    out, _ = trained
    run = out.bundle_dir.parent
    rows = [json.loads(line) for line in (run / "select" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(0, 21))
    assert (run / "final" / "checkpoint.pt").exists()


@pytest.mark.parametrize("ablation", ["baseline", "id", "od"])
def test_each_ablation_trains(data, tmp_path, ablation):
    out = train_bundle(data, tiny_config(ablation=ablation, epochs=2, select="none"), tmp_path)
    b = load_bundle(out.bundle_dir)
    assert b.config.method == "d3gzsl"  # the baseline ablation is D3GZSL with L_cls only, not f-CLSWGAN
    assert b.config.provenance["train_config"]["ablation"] == ablation
    losses = set(out.final_history[-1])
    assert ("kl" in losses) == (ablation == "id") and ("od" in losses) == (ablation == "od")


def weights(bundle_dir):
    return load_bundle(bundle_dir).model.state_dict()


def test_same_seed_same_model(data, tmp_path):
    a = train_bundle(data, tiny_config(epochs=2, select="none"), tmp_path / "a")
    b = train_bundle(data, tiny_config(epochs=2, select="none"), tmp_path / "b")
    wa, wb = weights(a.bundle_dir), weights(b.bundle_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_equals_uninterrupted(data, tmp_path):
    cfg = tiny_config(epochs=3)
    full = train_bundle(data, cfg, tmp_path / "full")

    run = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_bundle(data, cfg, run, on_epoch=stop_after("select", 2))
    with open(run / "select" / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"epoch": 3, "d": 0.1')  # a torn line (e.g. written by an older dkgzsl when killed)
    with pytest.raises(Interrupt):
        train_bundle(data, cfg, run, resume=True, on_epoch=stop_after("final", 1))
    resumed = train_bundle(data, cfg, run, resume=True)
    assert resumed.best_epoch == full.best_epoch and resumed.calibration == full.calibration
    wa, wb = weights(full.bundle_dir), weights(resumed.bundle_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (run / "select" / "metrics.jsonl").read_text() == (tmp_path / "full" / "select" / "metrics.jsonl").read_text()


def test_run_folder_guards(data, tmp_path):
    train_bundle(data, tiny_config(epochs=1, select="none"), tmp_path)
    with pytest.raises(DataError, match="already holds a run"):
        train_bundle(data, tiny_config(epochs=1, select="none"), tmp_path)
    with pytest.raises(DataError, match="other settings"):
        train_bundle(data, tiny_config(epochs=2, select="none"), tmp_path, resume=True)


def test_evaluate_refuses_foreign_features(trained):
    out, _ = trained
    other = make_feature_set(n_classes=30, n_unseen=6, n_attr=12)
    with pytest.raises(DataError, match="attributes"):
        evaluate_bundle(load_bundle(out.bundle_dir), other)


def test_released_code_lr_growth_option(data):
    from dkgzsl_app.trainer.loop import _Trainer
    from dkgzsl_app.trainer.task import make_task

    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    tr = _Trainer(task, tiny_config(gd_lr_growth=1.09, gd_lr_growth_every=2))
    lrs = []
    for epoch in range(5):
        tr.epoch = epoch
        tr.grow_lr()
        lrs.append(tr.opt_g.param_groups[0]["lr"])
    base = tiny_config().lr
    assert lrs == pytest.approx([base, base, base * 1.09, base * 1.09, base * 1.09 ** 2])
    assert tr.opt_s.param_groups[0]["lr"] == tiny_config().student_lr  # the student's lr never grows


def test_every_run_file_is_written_atomically(data, tmp_path, monkeypatch):
    """train_config.json, checkpoints and metrics.jsonl all go through models/atomic.atomic_write_bytes."""
    from pathlib import Path

    from dkgzsl_app.trainer import checkpoint, loop, train

    written = []
    real = loop.atomic_write_bytes

    def spy(path, blob, *args, **kwargs):
        written.append(Path(path).relative_to(tmp_path).as_posix())
        return real(path, blob, *args, **kwargs)

    for module in (loop, train, checkpoint):
        monkeypatch.setattr(module, "atomic_write_bytes", spy)
    train_bundle(data, tiny_config(epochs=1, select="none"), tmp_path)
    assert {"train_config.json", "final/metrics.jsonl", "final/checkpoint.pt"} <= set(written)
    assert written.count("final/metrics.jsonl") == 3  # at the start, after the teacher, after epoch 1
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def _trainer(data, **overrides):
    from dkgzsl_app.trainer.loop import _Trainer
    from dkgzsl_app.trainer.task import make_task

    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    return _Trainer(task, tiny_config(**overrides))


def test_energy_score_no_longer_saturates_epsilon(data):
    """ood_score=energy fed raw O(1..10) energies into ε = σ(10 (s − 0.5)): c = 1 for every sample, real seen
    and generated unseen alike, so L_od's teacher side said "in-distribution" for all. Normalised, it does not."""
    stats = {}
    for norm in ("none", "quantile"):
        tr = _trainer(data, ood_score="energy", energy_norm=norm)
        tr.train_teacher()
        tr.prepare_ood_norm()
        y_gen, a_gen = tr._gen_unseen()
        with torch.no_grad():
            x_gen = tr.model.generator.sample(a_gen, tr.rng)
        idx = torch.arange(0, len(tr.x), 7)[:64]
        tr.student_losses(tr.x[idx], tr.y[idx], x_gen, y_gen)
        stats[norm] = tr.od_stats
    assert stats["none"]["eps_sat"] == 1.0 and stats["none"]["eps_c"] > 0.99, stats  # the old behaviour
    assert stats["quantile"]["eps_sat"] < 0.75 and 0.2 < stats["quantile"]["eps_c"] < 0.9, stats


def test_generator_od_batch_can_include_real_seen_features(data):
    """g_od_real (the paper's batch): G's L_od also pairs its unseen features with the real seen batch."""
    weights = {}
    for flag in (False, True):
        tr = _trainer(data, g_od_real=flag)
        tr.train_teacher()
        idx = tr._batch()
        tr.generator_step(tr.y[idx], tr.attr[tr.y[idx]], tr.x[idx])
        weights[flag] = tr.model.generator.fc2.weight.detach().clone()
    assert not torch.equal(weights[False], weights[True])


def test_final_run_by_iterations_and_gamma_refit_on_held_out_seen_images(data, tmp_path):
    """final_length=iterations: the final run matches the selected generator iterations, not epochs;
    final_gamma=seen_rate: γ re-fitted on seen training images the final run never saw (no test image)."""
    from dkgzsl_app.trainer import train as train_mod
    from dkgzsl_app.trainer.data import carve_validation, hold_out_per_class

    test_rows = {tuple(r) for r in data.features[np.concatenate([data.test_seen, data.test_unseen])].tolist()}
    scored = []
    real_scores_for = train_mod.scores_for

    def spy(model, features, *args, **kwargs):
        scored.extend(tuple(r) for r in features.tolist())
        return real_scores_for(model, features, *args, **kwargs)

    cfg = tiny_config(epochs=3, final_length="iterations", final_gamma="seen_rate", gamma_holdout=0.2)
    mp = pytest.MonkeyPatch()
    mp.setattr(train_mod, "scores_for", spy)
    try:
        out = train_bundle(data, cfg, tmp_path)
    finally:
        mp.undo()
    assert not test_rows & set(scored)  # neither selection nor the γ re-fit looked at a test image
    prov = load_bundle(out.bundle_dir).config.provenance
    vs = carve_validation(data, cfg.seed, cfg.val_class_fraction, cfg.seen_holdout)
    kept, held = hold_out_per_class(data.trainval, data.labels, 0.2, cfg.seed)
    per = lambda n: -(-n // cfg.batch_size)  # noqa: E731 (iterations per epoch)
    assert prov["selected_iterations"] == out.best_epoch * per(len(vs.train))
    assert prov["final_epochs"] == max(1, round(prov["selected_iterations"] / per(len(kept))))
    assert len(out.final_history) - 1 == prov["final_epochs"]
    assert prov["gamma_holdout_images"] == len(held)
    assert 0.0 < prov["seen_rate"] <= 1.0 and out.calibration == load_bundle(out.bundle_dir).config.calibration
    with pytest.raises(ValueError, match="select='val'"):
        tiny_config(final_gamma="seen_rate", select="none").validate()
