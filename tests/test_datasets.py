"""Data set adapters (dkgzsl_app.datasets) on tiny fake downloads in the official layouts."""
from __future__ import annotations

import numpy as np
import pytest

from dataset_trees import classes, make_awa2, make_cub, make_sun
from dkgzsl_app.datasets import SPLITS, feature_set_from_dataset, load_dataset
from dkgzsl_app.models.errors import DataError


def shipped(name, file):
    return (SPLITS / name / file).read_text().split()


@pytest.mark.parametrize("dataset, make, n_cls, n_seen, n_attr", [
    ("cub", make_cub, 200, 150, 312), ("awa2", make_awa2, 50, 40, 85), ("sun", make_sun, 717, 645, 102)])
def test_adapters_read_the_official_layouts_with_the_shipped_class_split(tmp_path, dataset, make, n_cls, n_seen, n_attr):
    make(tmp_path, per_class=2, jpeg=False)
    ds = load_dataset(dataset, tmp_path, allow_partial=True)  # root may be the archive's parent folder
    name = ds.name
    assert ds.split == "partial" and len(ds.paths) == 2 * n_cls and all(p.is_file() for p in ds.paths)
    assert ds.table.names == shipped(name, "allclasses.txt")
    seen = [n for n, o in zip(ds.table.names, ds.table.origins) if o == "seen"]
    assert sorted(seen) == sorted(shipped(name, "trainvalclasses.txt")) and len(seen) == n_seen
    unseen = {n for n, o in zip(ds.table.names, ds.table.origins) if o == "unseen"}
    assert unseen == set(shipped(name, "testclasses.txt"))
    assert ds.table.values.shape == (n_cls, n_attr) and len(ds.table.attribute_names) == n_attr
    np.testing.assert_allclose(np.linalg.norm(ds.table.values, axis=1), 1.0, rtol=1e-6)  # xlsa17's att: L2
    # each photo labelled by its folder; every seen photo in trainval or test_seen, every unseen one in test_unseen
    for i in (0, len(ds.paths) - 1):
        assert ds.table.names[ds.labels[i]].replace("/", "_") in str(ds.paths[i]).replace("/", "_")
    names = np.array(ds.table.names)
    assert set(names[ds.labels[ds.test_unseen]]) == unseen
    assert not set(names[ds.labels[np.r_[ds.trainval, ds.test_seen]]]) & unseen
    assert len(ds.trainval) == len(ds.test_seen) == n_seen  # 2 photos each: one kept, one held out
    assert sorted(np.r_[ds.trainval, ds.test_seen, ds.test_unseen].tolist()) == list(range(len(ds.paths)))
    if name != "AWA2":  # xlsa17's validation classes: seen classes that val_loc has and train_loc lacks
        assert sorted(names[ds.val_classes]) == sorted(shipped(name, "valclasses.txt"))
        assert all(ds.table.origins[c] == "seen" for c in ds.val_classes)


def test_a_complete_download_gets_the_proposed_image_split(tmp_path):
    make_sun(tmp_path, per_class=20, jpeg=False)  # SUN: 717 classes × 20 photos, xlsa17's 14,340
    ds = load_dataset("sun", tmp_path)
    assert ds.split == "proposed" and len(ds.paths) == 14340
    assert (len(ds.trainval), len(ds.test_seen), len(ds.test_unseen)) == (10320, 2580, 1440)  # att_splits.mat's
    loc = np.array(shipped("SUN", "test_seen_loc.txt"), int) - 1
    np.testing.assert_array_equal(ds.test_seen, loc)
    assert len(ds.val_classes) == 65


def test_features_keep_the_split_and_drop_unreadable_photos(tmp_path, monkeypatch):
    import dkgzsl_app.image_data as image_data

    make_awa2(tmp_path, per_class=2, jpeg=False)
    ds = load_dataset("awa2", tmp_path, allow_partial=True)
    bad = int(ds.trainval[3])

    def fake_extract(paths, *a, **k):  # photo i → feature i; photo ``bad`` unreadable
        keep = [i for i in range(len(paths)) if i != bad]
        return np.array([[float(i)] * 4 for i in keep], np.float32), keep

    monkeypatch.setattr(image_data, "extract_paths", fake_extract)
    fs = feature_set_from_dataset(ds, backbone=None)
    assert fs.features.shape == (len(ds.paths) - 1, 4) and fs.source.startswith("awa2:")
    photo = fs.features[:, 0].astype(int)  # the photo each row came from
    assert sorted(photo[fs.trainval]) == [i for i in ds.trainval if i != bad]
    np.testing.assert_array_equal(photo[fs.test_seen], ds.test_seen)
    np.testing.assert_array_equal(photo[fs.test_unseen], ds.test_unseen)
    np.testing.assert_array_equal(fs.labels, np.delete(ds.labels, bad))


@pytest.mark.parametrize("dataset, make, remove, message", [
    ("cub", make_cub, "CUB_200_2011/classes.txt", "classes.txt not found (the class names)"),
    ("cub", make_cub, "CUB_200_2011/attributes/class_attribute_labels_continuous.txt", "class_attribute_labels_continuous.txt not found"),
    ("awa2", make_awa2, "Animals_with_Attributes2/predicate-matrix-continuous.txt", "predicate-matrix-continuous.txt not found"),
    ("awa2", make_awa2, "Animals_with_Attributes2/JPEGImages", "JPEGImages not found (the photo folders"),
    ("sun", make_sun, "SUNAttributeDB/images.mat", "images.mat not found in"),
    ("sun", make_sun, "SUNAttributeDB/attributeLabels_continuous.mat", "attributeLabels_continuous.mat not found"),
])
def test_a_missing_file_is_named_with_where_it_is_expected(tmp_path, dataset, make, remove, message):
    import shutil

    make(tmp_path, per_class=1, jpeg=False)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match="official archive|SUNAttributeDB.tar.gz") as e:
        load_dataset(dataset, tmp_path, allow_partial=True)
    assert message in str(e.value)


def test_a_partial_download_is_refused_naming_the_missing_photos(tmp_path):
    top = make_cub(tmp_path, per_class=1, jpeg=False)
    gone = top / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0000.jpg"  # a seen class's only photo
    gone.unlink()
    with pytest.raises(DataError) as e:
        load_dataset("cub", top)
    msg = str(e.value)
    assert "partial download" in msg and "199 of the 11788" in msg and str(gone) in msg and "--partial" in msg
    told = []
    ds = load_dataset("cub", top, allow_partial=True, warn=told.append)  # the class without photos is left out
    assert "002.Laysan_Albatross" not in ds.table.names and len(ds.table.names) == 199
    assert any("1 of the 200 classes have no photos and are left out (1 seen, 0 unseen)" in t for t in told)
    assert len(ds.val_classes) == 50 and max(ds.val_classes) < 199


def test_a_partial_download_of_a_few_classes(tmp_path):
    seen, unseen = shipped("CUB", "trainvalclasses.txt"), shipped("CUB", "testclasses.txt")
    val = shipped("CUB", "valclasses.txt")
    train = [n for n in seen if n not in val]
    top = make_cub(tmp_path / "a", jpeg=False, only={**dict.fromkeys(train[:2] + val[:1], 3), unseen[0]: 2})
    ds = load_dataset("cub", top, allow_partial=True)
    assert sorted(ds.table.names) == sorted(train[:2] + val[:1] + unseen[:1])
    assert [ds.table.names[c] for c in ds.val_classes] == val[:1]  # xlsa17's validation class, re-indexed
    assert (len(ds.trainval), len(ds.test_seen), len(ds.test_unseen)) == (6, 3, 2)
    top = make_cub(tmp_path / "b", jpeg=False, only={train[0]: 2, train[1]: 2, unseen[0]: 2})
    with pytest.raises(DataError, match="photos of 2 seen and 1 unseen classes.*at least 3 seen classes and an unseen"):
        load_dataset("cub", top, allow_partial=True)


def test_bad_layouts_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_dataset("cub", tmp_path / "nowhere")
    with pytest.raises(DataError, match="unknown data set 'flo'; choose one of cub, awa2, sun"):
        load_dataset("flo", tmp_path)
    top = make_awa2(tmp_path, per_class=1, jpeg=False)
    (top / "JPEGImages" / "unicorn").mkdir()
    with pytest.raises(DataError, match="folders that are no AWA2 class: unicorn"):
        load_dataset("awa2", tmp_path, allow_partial=True)
    assert classes("AWA2")[0] == "antelope"
