"""Photos to predictions through the Python API and the CLI, on a bundle over the offline EfficientNet-Lite0."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dkgzsl_app
from dkgzsl_app.cli import app
from dkgzsl_app.models.backbone import create_backbone
from dkgzsl_app.models.bundle import save_bundle
from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
from dkgzsl_app.models.errors import BundleError
from dkgzsl_app.models.networks import ZSLModel

ASSETS = Path(__file__).parent / "assets"
runner = CliRunner()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A head over tf_efficientnet_lite0 features (untrained: these tests check plumbing, not accuracy)."""
    backbone = create_backbone("tf_efficientnet_lite0").config
    cfg = ModelConfig(method="d3gzsl", feature_dim=1280, attribute_names=["furry", "hot", "ceramic"],
                      class_names=["cat", "espresso", "teapot"], seen=[True, True, False],
                      generator=GeneratorConfig(noise_dim=3, hidden_dim=16, critic_hidden_dim=16),
                      head=HeadConfig(embed_dim=8), calibration=0.1, backbone=backbone)
    torch.manual_seed(0)
    model = ZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 1, 1.0]]))
    return save_bundle(model, cfg, tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(ASSETS / "chelsea.jpg", folder / "cat.jpg")
    shutil.copy(ASSETS / "coffee.jpg", folder / "cup.jpg")
    (folder / "broken.jpg").write_bytes((ASSETS / "coffee.jpg").read_bytes()[:1500])
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_api_keeps_order_and_reports_errors(bundle_dir, photos):
    clf = dkgzsl_app.load(f"local-dir:{bundle_dir}", device="cpu")
    files = [photos / "cat.jpg", photos / "broken.jpg", photos / "cup.jpg"]
    preds = clf.classify([str(f) for f in files], top_k=2, workers=0)
    assert [p.path for p in preds] == [str(f) for f in files]
    assert "truncated or corrupt" in preds[1].error and preds[1].top == []
    for p in (preds[0], preds[2]):
        assert not p.error and len(p.top) == 2
        assert p.top[0].score >= p.top[1].score
        g = p.top[0]
        assert g.score == pytest.approx(g.probability - (0.1 if g.origin == "seen" else 0.0), abs=1e-6)


def test_api_accepts_pil_images_and_matches_paths(bundle_dir):
    clf = dkgzsl_app.load(str(bundle_dir), device="cpu")
    by_path = clf.classify([str(ASSETS / "chelsea.jpg")], workers=0)[0]
    by_image = clf.classify([Image.open(ASSETS / "chelsea.jpg")], workers=0)[0]
    assert [g.name for g in by_path.top] == [g.name for g in by_image.top]
    assert by_path.top[0].score == pytest.approx(by_image.top[0].score, abs=1e-5)


def test_cli_jsonl_with_a_bad_file_exits_3(bundle_dir, photos):
    r = runner.invoke(app, ["classify", str(photos), "--model", f"local-dir:{bundle_dir}", "--format", "jsonl",
                            "--device", "cpu", "--workers", "0"])
    assert r.exit_code == 3, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(row["path"]).name for row in rows] == ["broken.jpg", "cat.jpg", "cup.jpg"]
    assert rows[0]["error"] and rows[0]["class"] is None
    assert rows[1]["class"] in ("cat", "espresso", "teapot") and rows[1]["origin"] in ("seen", "unseen")
    assert "broken.jpg" in r.stderr


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_cli_formats_to_a_file(bundle_dir, photos, tmp_path, fmt):
    (photos / "broken.jpg").unlink()
    out = tmp_path / f"preds.{fmt}"
    r = runner.invoke(app, ["classify", str(photos / "cat.jpg"), str(photos / "cup.jpg"), "--model", str(bundle_dir),
                            "--format", fmt, "--output", str(out), "--device", "cpu", "--top-k", "3"])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    if fmt == "csv":
        assert text.splitlines()[0] == "path,class,origin,score,probability,top_k,error,confidence,unknown" and len(text.splitlines()) == 3
    elif fmt == "json":
        assert [len(row["top_k"]) for row in json.loads(text)] == [3, 3]
    else:
        assert "cat.jpg" in text and "cup.jpg" in text


def test_cli_no_photos_exits_4(bundle_dir, tmp_path):
    r = runner.invoke(app, ["classify", str(tmp_path), "--model", str(bundle_dir)])
    assert r.exit_code == 4 and "no images found" in r.stderr


def test_bundle_without_backbone_and_unknown_sources(tmp_path, bundle_dir):
    from dkgzsl_app.models.bundle import load_bundle

    b = load_bundle(bundle_dir)
    b.config.backbone = None
    plain = save_bundle(b.model, b.config, tmp_path / "plain")
    with pytest.raises(BundleError, match="no image backbone"):
        dkgzsl_app.load(str(plain), device="cpu")
    with pytest.raises(BundleError, match="hf-hub:ORG/NAME"):
        dkgzsl_app.load("hf-hub:just-a-name", device="cpu")
    r = runner.invoke(app, ["classify", str(ASSETS / "chelsea.jpg"), "--model", "zebra"])
    assert r.exit_code == 1 and "local-dir:" in r.stderr
