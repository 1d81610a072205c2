"""CUDA training path (run with `pytest -m gpu` on a machine with a GPU; deselected by default)."""
import pytest
import torch

from conftest import make_feature_set, tiny_config
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.train import train_bundle

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_training_writes_a_cpu_loadable_bundle_and_resumes(tmp_path):
    data = make_feature_set(n_classes=30, n_unseen=6)
    cfg = tiny_config(epochs=20)
    out = train_bundle(data, cfg, tmp_path / "run", device="cuda")
    bundle = load_bundle(out.bundle_dir)  # on the CPU
    assert bundle.config.provenance["device"] == "cuda"
    m = evaluate_bundle(bundle, data)
    assert m["CZSL"] > 0.6 and m["H"] > 0.5, m
    again = train_bundle(data, cfg, tmp_path / "run", resume=True, device="cuda")  # all epochs done: reloads
    assert again.best_epoch == out.best_epoch
