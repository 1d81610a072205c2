"""Shared fixtures: tiny synthetic feature sets made in the test (no files outside tests/)."""
import pytest

from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.synthetic import make_feature_set, make_region_set  # noqa: F401  (tests import it from here)


class Interrupt(Exception):
    """Raised by ``stop_after``'s hook: a training run killed at a chosen epoch."""


def stop_after(phase: str, epoch: int):
    """An ``on_epoch`` hook for ``train_bundle`` that interrupts the run after ``epoch`` of ``phase``
    (select | final), as a crash or Ctrl-C would."""
    def hook(p, row):
        if p == phase and row["epoch"] == epoch:
            raise Interrupt
    return hook


def tiny_config(**overrides) -> TrainConfig:
    base = dict(epochs=6, teacher_epochs=5, batch_size=32, hidden_dim=64, critic_hidden_dim=64, embed_dim=32,
                critic_steps=5, gen_per_unseen=10, lr=1e-3, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def regions():
    """A tiny region-feature set for the region methods' tests (DKGZSL, MSDN): chance 1/6 CZSL, 1/30 GZSL; the
    object in one of 4 regions, 2 of them other classes' objects."""
    return make_region_set(n_classes=30, n_unseen=6, regions=4, distractors=2)


@pytest.fixture
def feature_set():
    return make_feature_set()


@pytest.fixture(autouse=True)
def dkgzsl_home(tmp_path, monkeypatch):
    """Every user folder (caches, user classes) goes to a per-test temp dir, never the real one."""
    home = tmp_path / "dkgzsl-home"
    monkeypatch.setenv("DKGZSL_HOME", str(home))
    return home
