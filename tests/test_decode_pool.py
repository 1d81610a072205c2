"""Decoding workers kept across classify's chunks (issue 17, extract.decode_pool) and the next chunk extracted while
this one is scored (stream.classify_chunks overlap): the same rows byte for byte as a DataLoader per chunk and
chunks one after the other (a bad file among them, a feature cache cold, half warm and warm), one set of worker
processes for the whole run, and none left running afterwards, after an error or Ctrl-C too."""
import multiprocessing

import pytest

import dkgzsl_app
from dkgzsl_app import extract, stream
from dkgzsl_app.cache import FeatureCache
from dkgzsl_app.stream import classify_photos

CHUNK, BATCH, WORKERS = 5, 2, 2


@pytest.fixture(autouse=True)
def two_threads():
    """Two torch threads (two forward streams: the overlap runs), whatever an earlier test left behind."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clf():
    return dkgzsl_app.load("demo-shapes", device="cpu", offline=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """13 demo photos and a broken one in the middle: three chunks of 5, each of 3 batches of 2 or 1."""
    from dkgzsl_app.trainer.render import write_test_photos

    folder = tmp_path_factory.mktemp("pool")
    paths = sorted(str(p) for p in write_test_photos(folder, per_class=1, seed=5))[:13]
    broken = folder / "m_broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    return paths[:7] + [str(broken)] + paths[7:]


@pytest.fixture
def loaders(monkeypatch):
    """DataLoaders made, by kind (persistent: the pool's; per call: the old way)."""
    class Made(list):
        pass

    made = Made()
    real = extract.DataLoader

    def counting(*args, **kwargs):
        made.append("persistent" if kwargs.get("persistent_workers") else "per call")
        loader = real(*args, **kwargs)
        objects.append(loader)
        return loader

    objects = made.objects = []  # the DataLoaders themselves

    monkeypatch.setattr(extract, "DataLoader", counting)
    return made


def run(clf, paths, out, cache=None, pool=True, warn=None):
    """classify_photos as ``dkgzsl classify -f jsonl -o out`` runs it; ``pool=False``: as before issue 17's
    change, a DataLoader per chunk and chunks one after the other (no extraction overlapped with scoring)."""
    import functools

    with pytest.MonkeyPatch.context() as mp:
        if not pool:
            mp.setattr(extract, "decode_pool", lambda workers: stream._null())
            mp.setattr(stream, "classify_chunks", functools.partial(stream.classify_chunks, overlap=False))
        return classify_photos(clf, paths, [], "jsonl", out, model="demo-shapes", batch_size=BATCH, workers=WORKERS,
                               cache=cache, chunk=CHUNK, progress=False, warn=warn or (lambda m: None))


def test_one_set_of_workers_gives_the_per_chunk_rows_byte_for_byte(clf, photos, tmp_path, loaders):
    warned = []
    summary = run(clf, photos, tmp_path / "pool.jsonl", warn=warned.append)
    assert loaders == ["persistent"]  # one DataLoader, one set of workers, for the three chunks
    assert multiprocessing.active_children() == []
    workers = loaders.objects[0]._iterator._workers  # forked by the extracting thread: they exit cleanly
    assert len(workers) == WORKERS and [w.exitcode for w in workers] == [0] * WORKERS
    loaders.clear()
    old = run(clf, photos, tmp_path / "old.jsonl", pool=False)
    assert loaders == ["per call"] * 3
    assert (tmp_path / "pool.jsonl").read_bytes() == (tmp_path / "old.jsonl").read_bytes()
    assert summary.rows == old.rows == 14 and summary.failed == old.failed == 1
    assert len(warned) == 1 and "m_broken.jpg" in warned[0]


def test_the_feature_cache_cold_half_warm_and_warm(clf, photos, tmp_path, loaders):
    reference = tmp_path / "ref.jsonl"
    run(clf, photos, reference, pool=False)
    cache = FeatureCache(tmp_path / "features.sqlite3")
    try:
        run(clf, photos[:6], tmp_path / "first.jsonl", cache=cache)  # the first chunk and one photo cached
        loaders.clear()
        run(clf, photos, tmp_path / "half.jsonl", cache=cache)
        assert loaders == ["persistent"]
        loaders.clear()
        run(clf, photos, tmp_path / "warm.jsonl", cache=cache)
        assert loaders == ["persistent"]  # the broken photo is never cached: decoded (and failing) again
    finally:
        cache.close()
    for name in ("half", "warm"):
        assert (tmp_path / f"{name}.jsonl").read_bytes() == reference.read_bytes(), name
    assert multiprocessing.active_children() == []


def test_progress_counts_every_photo_once(clf, photos):
    ticks = []
    with extract.decode_pool(WORKERS):
        for start in range(0, len(photos), CHUNK):
            clf.classify(photos[start:start + CHUNK], batch_size=BATCH, workers=WORKERS, on_batch=ticks.append)
    assert sum(ticks) == len(photos) and max(ticks) <= BATCH
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_no_worker_left_after_ctrl_c_or_an_error(clf, photos, tmp_path, error):
    seen = []

    def warn(message):  # the broken photo's warning comes in the second chunk, with the workers running
        seen.append(len(multiprocessing.active_children()))
        if len(seen) == 1:
            raise error("stop")

    with pytest.raises(error):
        run(clf, photos, tmp_path / "cut.jsonl", warn=warn)
    assert seen[0] == WORKERS  # the pool's workers were alive mid-run, so the next check can fail
    if error is KeyboardInterrupt:  # classify's "interrupted: --resume carries on" note, the workers gone by then
        assert seen[1:] == [0]
    assert multiprocessing.active_children() == []
    rows = (tmp_path / "cut.jsonl").read_text().splitlines()
    assert len(rows) == CHUNK  # the first chunk's rows were written before the interruption


def test_the_next_chunk_is_extracted_while_this_one_is_scored(clf, photos, tmp_path, monkeypatch):
    import threading

    events = []
    real_features, real_classify = clf.features, clf.classify

    def features(images, *a, **k):
        events.append(("features", images[0], threading.current_thread().name))
        return real_features(images, *a, **k)

    def classify(images, *a, **k):
        events.append(("score", images[0], threading.current_thread().name))
        return real_classify(images, *a, **k)

    monkeypatch.setattr(clf, "features", features)
    monkeypatch.setattr(clf, "classify", classify)
    run(clf, photos, tmp_path / "overlap.jsonl")
    firsts = photos[::CHUNK]
    assert [e[1] for e in events if e[0] == "features"] == firsts  # every chunk extracted once, in order
    assert [e[1] for e in events if e[0] == "score"] == firsts
    assert events.index(("features", firsts[1], events[1][2])) < events.index(("score", firsts[0], "MainThread"))
    assert all(name != "MainThread" for kind, _, name in events if kind == "features")
    run(clf, photos, tmp_path / "plain.jsonl", pool=False)
    assert (tmp_path / "overlap.jsonl").read_bytes() == (tmp_path / "plain.jsonl").read_bytes()
