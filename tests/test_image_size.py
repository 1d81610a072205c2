"""The backbone's input size as a bundle property (issue 14: reproduce "with the papers' backbone and input size").

`train --image-size N` records N in config.backbone.input_size; classify, evaluate ... rebuild the backbone at it;
the feature cache keys sizes apart; a bundle at its stock size is untouched; sizes a backbone cannot take are
UsageErrors. Tiny random timm backbones (test_efficientnet: stock 160 px, stride 32), made in the test.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dkgzsl_app.cli import app
from dkgzsl_app.models.backbone import backbone_from_state, create_backbone, with_image_size
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).resolve().parent / "assets"
runner = CliRunner()
TINY = ["--method", "msdn", "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--json"]


def tiny(name="test_efficientnet", weights="offline"):
    """A fresh random ``name`` with the same weights every call (what create_backbone gives a rebuilt bundle)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_backbone(name, weights="none")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """5 seen rendered classes × 3 photos, 1 unseen, and the class table."""
    from dkgzsl_app.models.classcsv import ClassTable, write_class_csv
    from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes, render

    root = tmp_path_factory.mktemp("photos")
    classes = [c for c in demo_classes() if c.seen][:5] + [c for c in demo_classes() if not c.seen][:1]
    for c in classes:
        if c.seen:
            (root / "train" / c.name).mkdir(parents=True)
            for i in range(3):
                render(c, i, size=160).save(root / "train" / c.name / f"{i}.jpg", quality=85)
    table = ClassTable([c.name for c in classes], None, list(ATTRIBUTES),
                       np.array([c.attributes() for c in classes], np.float32))
    write_class_csv(table, root / "classes.csv")
    return root


def train(photos, out, *extra):
    return runner.invoke(app, ["train", "--images", str(photos / "train"), "--attributes", str(photos / "classes.csv"),
                               "--backbone", "test_efficientnet", "--out", str(out), *TINY, *extra])


def test_a_bundle_trained_at_a_size_records_it_and_classify_uses_it(photos, tmp_path, monkeypatch):
    import dkgzsl_app

    monkeypatch.setattr("dkgzsl_app.models.backbone.create_backbone", tiny)
    r = train(photos, tmp_path / "big", "--image-size", "224")
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "big" / "bundle" / "config.json").read_text())
    assert config["backbone"]["input_size"] == [3, 224, 224] and config["feature_kind"] == "regions"
    assert "--image-size 224" in (tmp_path / "big" / "bundle" / "README.md").read_text()  # the card's command
    clf = dkgzsl_app.load(f"local-dir:{tmp_path / 'big' / 'bundle'}", "cpu")
    assert clf.backbone.config.input_size == [3, 224, 224]
    x = clf.backbone.transform()(Image.open(ASSETS / "coffee.jpg").convert("RGB")).unsqueeze(0)
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        assert clf.backbone.features(x)[1].shape == (1, 49, 256)  # 7 × 7 regions, not the stock 5 × 5
    files = [str(p) for p in sorted((photos / "train").rglob("*.jpg"))[:4]]
    r = runner.invoke(app, ["classify", *files, "--model", f"local-dir:{tmp_path / 'big' / 'bundle'}",
                            "--format", "json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 4
    r = runner.invoke(app, ["evaluate", "--model", f"local-dir:{tmp_path / 'big' / 'bundle'}", "--images",
                            str(photos / "train"), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output  # evaluate rebuilt the backbone at 224 too (else: a region count mismatch)

    r = train(photos, tmp_path / "ft", "--from", f"local-dir:{tmp_path / 'big' / 'bundle'}", "--image-size", "160")
    assert r.exit_code == 2 and "--image-size 160, but" in r.output and "224 px" in r.output
    r = train(photos, tmp_path / "ft", "--from", f"local-dir:{tmp_path / 'big' / 'bundle'}")
    assert r.exit_code == 0, r.output  # --from keeps the source's input size
    assert load_bundle(tmp_path / "ft" / "bundle").config.backbone.input_size == [3, 224, 224]


def test_the_cache_keeps_sizes_apart(photos, tmp_path, monkeypatch):
    from dkgzsl_app.cache import FeatureCache, backbone_key
    from dkgzsl_app.image_data import feature_set_from_images

    cache = FeatureCache(tmp_path / "cache.sqlite")
    stock, big = tiny(), with_image_size(tiny(), 320)
    assert backbone_key(stock.config, kind="regions") != backbone_key(big.config, kind="regions")
    assert backbone_key(stock.config) != backbone_key(big.config)
    args = (photos / "train", photos / "classes.csv")
    a = feature_set_from_images(*args, stock, "cpu", cache, workers=0, kind="regions")
    b = feature_set_from_images(*args, big, "cpu", cache, workers=0, kind="regions")
    assert a.features.shape[1:] == (25, 256) and b.features.shape[1:] == (100, 256)  # 5 × 5 vs 10 × 10

    def refuse(*a, **k):
        raise AssertionError("the cache should have served these")

    monkeypatch.setattr("dkgzsl_app.extract.extract", refuse)  # both sizes are now served, each its own
    for bb, want in ((big, b), (stock, a)):
        assert np.array_equal(feature_set_from_images(*args, bb, "cpu", cache, workers=0, kind="regions").features,
                              want.features)


def test_a_bundle_at_its_stock_size_is_untouched(tmp_path):
    """The demo bundle (224 px, tf_efficientnet_lite0's stock size) gets the very backbone create_backbone makes,
    and its config.json without input_size loads to the same size and the same predictions."""
    import dkgzsl_app

    stock = create_backbone("tf_efficientnet_lite0")
    assert with_image_size(stock, 224) is stock and with_image_size(stock, [224, 224]) is stock
    demo = ROOT / "models" / "pretrained" / "demo-shapes"
    old = tmp_path / "old"
    shutil.copytree(demo, old)
    config = json.loads((old / "config.json").read_text())
    del config["backbone"]["input_size"]
    (old / "config.json").write_text(json.dumps(config))
    files = [str(ASSETS / "coffee.jpg"), str(ASSETS / "chelsea.jpg")]
    preds = [dkgzsl_app.load(f"local-dir:{b}", "cpu").classify(files, top_k=3, workers=0) for b in (demo, old)]
    for p, q in zip(*preds):
        assert [(g.name, g.probability) for g in p.top] == [(g.name, g.probability) for g in q.top]
    assert load_bundle(old).config.backbone.input_size == [3, 224, 224]


def test_bad_sizes_are_usage_errors(photos, tmp_path, monkeypatch):
    cnn = tiny()
    with pytest.raises(UsageError, match="too small for test_efficientnet.*at least 32 px"):
        with_image_size(cnn, 16)
    with pytest.raises(UsageError, match="too large: at most 1024 px"):
        with_image_size(cnn, 4096)
    vit = tiny("vit_tiny_patch16_224")
    with pytest.raises(UsageError, match=r"16 × 16 px patches, so the size must be a multiple of 16 \(e.g. 448\)"):
        with_image_size(vit, 450)
    monkeypatch.setattr("dkgzsl_app.models.backbone.create_backbone", tiny)
    r = train(photos, tmp_path / "run", "--image-size", "8")
    assert r.exit_code == 2 and "too small" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--features", str(tmp_path), "--image-size", "448", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--image-size resizes photos" in r.output


def test_a_vit_takes_timms_resampled_position_embeddings():
    vit = tiny("vit_tiny_patch16_224")
    pos = vit.model.pos_embed.detach().clone()
    big = with_image_size(vit, 448)
    assert big.config.input_size == [3, 448, 448] and big.model.pos_embed.shape == (1, 1 + 28 * 28, 192)
    assert torch.equal(big.model.pos_embed[:, :1], pos[:, :1])  # the class token's embedding is kept
    with torch.no_grad():
        assert big.features(torch.zeros(1, 3, 448, 448))[1].shape == (1, 785, 192)
    again = backbone_from_state(big.config, big.model.state_dict())  # a fine-tuned ViT at 448 rebuilds at 448
    assert torch.equal(again.model.pos_embed, big.model.pos_embed)


def test_msdn_presets_use_the_papers_448_px():
    from dkgzsl_app.reproduce import make_plan

    assert make_plan("cub", "msdn", None, {}).image_size == 448
    assert make_plan("sun", "msdnpp", None, {}).image_size == 448
    assert make_plan("cub", "msdn", None, {}, image_size=224).image_size == 224
    assert make_plan("awa2", "dkgzsl", None, {}).image_size is None  # stock 224: xlsa17's features are 224 px
    assert make_plan("cub", "d3gzsl", None, {}).image_size is None


@pytest.mark.timeout(900)
def test_reproduce_msdn_at_448_on_a_fake_cub(tmp_path):
    from dataset_trees import make_cub

    from dkgzsl_app.datasets import SPLITS

    read = lambda f: (SPLITS / "CUB" / f).read_text().split()  # noqa: E731
    val, unseen = read("valclasses.txt"), read("testclasses.txt")
    seen = [n for n in read("trainvalclasses.txt") if n not in val]
    root = make_cub(tmp_path / "data", only={**dict.fromkeys(seen[:3] + val[:1], 3), **dict.fromkeys(unseen[:2], 2)})
    out = tmp_path / "out"
    res = runner.invoke(app, ["reproduce", "cub", "--root", str(root), "--method", "msdn", "--backbone", "test_resnet",
                              "--backbone-weights", "none", "--partial", "--device", "cpu", "--set", "epochs=2",
                              "--set", "batch_size=8", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output.strip().splitlines()[-1])
    assert result["input_size"] == [448, 448] and result["regions"] == 196  # the preset's size: 14 × 14
    config = json.loads((out / "run" / "bundle" / "config.json").read_text())
    assert config["backbone"]["input_size"] == [3, 448, 448]
    md = (out / "results.md").read_text()
    assert "Input: 448 px photos (196 regions)." in md
    assert "dkgzsl train --dataset cub" in md and "--image-size 448" in md
