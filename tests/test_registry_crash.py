"""The class registry under SIGKILL and concurrent writers.

Children are forked from a forkserver that imported torch and dkgzsl once (so each trial starts in
milliseconds and no child inherits a parent's OpenMP threads); each trial kills an add-class at a random
moment, then checks that the registry reads back whole, as the state before or after that add.
"""
import multiprocessing as mp
import os
import random
import sys
import time

import numpy as np
import pytest

from dkgzsl_app.models import atomic
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.classes.registry import read_registry, registry_dir
from dkgzsl_app.classes import add_classes, list_user_classes, with_user_classes

from userclass_helpers import ATTRS, tiny_bundle

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and forkserver are POSIX"),
              pytest.mark.filterwarnings("ignore:.*generated features")]
TRIALS = 24


def values(i: int) -> dict:
    rng = np.random.default_rng(i)
    return dict(zip(ATTRS, rng.uniform(0, 1, len(ATTRS)).round(3).tolist()))


def _child_add(home: str, source: str, names: list, ready=None, go=None) -> None:
    os.environ["DKGZSL_HOME"] = home
    import warnings

    warnings.simplefilter("ignore")
    if ready is not None:
        ready.set()
        go.wait()
    for name in names:
        add_classes(source, {name: values(int(name.split("_")[-1]))})


@pytest.fixture(scope="module")
def ctx():
    c = mp.get_context("forkserver")
    c.set_forkserver_preload(["torch", "numpy", "safetensors.numpy", "dkgzsl_app.classes",
                              "dkgzsl_app.classes.refit", "dkgzsl_app.models.bundle", "dkgzsl_app.models.networks"])
    return c


def state(bundle, sha):
    """Names in the registry, after checking that every file verifies and the classifier view builds."""
    reg = read_registry(registry_dir(sha), ATTRS, 16, with_head=True)
    view = with_user_classes(load_bundle(bundle))
    assert view.config.class_names[5:] == reg.names
    return reg.names


def test_sigkill_at_random_moments_leaves_old_or_new(ctx, tmp_path, dkgzsl_home):
    bundle = tiny_bundle(tmp_path / "b")
    src, sha = f"local-dir:{bundle}", load_bundle(bundle).config.weights_sha256
    for i in range(2):  # uninterrupted adds: the first starts the forkserver, the second is timed
        p = ctx.Process(target=_child_add, args=(str(dkgzsl_home), src, [f"c_{i}"]))
        t = time.perf_counter()
        p.start()
        p.join(120)
        span = time.perf_counter() - t
        assert p.exitcode == 0
    assert state(bundle, sha) == ["c_0", "c_1"]
    rng = random.Random(1234)
    outcomes = {"old": 0, "new": 0}
    for i in range(2, TRIALS + 2):
        old = state(bundle, sha)
        p = ctx.Process(target=_child_add, args=(str(dkgzsl_home), src, [f"c_{i}"]))
        p.start()
        time.sleep(rng.uniform(0.0, span * 1.2))
        p.kill()  # SIGKILL (a no-op when the add already finished)
        p.join(10)
        now = state(bundle, sha)
        assert now in (old, old + [f"c_{i}"]), (old, now)
        outcomes["old" if now == old else "new"] += 1
    # kills before the commit must have happened; after-commit kills ("new") depend on the machine's timing
    assert outcomes["old"] >= 1, outcomes
    before = state(bundle, sha)
    assert add_classes(src, {"c_99": values(99)}) == ["c_99"]  # the lock was released by the kills
    assert state(bundle, sha) == before + ["c_99"]
    folder = registry_dir(sha)
    assert not [f for f in folder.iterdir() if f.name.startswith(".")]  # killed writers' temp files are gone


def test_concurrent_writers_serialise(ctx, tmp_path, dkgzsl_home):
    bundle = tiny_bundle(tmp_path / "b")
    src = f"local-dir:{bundle}"
    ready, go = [ctx.Event(), ctx.Event()], ctx.Event()
    procs = [ctx.Process(target=_child_add, args=(str(dkgzsl_home), src, [f"{w}_{i}" for i in range(4)], r, go))
             for w, r in zip(("a", "b"), ready)]
    for p in procs:
        p.start()
    for r in ready:
        assert r.wait(60)
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    names = list_user_classes(src)
    assert sorted(names) == sorted([f"a_{i}" for i in range(4)] + [f"b_{i}" for i in range(4)])


def test_a_failure_at_any_write_leaves_old_or_new(tmp_path, monkeypatch):
    """Deterministic companion of the SIGKILL test: fail the k-th file write of a commit, for every k."""
    bundle = tiny_bundle(tmp_path / "b")
    src, sha = f"local-dir:{bundle}", load_bundle(bundle).config.weights_sha256
    add_classes(src, {"c_0": values(0)})
    real, calls = atomic.atomic_write_bytes, []

    def counting(path, data):
        calls.append(path)
        return real(path, data)

    import dkgzsl_app.classes.registry as registry

    monkeypatch.setattr(registry, "atomic_write_bytes", counting)
    add_classes(src, {"c_1": values(1)})
    writes = len(calls)
    assert writes == 3  # class table, head, manifest
    for k in range(writes):
        calls.clear()

        def failing(path, data, k=k):
            calls.append(path)
            if len(calls) == k + 1:
                raise KeyboardInterrupt  # like a crash: the commit stops here
            return real(path, data)

        monkeypatch.setattr(registry, "atomic_write_bytes", failing)
        with pytest.raises(KeyboardInterrupt):
            add_classes(src, {f"c_{k + 2}": values(k + 2)})
        assert state(bundle, sha) == ["c_0", "c_1"]
