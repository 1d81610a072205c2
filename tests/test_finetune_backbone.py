"""`train --images --finetune-backbone`: the backbone trains with the head on live features, the bundle carries
its weights, classify/evaluate run them (with cache keys of their own), --resume stays exact, and the default
path is untouched. A tiny random timm backbone (test_efficientnet at 64 px) on a few rendered classes."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import Interrupt, stop_after
from dkgzsl_app.cache import FeatureCache, backbone_key
from dkgzsl_app.cli import app
from dkgzsl_app.extract import extract_cached
from dkgzsl_app.image_data import feature_set_from_images, finetune_set_from_images
from dkgzsl_app.models.backbone import Backbone, create_backbone, finetuned_config, is_finetuned
from dkgzsl_app.models.bundle import WEIGHTS_FILE, load_bundle, save_bundle
from dkgzsl_app.models.classcsv import ClassTable, write_class_csv
from dkgzsl_app.models.errors import BundleError, DataError
from dkgzsl_app.trainer.backbone_ft import with_backbone
from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes, render
from dkgzsl_app.trainer.train import train_bundle

runner = CliRunner()
TINY = dict(epochs=2, teacher_epochs=2, batch_size=8, hidden_dim=32, critic_hidden_dim=32, embed_dim=16,
            critic_steps=2, attn_dim=8)
TINY_CLI = ["--epochs", "2", "--teacher-epochs", "2", "--batch-size", "8", "--hidden-dim", "32", "--embed-dim", "16",
            "--critic-steps", "2", "--device", "cpu", "--threads", "1"]


def tiny_backbone() -> Backbone:
    """Random test_efficientnet weights (seeded), photos at 64 px: a 2x2 grid of 256 channels."""
    torch.manual_seed(0)
    bb = create_backbone("test_efficientnet", weights="none")
    return Backbone(bb.model, dataclasses.replace(bb.config, input_size=[3, 64, 64]))


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """5 seen classes x 4 training photos, 1 unseen class; test photos of all 6 (2 each, flat folder)."""
    root = tmp_path_factory.mktemp("photos")
    classes = [c for c in demo_classes() if c.seen][:5] + [c for c in demo_classes() if not c.seen][:1]
    (root / "test").mkdir()
    for c in classes:
        if c.seen:
            (root / "train" / c.name).mkdir(parents=True)
            for i in range(4):
                render(c, i, size=96).save(root / "train" / c.name / f"{i}.jpg", quality=85)
        for i in range(2):
            render(c, 100 + i, size=96).save(root / "test" / f"{c.name}__{i}.jpg", quality=85)
    table = ClassTable([c.name for c in classes], None, list(ATTRIBUTES),
                       np.array([c.attributes() for c in classes], np.float32))
    write_class_csv(table, root / "classes.csv")
    return root


@pytest.fixture(scope="module")
def ft_bundle(photos, backbone, tmp_path_factory):
    """A D3GZSL bundle trained through the CLI with --finetune-backbone (backbone_lr 1e-3: visible moves)."""
    out = tmp_path_factory.mktemp("ft") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DKGZSL_HOME", str(out.parent / "home"))
        mp.setattr("dkgzsl_app.models.backbone.create_backbone", lambda name, weights="offline": backbone)
        r = runner.invoke(app, ["train", "--images", str(photos / "train"), "--attributes", str(photos / "classes.csv"),
                                "--out", str(out), "--finetune-backbone", "--backbone-lr", "1e-3", "--json",
                                *TINY_CLI])
    assert r.exit_code == 0, r.output
    return out / "bundle"


def scores_through(bundle, state, photos_dir, kind="pooled"):
    """Class probabilities (N, C) of the flat test folder, with the backbone weights ``state``, along the
    training code's path (uint8 photos, default layout), in file-name order."""
    from dkgzsl_app.extract import photo_tensors
    from dkgzsl_app.trainer.backbone_ft import PhotoSet

    files = sorted(str(p) for p in photos_dir.glob("*.jpg"))
    bb = Backbone(tiny_backbone().model, bundle.config.backbone)
    tensors, keep, _ = photo_tensors(bb, files, workers=0)
    ps = PhotoSet(tensors, bb)
    cpu = torch.device("cpu")
    feats = ps.features(ps.copy_to(cpu, state), torch.arange(len(keep)), cpu, kind)
    with torch.no_grad():
        return bundle.model.class_scores(feats, bundle.config.head.tau_student), files


@pytest.mark.parametrize("kind", ["pooled", "regions"])
def test_uint8_photos_give_the_extracted_features_bit_for_bit(photos, backbone, kind):
    fs, ps = finetune_set_from_images(photos / "train", photos / "classes.csv", backbone, workers=0, kind=kind)
    ref = feature_set_from_images(photos / "train", photos / "classes.csv", backbone, workers=0, kind=kind)
    assert ps.photos.dtype == torch.uint8 and tuple(ps.photos.shape) == (20, 3, 64, 64)
    assert fs.features.dtype == ref.features.dtype and np.array_equal(fs.features, ref.features)
    assert np.array_equal(fs.labels, ref.labels) and list(fs.seen) == list(ref.seen)


def test_the_backbone_trains_and_the_bundle_carries_it(ft_bundle, backbone):
    b = load_bundle(ft_bundle)
    assert is_finetuned(b.config.backbone) and b.config.backbone.name == "test_efficientnet"
    assert b.config.backbone.input_size == [3, 64, 64] and b.config.provenance["train_config"]["finetune_backbone"]
    start = backbone.model.state_dict()
    assert set(b.backbone_state) == set(start)
    moved = {k for k in start if start[k].is_floating_point() and not torch.equal(start[k], b.backbone_state[k])}
    assert any(k.endswith("conv_stem.weight") for k in moved) and any(".bn1.weight" in k for k in moved)
    frozen = [k for k in start if "running_" in k]
    assert frozen and all(torch.equal(start[k], b.backbone_state[k]) for k in frozen)  # BatchNorm in eval mode
    torch.manual_seed(0)  # the head trained too: its student head is not the random initialisation
    fresh = type(b.model).from_config(b.config)
    assert not torch.equal(fresh.student.head.weight, b.model.student.head.weight)


def test_classify_and_evaluate_run_the_bundles_backbone(ft_bundle, photos):
    import dkgzsl_app

    clf = dkgzsl_app.load(f"local-dir:{ft_bundle}", "cpu", precision="fp32")
    assert is_finetuned(clf.backbone.config)
    expected, files = scores_through(clf.base_bundle, clf.base_bundle.backbone_state, photos / "test")
    preds = clf.classify(files, top_k=6, workers=0)
    got = torch.tensor([[next(g.probability for g in p.top if g.name == n) for n in clf.class_names] for p in preds])
    assert torch.allclose(got, expected, atol=1e-4)  # classify runs channels_last: equal within round-off
    stock, _ = scores_through(clf.base_bundle, tiny_backbone().model.state_dict(), photos / "test")
    assert (stock - expected).abs().max() > 1e-3  # so the match above is the fine-tuned weights'
    r = runner.invoke(app, ["evaluate", "--model", str(ft_bundle), "--images", str(photos / "test"), "--json",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_test_seen"] == 10


def test_cached_features_of_the_stock_backbone_are_never_served(ft_bundle, photos, tmp_path):
    import dkgzsl_app

    b = load_bundle(ft_bundle)
    ft, stock = b.config.backbone, tiny_backbone()
    for kind in ("pooled", "regions"):
        assert backbone_key(ft, kind=kind) != backbone_key(stock.config, kind=kind)
    other = {k: v + 1 if v.is_floating_point() else v for k, v in b.backbone_state.items()}
    assert finetuned_config(ft, other).pretrained_tag != ft.pretrained_tag  # two fine-tuned copies: two keys
    files = sorted(str(p) for p in (photos / "test").glob("*.jpg"))
    cache = FeatureCache(tmp_path / "cache.sqlite")
    stock_feats = extract_cached(stock, files, "cpu", workers=0, cache=cache)  # the stock weights' entries
    clf = dkgzsl_app.load(f"local-dir:{ft_bundle}", "cpu", precision="fp32")
    warm = clf.classify(files, top_k=3, workers=0, cache=cache)
    cold = clf.classify(files, top_k=3, workers=0)
    assert [[(g.name, g.probability) for g in p.top] for p in warm] == [[(g.name, g.probability) for g in p.top]
                                                                         for p in cold]
    ft_feats = clf.features(files, workers=0, cache=cache).features
    assert not torch.allclose(ft_feats[0], stock_feats.features[0], atol=1e-3)


@pytest.mark.parametrize("method, cut, ood", [("d3gzsl", ("select", 1), "energy"), ("dkgzsl", ("final", 1), "msp")])
def test_resume_equals_uninterrupted(photos, backbone, tmp_path, method, cut, ood):
    """(energy: its normalisation is computed on x after the warm-up, which moves with the backbone)"""
    cfg = TrainConfig(method=method, finetune_backbone=True, backbone_lr=1e-3, ood_score=ood, **TINY)
    kind = "regions" if method == "dkgzsl" else "pooled"
    fs, ps = finetune_set_from_images(photos / "train", photos / "classes.csv", backbone, workers=0, kind=kind)
    args = dict(backbone=backbone.config, photos=ps, threads=1)
    full = train_bundle(fs, cfg, tmp_path / "full", **args)
    run = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_bundle(fs, cfg, run, on_epoch=stop_after(*cut), **args)
    resumed = train_bundle(fs, cfg, run, resume=True, **args)
    assert (full.bundle_dir / WEIGHTS_FILE).read_bytes() == (resumed.bundle_dir / WEIGHTS_FILE).read_bytes()
    assert full.select_history == resumed.select_history  # (the final run starts afresh: check the selection too)
    assert load_bundle(resumed.bundle_dir).backbone_state is not None


def test_from_a_finetuned_bundle_extracts_with_and_carries_its_backbone(ft_bundle, photos, tmp_path):
    r = runner.invoke(app, ["train", "--from", f"local-dir:{ft_bundle}", "--images", str(photos / "train"),
                            "--attributes", str(photos / "classes.csv"), "--out", str(tmp_path / "run"), "--json",
                            "--epochs", "1", "--teacher-epochs", "1", "--batch-size", "8", "--critic-steps", "1",
                            "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    src, new = load_bundle(ft_bundle), load_bundle(tmp_path / "run" / "bundle")
    assert new.config.backbone.pretrained_tag == src.config.backbone.pretrained_tag
    assert all(torch.equal(src.backbone_state[k], new.backbone_state[k]) for k in src.backbone_state)


def test_refusals(photos, backbone, tmp_path):
    r = runner.invoke(app, ["train", "--features", str(tmp_path), "--out", str(tmp_path / "run"), "--finetune-backbone"])
    assert r.exit_code == 2 and "--finetune-backbone" in r.output and "--images" in r.output
    fs = feature_set_from_images(photos / "train", photos / "classes.csv", backbone, workers=0)
    with pytest.raises(DataError, match="--images"):
        train_bundle(fs, TrainConfig(finetune_backbone=True, **TINY), tmp_path / "r2")
    with pytest.raises(DataError, match="not available"):
        with_backbone(type("EmbeddingTrainer", (), {}), "msdn")  # a trainer without the hooks
    with pytest.raises(ValueError, match="backbone_lr"):
        TrainConfig(backbone_lr=0.0).validate()


def test_the_bundle_refuses_backbone_weights_that_disagree_with_its_config(ft_bundle, tmp_path):
    b = load_bundle(ft_bundle)
    state = dict(b.backbone_state)
    plain = dataclasses.replace(b.config, backbone=dataclasses.replace(b.config.backbone, pretrained_tag=""))
    save_bundle(b.model, dataclasses.replace(plain), tmp_path / "ok", b.origins)  # no weights: a stock bundle
    assert load_bundle(tmp_path / "ok").backbone_state is None
    save_bundle(b.model, dataclasses.replace(plain), tmp_path / "ft", b.origins, backbone_state=state)
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    cfg["backbone"]["pretrained_tag"] = ""  # weights the config does not name
    (tmp_path / "ft" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="names no fine-tuned backbone"):
        load_bundle(tmp_path / "ft")
    other = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    cfg["backbone"]["pretrained_tag"] = finetuned_config(plain.backbone, other).pretrained_tag
    cfg["weights_sha256"] = ""  # other weights than the tag names (the file hash check switched off)
    (tmp_path / "ft" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="not the ones config.json names"):
        load_bundle(tmp_path / "ft")
    save_bundle(b.model, dataclasses.replace(b.config, weights_sha256=""), tmp_path / "none", b.origins)
    with pytest.raises(BundleError, match=r"holds no backbone\.\* tensors"):
        load_bundle(tmp_path / "none")


def test_the_default_path_is_unchanged(photos, backbone, tmp_path):
    """Without the option: photos given or not, the same bundle bytes, no backbone tensors, the stock tag."""
    fs, ps = finetune_set_from_images(photos / "train", photos / "classes.csv", backbone, workers=0)
    cfg = TrainConfig(**TINY)
    a = train_bundle(fs, cfg, tmp_path / "a", backbone=backbone.config, threads=1)
    b = train_bundle(fs, cfg, tmp_path / "b", backbone=backbone.config, threads=1, photos=ps)
    assert (a.bundle_dir / WEIGHTS_FILE).read_bytes() == (b.bundle_dir / WEIGHTS_FILE).read_bytes()
    bundle = load_bundle(a.bundle_dir)
    assert bundle.backbone_state is None and bundle.config.backbone.pretrained_tag == backbone.config.pretrained_tag
