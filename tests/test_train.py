"""Training end to end on tiny synthetic features: it learns unseen classes, is deterministic, resumes exactly."""
import json

import numpy as np
import pytest
import torch

from conftest import make_feature_set, tiny_config
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
    assert b.config.method == ("f-clswgan" if ablation == "baseline" else "d3gzsl")
    losses = set(out.final_history[-1])
    assert ("kl" in losses) == (ablation == "id") and ("od" in losses) == (ablation == "od")


def weights(bundle_dir):
    return load_bundle(bundle_dir).model.state_dict()


def test_same_seed_same_model(data, tmp_path):
    a = train_bundle(data, tiny_config(epochs=2, select="none"), tmp_path / "a")
    b = train_bundle(data, tiny_config(epochs=2, select="none"), tmp_path / "b")
    wa, wb = weights(a.bundle_dir), weights(b.bundle_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted(data, tmp_path):
    cfg = tiny_config(epochs=3)
    full = train_bundle(data, cfg, tmp_path / "full")

    def stop_after(phase, epoch):
        def hook(p, row):
            if p == phase and row["epoch"] == epoch:
                raise Interrupt
        return hook

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
