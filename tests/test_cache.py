"""The feature cache: warm runs skip the backbone and score identically; limits, corruption, crashes."""
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

import dkgzsl_app
from dkgzsl_app.cache import FeatureCache, backbone_key
from dkgzsl_app.cli import app
from dkgzsl_app.locations import feature_cache_file
from test_classify import ASSETS, bundle_dir  # noqa: F401  (fixture)

runner = CliRunner()


def test_warm_run_skips_the_backbone_and_matches(bundle_dir, tmp_path, monkeypatch):  # noqa: F811
    clf = dkgzsl_app.load(str(bundle_dir), device="cpu")
    cache = FeatureCache(tmp_path / "f.sqlite3")
    photos = [str(ASSETS / "chelsea.jpg"), str(ASSETS / "coffee.jpg")]
    cold = clf.classify(photos, workers=0, cache=cache)

    def no_backbone(*a, **k):
        raise AssertionError("the backbone ran on a warm cache")

    monkeypatch.setattr(clf.backbone, "features", no_backbone)
    warm = clf.classify(photos, workers=0, cache=cache)
    assert [[(g.name, g.score) for g in p.top] for p in warm] == [[(g.name, g.score) for g in p.top] for p in cold]


def test_other_preprocessing_is_another_key(bundle_dir):  # noqa: F811
    clf = dkgzsl_app.load(str(bundle_dir), device="cpu")
    cfg = clf.backbone.config
    key = backbone_key(cfg)
    cfg.crop_pct = 1.0
    assert backbone_key(cfg) != key


def test_size_limit_evicts_least_recently_used(tmp_path):
    cache = FeatureCache(tmp_path / "f.sqlite3", limit_bytes=3 * 400)  # room for three 100-d float32 vectors
    for i in range(3):
        cache.put({f"d{i}": np.full(100, i, np.float32)}, "bb")
        time.sleep(0.01)
    cache.get(["d0"], "bb")  # d0 is now the most recently used
    time.sleep(0.01)
    cache.put({"d3": np.zeros(100, np.float32)}, "bb")
    assert sorted(cache.get(["d0", "d1", "d2", "d3"], "bb")) == ["d0", "d2", "d3"]
    assert cache.size_bytes() <= 3 * 400


def test_corrupt_cache_file_is_set_aside(tmp_path):
    path = tmp_path / "f.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said through warn, never as a Python warning with a source line
        cache = FeatureCache(path, warn=notes.append)
    assert len(notes) == 1 and "moved it to f.sqlite3.corrupt-" in notes[0]
    cache.put({"a": np.ones(4, np.float32)}, "bb")
    assert list(cache.get(["a"], "bb")) == ["a"]
    assert any(p.name.startswith("f.sqlite3.corrupt-") for p in tmp_path.iterdir())


WRITER = """
import sys, numpy as np
from dkgzsl_app.cache import FeatureCache
c = FeatureCache(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    c.put({f"k{i}-{j}": np.full(256, i, np.float32) for j in range(50)}, "bb")
    i += 1
"""


@pytest.mark.parametrize("delay", [0.2, 0.5, 0.9])
def test_sigkill_mid_write_leaves_a_readable_cache(tmp_path, delay):
    path = tmp_path / "f.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    notes = []
    cache = FeatureCache(path, warn=notes.append)
    assert notes == []  # no "moved aside": the file must still be a valid database
    assert not any(".corrupt-" in p.name for p in tmp_path.iterdir())
    rows = cache.db.execute("SELECT digest, dim, data FROM features").fetchall()
    batches = {}
    for digest, dim, data in rows:
        vec = np.frombuffer(data, np.float32)
        i = int(digest[1:].split("-")[0])
        assert dim == 256 and (vec == i).all()
        batches[i] = batches.get(i, 0) + 1
    assert batches, "the writer never committed: the kill came too early to test anything"
    assert all(n == 50 for n in batches.values())  # each put is all or nothing


def test_cli_uses_the_cache_under_dkgzsl_home_unless_told_not_to(bundle_dir, dkgzsl_home):  # noqa: F811
    args = ["classify", str(ASSETS / "chelsea.jpg"), "--model", str(bundle_dir), "--format", "json", "--device", "cpu"]
    r = runner.invoke(app, [*args, "--no-cache"])
    assert r.exit_code == 0 and not feature_cache_file().exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0
    assert feature_cache_file().is_relative_to(dkgzsl_home) and feature_cache_file().exists()
