"""The CPU inference fast path (issue 17): channels_last always, bf16 autocast by --precision."""
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import dkgzsl_app
from dkgzsl_app import precision as prec
from dkgzsl_app.cache import FEATURE_VERSION, FeatureCache, backbone_key
from dkgzsl_app.cli import app
from dkgzsl_app.extract import extract
from dkgzsl_app.models.errors import UsageError

runner = CliRunner()
ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="module")
def demo_photos(tmp_path_factory):
    from dkgzsl_app.trainer.render import write_test_photos

    folder = tmp_path_factory.mktemp("demo")
    return [str(p) for p in write_test_photos(folder, 1, 3)][::3]  # 16 photos, seen and unseen classes


@pytest.fixture(scope="module")
def backbone():
    from dkgzsl_app.models.backbone import create_backbone

    return create_backbone("tf_efficientnet_lite0")


def test_parse_precision():
    assert [prec.parse_precision(v) for v in ("auto", " FP32", "bf16", None)] == ["auto", "fp32", "bf16", "auto"]
    with pytest.raises(UsageError) as e:
        prec.parse_precision("fp16")
    assert e.value.exit_code == 2 and "auto, fp32 or bf16" in str(e.value)
    with pytest.raises(UsageError):
        dkgzsl_app.load("demo-shapes", device="cpu", precision="half")


@pytest.mark.parametrize("command", [["classify", str(ASSETS / "chelsea.jpg")], ["browse", str(ASSETS)],
                                     ["evaluate", "--images", str(ASSETS)]])
def test_cli_rejects_a_bad_precision_with_exit_2(command):
    result = runner.invoke(app, [*command, "--precision", "fp8"])
    assert result.exit_code == 2, result.output
    assert "fp8" in result.output


def test_auto_picks_bf16_only_where_native(monkeypatch):
    monkeypatch.setattr(prec, "cpu_native_bf16", lambda: False)
    assert prec.resolve_precision("auto", "cpu", "tf_efficientnet_lite0") == "fp32"
    assert prec.resolve_precision("bf16", "cpu", "tf_efficientnet_lite0") == "bf16"  # asked for: honoured
    monkeypatch.setattr(prec, "cpu_native_bf16", lambda: True)
    # tf_efficientnet_lite0 held the targets with its mixed scheme (mixed_bf16.py): bf16 where native
    assert prec.resolve_precision("auto", "cpu", "tf_efficientnet_lite0") == "bf16"
    monkeypatch.setattr(prec, "BF16_BACKBONES", frozenset({"checked_net"}))
    assert prec.resolve_precision("auto", "cpu", "checked_net") == "bf16"
    assert prec.resolve_precision("auto", "cpu", "some_unchecked_vit") == "fp32"  # bf16 accuracy not checked
    monkeypatch.setattr(prec, "cpu_native_bf16", lambda: False)
    assert prec.resolve_precision("auto", "cpu", "checked_net") == "fp32"  # emulated bf16 is slower
    assert prec.resolve_precision("fp32", "cpu", "tf_efficientnet_lite0") == "fp32"
    assert prec.resolve_precision("auto", "cuda:0", "tf_efficientnet_lite0") == "fp16"  # AMP, as before
    assert prec.resolve_precision("auto", "mps", "tf_efficientnet_lite0") == "fp32"


def test_detector_answers_without_error():
    assert isinstance(prec.cpu_native_bf16(), bool)


def test_cache_keys_differ_by_precision_and_fp32_keeps_the_old_key(backbone):
    import hashlib

    c = backbone.config
    fields = {k: getattr(c, k) for k in ("name", "pretrained_tag", "input_size", "mean", "std", "interpolation",
                                          "crop_pct", "feature_layer")}
    fields["feature_version"] = FEATURE_VERSION
    legacy = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    keys = {p: backbone_key(c, p) for p in ("fp32", "bf16", "fp16")}
    assert keys["fp32"] == backbone_key(c) == legacy  # existing caches stay valid
    assert len(set(keys.values())) == 3


def test_channels_last_features_equal_the_default_layout(backbone):
    photos = [str(ASSETS / "chelsea.jpg"), str(ASSETS / "coffee.jpg")]
    default = extract(backbone, photos, "cpu", workers=0, channels_last=False)
    fast = extract(backbone, photos, "cpu", workers=0, channels_last=True)
    again = extract(backbone, photos, "cpu", workers=0, channels_last=False)  # the layout switches back
    for i in range(2):
        a, b = default.features[i], fast.features[i]
        assert torch.equal(a, again.features[i])
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()  # fp32 round-off (measured ~1e-6)


def test_bf16_agrees_on_top1_and_is_recorded(demo_photos, tmp_path):
    fp32 = dkgzsl_app.load("demo-shapes", device="cpu", precision="fp32")
    bf16 = dkgzsl_app.load("demo-shapes", device="cpu", precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    cache = FeatureCache(tmp_path / "features.sqlite3")
    a = fp32.classify(demo_photos, top_k=1, workers=0, cache=cache)
    b = bf16.classify(demo_photos, top_k=1, workers=0, cache=cache)  # fp32 entries must not be reused
    assert {p.precision for p in a} == {"fp32"} and {p.precision for p in b} == {"bf16"}
    agree = sum(x.top[0].name == y.top[0].name for x, y in zip(a, b))
    assert agree >= len(a) - 1, f"bf16 agrees with fp32 on {agree} of {len(a)}"
    assert any(x.top[0].score != y.top[0].score for x, y in zip(a, b))  # really computed apart
    rows = cache.db.execute("SELECT count(DISTINCT backbone), count(*) FROM features").fetchone()
    assert rows == (2, 2 * len(demo_photos))


def test_classify_jsonl_records_the_precision(demo_photos, monkeypatch):
    monkeypatch.setattr(prec, "cpu_native_bf16", lambda: False)
    result = runner.invoke(app, ["classify", *demo_photos[:2], "-f", "jsonl", "--workers", "0", "--no-cache"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["precision"] for r in rows] == ["fp32", "fp32"]


def test_layouts_are_cached_apart_so_train_features_stay_bit_exact(backbone, tmp_path):
    """classify (channels_last) fills the cache; train --images (default layout) must still get its own
    bit-exact features from it, or a bundle's rebuild would depend on what classify ran before."""
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.extract import extract_cached

    photos = [str(ASSETS / "chelsea.jpg"), str(ASSETS / "coffee.jpg")]
    cache = FeatureCache(tmp_path / "f.sqlite3")
    extract_cached(backbone, photos, "cpu", cache=cache, workers=0)  # classify's default: channels_last on the CPU
    cached = extract_cached(backbone, photos, "cpu", cache=cache, workers=0, channels_last=False)
    fresh = extract(backbone, photos, "cpu", workers=0, channels_last=False)
    for i in range(2):
        assert torch.equal(cached.features[i], fresh.features[i])
    c = backbone.config
    assert backbone_key(c, "fp32", channels_last=True) != backbone_key(c, "fp32")
