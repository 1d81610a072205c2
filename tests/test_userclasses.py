"""User classes through the Python API: the registry, the classifier's view of it, exact undo, tampering."""
import hashlib
import shutil

import numpy as np
import pytest
import torch

import dkgzsl_app
from dkgzsl_app.cache import FeatureCache
from dkgzsl_app.classes import (UserClassWarning, add_classes, list_user_classes, remove_classes, rename_class,
                                repair_classes, with_user_classes)
from dkgzsl_app.classes.registry import RegistryError, locked, read_registry, registry_dir
from dkgzsl_app.locations import data_dir
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.errors import DataError

from tui_helpers import make_bundle, make_photos
from userclass_helpers import ATTRS, tiny_bundle

pytestmark = pytest.mark.filterwarnings("ignore:.*generated features")  # untrained models: close classes
HOT_CAT = {"furry": 1, "hot": 1, "ceramic": 0, "size": 0.5}


@pytest.fixture
def tiny(tmp_path):
    return tiny_bundle(tmp_path / "bundle")


@pytest.fixture(scope="module")
def photo_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("photo-bundle") / "b")


def folder_digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_add_list_rename_remove_leave_the_bundle_alone(tiny):
    src, before = f"local-dir:{tiny}", folder_digest(tiny)
    assert list_user_classes(src) == []
    assert add_classes(src, {"hot_cat": HOT_CAT, "big_pot": {"furry": 0, "hot": 1, "ceramic": 1, "size": 1}}) \
        == ["hot_cat", "big_pot"]
    sha = load_bundle(tiny).config.weights_sha256
    folder = registry_dir(sha)
    assert folder.parent == data_dir() / "classes" and (folder / "manifest.json").is_file()
    assert list_user_classes(src) == ["hot_cat", "big_pot"]
    head = read_registry(folder, ATTRS).weight.copy()
    rename_class(src, "hot_cat", "warm_cat")
    assert list_user_classes(src) == ["warm_cat", "big_pot"]
    np.testing.assert_array_equal(read_registry(folder, ATTRS).weight, head)  # a rename does not refit
    assert remove_classes(src, ["big_pot"]) == ["big_pot"]
    assert list_user_classes(src) == ["warm_cat"]
    remove_classes(src, ["warm_cat"])
    assert list_user_classes(src) == [] and folder_digest(tiny) == before
    leftovers = sorted(p.name for p in folder.iterdir())
    assert leftovers == ["lock", "manifest.json"]  # older heads and class tables were collected


def test_same_registry_gives_the_same_head(tiny, tmp_path, monkeypatch):
    src = f"local-dir:{tiny}"
    add_classes(src, {"hot_cat": HOT_CAT})
    add_classes(src, {"b": {"furry": 0.2, "hot": 0.3, "ceramic": 0.9, "size": 0.1}})
    sha = load_bundle(tiny).config.weights_sha256
    first = read_registry(registry_dir(sha), ATTRS)
    monkeypatch.setenv("DKGZSL_HOME", str(tmp_path / "other-home"))
    add_classes(src, {"hot_cat": HOT_CAT, "b": {"furry": 0.2, "hot": 0.3, "ceramic": 0.9, "size": 0.1}})
    second = read_registry(registry_dir(sha), ATTRS)
    np.testing.assert_array_equal(first.weight, second.weight)
    np.testing.assert_array_equal(first.bias, second.bias)


def test_the_view_keeps_builtin_logits_bit_for_bit(tiny):
    add_classes(f"local-dir:{tiny}", {"hot_cat": HOT_CAT})
    bundle = load_bundle(tiny)
    view = with_user_classes(bundle)
    assert view.config.class_names[-1] == "hot_cat" and view.origins[-1] == "user"
    assert view.config.seen[-1] is False and bundle.config.num_classes == 5  # the bundle is untouched
    x = torch.rand(7, 24)
    with torch.no_grad():
        old = bundle.model.student(bundle.model.scale_features(x))[1]
        new = view.model.student(view.model.scale_features(x))[1]
    assert new.shape == (7, 6) and torch.equal(new[:, :5], old)
    assert view.model.class_attributes.shape == (6, 4) and bundle.model.class_attributes.shape == (5, 4)


def test_identical_vector_warns_and_repeat_is_skipped(tiny):
    src = f"local-dir:{tiny}"
    with pytest.warns(UserClassWarning, match="same attribute values as 'cat'"):
        add_classes(src, {"kitty": {"furry": 1, "hot": 0, "ceramic": 0, "size": 0.5}})
    with pytest.warns(UserClassWarning, match="already a user class with the same values; skipped"):
        assert add_classes(src, {"kitty": {"furry": 1, "hot": 0, "ceramic": 0, "size": 0.5}}) == []


@pytest.mark.parametrize("classes, pattern", [
    ({"x": {**HOT_CAT, "furyy": 1}}, "class 'x': unknown attribute 'furyy' \\(did you mean 'furry'\\?\\)"),
    ({"x": {"furry": 1, "hot": 1, "ceramic": 0}}, "class 'x': no value for attribute\\(s\\) 'size'"),
    ({"x": {**HOT_CAT, "hot": "warm"}}, "class 'x', attribute 'hot': 'warm' is not a number"),
    ({"x": {**HOT_CAT, "hot": float("nan")}}, "attribute 'hot'.*not a finite number"),
    ({"x": {**HOT_CAT, "hot": 7}}, "attribute 'hot': 7 is out of range.*span 0 to 1.*-0.1 to 1.1.*10% slack"),
    ({"cat": HOT_CAT}, "'cat' is a built-in \\(seen\\) class"),
    ({" x": HOT_CAT}, "not usable"),
])
def test_api_errors_are_actionable(tiny, classes, pattern):
    with pytest.raises(DataError, match=pattern):
        add_classes(f"local-dir:{tiny}", classes)
    assert list_user_classes(f"local-dir:{tiny}") == []


def test_remove_and_rename_errors(tiny):
    src = f"local-dir:{tiny}"
    add_classes(src, {"hot_cat": HOT_CAT})
    with pytest.raises(DataError, match="'hot_kat' is not a user class.*did you mean 'hot_cat'"):
        remove_classes(src, ["hot_kat"])
    with pytest.raises(DataError, match="built-in class"):
        remove_classes(src, ["cat"])
    with pytest.raises(DataError, match="exists already"):
        rename_class(src, "hot_cat", "dog")


def test_tampered_registry_names_the_file_and_the_fix(tiny):
    src = f"local-dir:{tiny}"
    add_classes(src, {"hot_cat": HOT_CAT, "b": {"furry": 0, "hot": 0, "ceramic": 1, "size": 1}})
    folder = registry_dir(load_bundle(tiny).config.weights_sha256)
    head = next(folder.glob("head-*.safetensors"))
    data = bytearray(head.read_bytes())
    data[-1] ^= 1
    head.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=f"{head.name} does not match the sha256.*dkgzsl classes repair "
                                            f"--model local-dir:{tiny}`.*set-aside-.*nothing is deleted"):
        with_user_classes(load_bundle(tiny))
    remove_classes(src, ["b"])  # removing (or adding) refits from the class table and heals the head
    assert with_user_classes(load_bundle(tiny)).config.class_names[-1] == "hot_cat"
    table = next(folder.glob("classes-*.csv"))
    table.write_text(table.read_text().replace("hot_cat", "not_cat"))
    with pytest.raises(RegistryError, match="classes-.*csv does not match.*dkgzsl classes repair --model"):
        list_user_classes(src)


def test_repair_keeps_the_entries_that_verify_and_sets_the_rest_aside(tiny):
    """Defect 4: a hand-edited class table used to be a dead end (remove failed like classify)."""
    src = f"local-dir:{tiny}"
    add_classes(src, {"hot_cat": HOT_CAT, "b": {"furry": 0, "hot": 0, "ceramic": 1, "size": 1}})
    folder = registry_dir(load_bundle(tiny).config.weights_sha256)
    table = next(folder.glob("classes-*.csv"))
    edited = table.read_text().replace("b,user,0,0,1,1", "b,user,0,0,1,0.5")
    assert edited != table.read_text()
    table.write_text(edited)
    with pytest.raises(RegistryError):
        remove_classes(src, ["b"])
    done = repair_classes(src)
    assert done.kept == ["hot_cat"] and done.lost == ["b"] and "does not match" in done.problem
    assert (done.set_aside / table.name).read_text() == edited  # the user's edit is kept, not deleted
    assert (done.set_aside / "manifest.json").is_file() and done.set_aside.parent == folder
    assert list_user_classes(src) == ["hot_cat"]
    assert with_user_classes(load_bundle(tiny)).config.class_names[-1] == "hot_cat"
    assert repair_classes(src).set_aside is None  # verifies now: nothing to do
    add_classes(src, {"b": {"furry": 0, "hot": 0, "ceramic": 1, "size": 0.5}})  # and the lost one comes back
    assert list_user_classes(src) == ["hot_cat", "b"]


def test_repair_of_a_garbled_manifest_keeps_nothing_but_deletes_nothing(tiny):
    src = f"local-dir:{tiny}"
    add_classes(src, {"hot_cat": HOT_CAT})
    folder = registry_dir(load_bundle(tiny).config.weights_sha256)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(RegistryError, match="not a valid class-registry manifest.*dkgzsl classes repair"):
        list_user_classes(src)
    done = repair_classes(src)
    assert done.kept == [] and done.set_aside is not None
    assert sorted(p.name.split("-")[0] for p in done.set_aside.iterdir()) == ["classes", "head", "manifest.json"]
    assert list_user_classes(src) == []


def test_a_held_lock_times_out_with_a_clear_error(tiny):
    """The old lock ignored its timeout on POSIX (flock blocked forever)."""
    folder = registry_dir(load_bundle(tiny).config.weights_sha256)
    with locked(folder):
        with pytest.raises(RegistryError, match="another dkgzsl is editing classes for this model.*wait"):
            with locked(folder, timeout=0.2):
                pass
    with locked(folder, timeout=0.2):  # released: free again
        pass


def test_classifier_gets_user_classes_and_removal_restores_scores_exactly(photo_bundle, tmp_path):
    src = f"local-dir:{photo_bundle}"
    photos = [str(p) for p in make_photos(tmp_path / "photos")][:3]
    cache = FeatureCache(tmp_path / "features.sqlite3")
    clf = dkgzsl_app.load(src, device="cpu")
    before = clf.classify(photos, top_k=3, workers=0, cache=cache)
    add_classes(src, {"hot_cat": {"furry": 1, "hot": 1, "ceramic": 0}})

    fresh = dkgzsl_app.load(src, device="cpu")  # a new load sees the registry ...
    calls = []
    real = fresh.backbone.features
    fresh.backbone.features = lambda *a, **k: calls.append(1) or real(*a, **k)
    with_user = fresh.classify(photos, top_k=4, workers=0, cache=cache)
    assert calls == []  # ... and re-scores cached features: the backbone did not run
    assert {g.name: g.origin for g in with_user[0].top}["hot_cat"] == "user"

    backbone = clf.backbone
    clf.reload_classes()  # the TUI's path: same backbone, new head and class list
    assert clf.backbone is backbone and clf.class_names[-1] == "hot_cat"
    again = clf.classify(photos, top_k=4, workers=0, cache=cache)
    assert [[(g.name, g.score) for g in p.top] for p in again] == [[(g.name, g.score) for g in p.top] for p in with_user]

    remove_classes(src, ["hot_cat"])
    clf.reload_classes()
    assert clf.bundle is clf.base_bundle and clf.model is clf.base_bundle.model
    after = clf.classify(photos, top_k=3, workers=0, cache=cache)
    assert [[(g.name, g.score, g.probability) for g in p.top] for p in after] == \
        [[(g.name, g.score, g.probability) for g in p.top] for p in before]  # bit-for-bit, not approx


def test_registry_lives_outside_the_bundle_and_follows_its_weights(tiny, tmp_path):
    copy = shutil.copytree(tiny, tmp_path / "copy")
    add_classes(f"local-dir:{tiny}", {"hot_cat": HOT_CAT})
    assert list_user_classes(f"local-dir:{copy}") == ["hot_cat"]  # same weights, same registry
    assert not any("manifest" in p.name for p in tiny.iterdir())


def test_progress_and_batches_bound_memory_without_changing_the_fit(tiny):
    """Defect 1 (10,000-row add-class): the loss is computed in batches of features, never as one (M, C + n)
    matrix, and progress is reported per generator pass and per solver iteration."""
    from dkgzsl_app.classes.refit import RefitConfig, fit_user_rows

    bundle = load_bundle(tiny)
    users = np.array([[1, 1, 0, 0.5], [0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]], np.float32)
    calls = []
    one = fit_user_rows(bundle.model, bundle.config, users, "sha", RefitConfig(),
                        progress=lambda *a: calls.append(a))
    small = RefitConfig(batch_entries=50, chunk=40)  # batches of 6 features, generator passes of 2 classes
    batched = fit_user_rows(bundle.model, bundle.config, users, "sha", small)
    np.testing.assert_allclose(batched[0], one[0], rtol=1e-3, atol=1e-4)
    assert batched[2]["taken"] == one[2]["taken"]
    phases = [c[0] for c in calls]
    assert phases[0] == "generate" and calls[phases.index("fit") - 1] == ("generate", 8, 8)
    assert calls[-1] == ("fit", RefitConfig().max_iter, RefitConfig().max_iter)


def test_too_many_classes_are_refused_before_any_work(tiny, monkeypatch):
    import dkgzsl_app.classes.refit as refit
    import dkgzsl_app.classes.validate as validate

    monkeypatch.setattr(validate, "MAX_USER_CLASSES", 2)
    monkeypatch.setattr(refit, "fit_user_rows", lambda *a, **k: pytest.fail("fitted before the limit check"))
    many = {f"c{i}": {"furry": i / 3, "hot": 1, "ceramic": 0, "size": 0.5} for i in range(3)}
    with pytest.raises(DataError, match="3 new classes would make 3 user classes; a model can have at most 2.*"
                                        "Add at most 2 more"):
        add_classes(f"local-dir:{tiny}", many)
    assert list_user_classes(f"local-dir:{tiny}") == []


def test_the_repair_advice_names_the_model_as_the_user_would():
    from dkgzsl_app.classes.registry import repair_command
    from dkgzsl_app.sources import DEFAULT_MODEL, bundled_models, source_for_folder

    assert source_for_folder(bundled_models()[DEFAULT_MODEL]) is None  # the default model needs no --model
    assert repair_command(None) == repair_command(DEFAULT_MODEL) == "dkgzsl classes repair"
    assert repair_command("local-dir:/my models/b") == "dkgzsl classes repair --model 'local-dir:/my models/b'"
