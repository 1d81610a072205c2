"""Training speed (issue 17 item 4): the generator step computes no weight gradients for the networks it only
reads, and ``mlp_precision`` (bf16 autocast of the training steps) is an option that leaves fp32 runs alone."""
import numpy as np
import pytest
import torch

from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.loop import _Trainer, fit
from dkgzsl_app.trainer.synthetic import make_feature_set
from dkgzsl_app.trainer.task import make_task

from conftest import tiny_config


def small_task():
    fs = make_feature_set(seed=0, dim=32, per_class=12)
    return make_task(fs, np.arange(len(fs.class_names)), fs.seen, fs.trainval)


def test_generator_step_leaves_only_generator_gradients():
    tr = _Trainer(small_task(), tiny_config(), "cpu")
    tr.teacher_done = True
    for p in tr.model.teacher.parameters():
        p.requires_grad_(False)
    m = tr.model
    tr.critic_step()
    critic_grads = [p.grad.clone() for p in m.critic.parameters()]  # as the critic's own step left them
    idx = tr._batch()
    tr.generator_step(tr.y[idx], tr.attr[tr.y[idx]], tr.x[idx])
    assert all(torch.equal(p.grad, g) for p, g in zip(m.critic.parameters(), critic_grads))  # G's step added none
    for net in (m.critic, m.student, m.ood_head, m.epsilon):
        assert all(p.requires_grad for p in net.parameters())  # given back after the step
    for net in (m.student, m.ood_head, m.epsilon):
        assert all(p.grad is None for p in net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.generator.parameters())


def test_mlp_precision_is_validated():
    with pytest.raises(ValueError, match="mlp_precision"):
        TrainConfig(mlp_precision="fp16").validate()


def test_bf16_training_runs_and_differs_from_fp32():
    task = small_task()
    fp32 = fit(task, tiny_config(epochs=2, teacher_epochs=1), 2).model.state_dict()
    bf16 = fit(task, tiny_config(epochs=2, teacher_epochs=1, mlp_precision="bf16"), 2).model.state_dict()
    assert all(v.dtype == fp32[k].dtype for k, v in bf16.items())  # weights stay fp32
    assert all(torch.isfinite(v).all() for v in bf16.values() if v.is_floating_point())
    assert not torch.equal(bf16["critic.fc1.weight"], fp32["critic.fc1.weight"])


def test_cli_mlp_precision_reaches_the_config_and_is_refused_for_msdn(tmp_path):
    import json

    from typer.testing import CliRunner

    from dkgzsl_app.cli import app
    from dkgzsl_app.models.bundle import load_bundle
    from dkgzsl_app.trainer.data import save_feature_folder

    save_feature_folder(make_feature_set(seed=0, dim=32, per_class=12), tmp_path / "feats")
    args = ["train", "--features", str(tmp_path / "feats"), "--epochs", "1", "--teacher-epochs", "1", "--select",
            "none", "--threads", "1", "--hidden-dim", "32", "--embed-dim", "16", "--json", "--mlp-precision", "bf16"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    bundle = load_bundle(json.loads(r.output.strip().splitlines()[-1])["bundle"])
    assert bundle.config.provenance["train_config"]["mlp_precision"] == "bf16"
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "msdn"), "--method", "msdn"])
    assert r.exit_code == 2 and "trains in fp32 only" in r.output and "Traceback" not in r.output
