"""The feature cache never ends a run: damaged files are set aside and rebuilt, unwritable locations turn
it off, and each is said once through ``warn`` (never a Python warning with a source line)."""
import os
import sqlite3
import subprocess
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

import dkgzsl_app
from dkgzsl_app.cache import FeatureCache, open_cache
from dkgzsl_app.cli import app
from dkgzsl_app.locations import feature_cache_file
from test_classify import ASSETS, bundle_dir  # noqa: F401  (fixture)

runner = CliRunner()
PHOTOS = [str(ASSETS / "chelsea.jpg"), str(ASSETS / "coffee.jpg")]


def _populate(path, n=40, dim=1280):
    cache = FeatureCache(path)
    rng = np.random.default_rng(0)
    cache.put({f"{i:040x}": rng.standard_normal(dim).astype(np.float32) for i in range(n)}, "other-backbone")
    return cache


def _garble(path, start=4096, stop=8192):
    """Overwrite pages after the header with noise: SQLite still opens the file, reads then fail."""
    assert path.stat().st_size > stop
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(np.random.default_rng(1).integers(0, 256, stop - start, dtype=np.uint8).tobytes())


def _top(preds):
    return [[(g.name, round(g.score, 5)) for g in p.top] for p in preds]


def test_garbled_pages_are_set_aside_and_classify_recovers_saying_so_once(bundle_dir, tmp_path):  # noqa: F811
    clf = dkgzsl_app.load(str(bundle_dir), device="cpu")
    path = tmp_path / "features.sqlite3"
    cache = _populate(path)
    cold = _top(clf.classify(PHOTOS, workers=0, cache=cache))
    cache.close()
    _garble(path)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):  # what every classify used to die of
        sqlite3.connect(path).execute("SELECT * FROM features").fetchall()

    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _top(clf.classify(PHOTOS, workers=0, cache=FeatureCache(path, warn=notes.append)))
    assert again == cold
    assert len(notes) == 1 and "damaged" in notes[0] and "malformed" in notes[0], notes
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    # the rebuilt cache is whole and warm: a third run is silent and skips the backbone
    notes.clear()
    cache = FeatureCache(path, warn=notes.append)
    assert len(cache.get([dkgzsl_app.cache.file_digest(p) for p in PHOTOS],
                         dkgzsl_app.cache.backbone_key(clf.backbone.config, clf.precision, channels_last=True))) == 2
    assert notes == []


def test_damage_found_after_opening_is_recovered_too(tmp_path):
    path = tmp_path / "f.sqlite3"
    _populate(path).close()
    notes = []
    cache = FeatureCache(path, warn=notes.append)
    cache.get(["0" * 40], "other-backbone")
    real = cache.db

    class Broken:  # the next statement hits a damaged page
        def execute(self, *a, **k):
            raise sqlite3.DatabaseError("database disk image is malformed")

        def close(self):
            real.close()

    cache.db = Broken()
    assert cache.get(["0" * 40], "other-backbone") == {}
    cache.put({"a": np.ones(8, np.float32)}, "bb")
    assert list(cache.get(["a"], "bb")) == ["a"]
    assert len(notes) == 1 and "damaged" in notes[0]


def test_a_damaged_entry_is_dropped_not_used(tmp_path):
    path = tmp_path / "f.sqlite3"
    cache = FeatureCache(path)
    vec = np.arange(300, dtype=np.float32)
    cache.put({"a": vec, "b": vec + 1}, "bb")
    with cache.db:  # one flipped byte inside a's blob, as a bad sector or a stray write would leave it
        blob = bytearray(cache.db.execute("SELECT data FROM features WHERE digest = 'a'").fetchone()[0])
        blob[17] ^= 0xFF
        cache.db.execute("UPDATE features SET data = ? WHERE digest = 'a'", (bytes(blob),))
    notes = []
    cache.warn = notes.append
    got = cache.get(["a", "b"], "bb")
    assert list(got) == ["b"] and np.array_equal(got["b"], vec + 1)
    assert len(notes) == 1 and "damaged" in notes[0]
    assert cache.db.execute("SELECT count(*) FROM features WHERE digest = 'a'").fetchone()[0] == 0


def test_a_cache_of_the_previous_schema_is_emptied_not_misread(tmp_path):
    path = tmp_path / "f.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE features (digest TEXT, backbone TEXT, dim INTEGER, data BLOB, bytes INTEGER, "
               "used REAL, PRIMARY KEY (digest, backbone))")
    db.execute("INSERT INTO features VALUES ('a', 'bb', 2, ?, 8, 0)", (np.ones(2, np.float32).tobytes(),))
    db.commit()
    db.close()
    notes = []
    cache = FeatureCache(path, warn=notes.append)
    assert cache.get(["a"], "bb") == {} and notes == []
    cache.put({"a": np.ones(2, np.float32)}, "bb")
    assert list(cache.get(["a"], "bb")) == ["a"]


def test_a_cache_location_that_cannot_be_created_turns_the_cache_off(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    notes = []
    assert open_cache(blocker / "cache" / "features.sqlite3", warn=notes.append) is None
    assert len(notes) == 1 and "cannot be used" in notes[0] and "DKGZSL_HOME" in notes[0]


class ReadOnlyCache(FeatureCache):
    """The database opened read-only, as a file without write permission (or on a read-only mount) is."""

    def _connect(self):
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)


def test_a_read_only_cache_is_read_and_then_left_alone(tmp_path):
    path = tmp_path / "f.sqlite3"
    cache = FeatureCache(path)
    cache.put({"a": np.ones(4, np.float32)}, "bb")
    cache.close()
    notes = []
    ro = ReadOnlyCache(path, warn=notes.append)
    assert ro.usable and notes == []
    assert list(ro.get(["a"], "bb")) == ["a"]  # the hit is used; marking it recently used fails
    assert len(notes) == 1 and "readonly" in notes[0] and "running without it" in notes[0]
    ro.put({"b": np.ones(4, np.float32)}, "bb")  # no-op now, no second notice
    assert ro.get(["a", "b"], "bb") == {} and len(notes) == 1


def _immutable(path, on: bool) -> bool:
    r = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return r.returncode == 0


def test_cli_classify_runs_without_an_unwritable_cache_with_one_warning(bundle_dir, dkgzsl_home):  # noqa: F811
    """DKGZSL_HOME in a folder nobody may write to: root included (chattr +i), or as a normal user (0555)."""
    dkgzsl_home.mkdir()
    if os.geteuid() != 0:
        dkgzsl_home.chmod(0o555)
    elif not _immutable(dkgzsl_home, True):
        pytest.skip("running as root where chattr +i is not available: no way to make a folder read-only")
    try:
        args = ["classify", *PHOTOS, "--model", str(bundle_dir), "--format", "json", "--device", "cpu",
                "--workers", "0"]
        r = runner.invoke(app, args)
    finally:
        _immutable(dkgzsl_home, False) if os.geteuid() == 0 else dkgzsl_home.chmod(0o755)
    assert r.exit_code == 0, r.output
    assert r.stderr.count("cannot be used") == 1, r.stderr
    assert "Traceback" not in r.output and "UserWarning" not in r.stderr
    assert not feature_cache_file().exists()


def test_cli_classify_recovers_from_a_garbled_cache_saying_so_once(bundle_dir, dkgzsl_home):  # noqa: F811
    args = ["classify", *PHOTOS, "--model", str(bundle_dir), "--format", "json", "--device", "cpu",
            "--workers", "0"]
    _populate(feature_cache_file()).close()
    assert runner.invoke(app, args).exit_code == 0
    _garble(feature_cache_file())
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert r.stderr.count("damaged") == 1 and "UserWarning" not in r.stderr, r.stderr
    r = runner.invoke(app, args)  # and the next run is clean
    assert r.exit_code == 0 and "damaged" not in r.stderr


def test_tui_engine_keeps_an_in_memory_cache_when_the_disk_one_is_unusable(bundle_dir, dkgzsl_home):  # noqa: F811
    from dkgzsl_app.tui.engine import Engine, EngineOptions, MemoryFeatureCache

    dkgzsl_home.mkdir()
    (dkgzsl_home / "cache").write_text("a file where the cache folder should be")
    engine = Engine(EngineOptions(model=str(bundle_dir), device="cpu", workers=0, use_cache=True))
    engine.load()
    assert isinstance(engine.cache, MemoryFeatureCache)
    assert len(engine.notices) == 1 and "cannot be used" in engine.notices[0]
