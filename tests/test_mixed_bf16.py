"""Mixed bf16 schemes (dkgzsl_app/mixed_bf16.py): which layers stay fp32, the cache key, --precision auto."""
import json

import pytest
import torch
from typer.testing import CliRunner

import dkgzsl_app
from dkgzsl_app import mixed_bf16
from dkgzsl_app import precision as prec
from dkgzsl_app.cache import backbone_key
from dkgzsl_app.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def backbone():
    from dkgzsl_app.models.backbone import create_backbone

    return create_backbone("tf_efficientnet_lite0")


@pytest.fixture(scope="module")
def photos_x(backbone):
    torch.manual_seed(0)
    return torch.randn(2, 3, 224, 224).contiguous(memory_format=torch.channels_last)


def test_lite0_keeps_its_stem_and_head_in_fp32_and_others_have_no_scheme():
    scheme = mixed_bf16.scheme_for("tf_efficientnet_lite0")
    assert scheme.fp32_modules == ("conv_stem", "bn1", "blocks.0", "conv_head", "bn2")
    assert [fp32 for _, fp32 in scheme.segments] == [True, False, True]
    assert scheme.segments[1][0] == tuple(f"blocks.{i}" for i in range(1, 7))  # stages 1-6 in bf16
    assert mixed_bf16.scheme_for("vit_small_patch16_224") is None and mixed_bf16.scheme_for(None) is None


def test_the_segments_are_timms_forward_features_bit_for_bit(backbone, photos_x):
    """Without autocast the scheme's forward is the model's own: guards against a timm that changes it."""
    model = backbone.model.eval()
    with torch.inference_mode():
        assert torch.equal(mixed_bf16.forward_features(model, photos_x, mixed_bf16.scheme_for(backbone.config.name)),
                           model.forward_features(photos_x))


def _dtypes(model, run):
    """(input dtype, output dtype) of the stem, the blocks and the head while ``run()`` runs."""
    seen = {}
    names = ("conv_stem", "blocks.0", "blocks.1", "blocks.6", "conv_head")
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, (i[0].dtype, o.dtype))) for n in names]
    try:
        out = run()
    finally:
        for h in hooks:
            h.remove()
    return seen, out


def test_under_bf16_autocast_the_fp32_segments_run_in_fp32(backbone, photos_x):
    model = backbone.model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        mixed_dtypes, (mixed, _) = _dtypes(model, lambda: mixed_bf16.features(backbone, photos_x, "bf16"))
        plain_dtypes, (plain, _) = _dtypes(model, lambda: backbone.features(photos_x))
        fp32_asked, _ = mixed_bf16.features(backbone, photos_x, "fp32")  # not bf16: no scheme, plain autocast
    assert mixed_dtypes["conv_stem"] == mixed_dtypes["blocks.0"] == (torch.float32, torch.float32)
    assert mixed_dtypes["blocks.1"] == (torch.float32, torch.bfloat16)  # stages 1-6 in bf16
    assert mixed_dtypes["blocks.6"] == (torch.bfloat16, torch.bfloat16)
    assert mixed_dtypes["conv_head"] == (torch.float32, torch.float32)  # their output cast back to fp32
    assert plain_dtypes["conv_stem"][1] == plain_dtypes["conv_head"][1] == torch.bfloat16  # plain autocast
    assert not torch.equal(mixed.float(), plain.float())
    assert torch.equal(fp32_asked, plain)


def test_the_cache_key_names_the_scheme(backbone, monkeypatch):
    c = backbone.config
    before = {p: backbone_key(c, p, True, "regions") for p in ("fp32", "bf16", "fp16")}
    assert len(set(before.values())) == 3
    changed = mixed_bf16.Scheme("efficientnet-something-else", mixed_bf16.SCHEMES["tf_efficientnet_lite0"].segments)
    monkeypatch.setitem(mixed_bf16.SCHEMES, "tf_efficientnet_lite0", changed)
    after = {p: backbone_key(c, p, True, "regions") for p in ("fp32", "bf16", "fp16")}
    assert after["bf16"] != before["bf16"]  # features of the old scheme are not served for the new one
    assert after["fp32"] == before["fp32"] and after["fp16"] == before["fp16"]
    monkeypatch.delitem(mixed_bf16.SCHEMES, "tf_efficientnet_lite0")
    assert backbone_key(c, "bf16", True, "regions") not in (before["bf16"], after["bf16"])  # plain autocast


@pytest.mark.parametrize("native", [True, False])
def test_auto_runs_the_scheme_only_on_a_native_bf16_cpu_and_records_it(native, monkeypatch, tmp_path):
    from dkgzsl_app.trainer.render import write_test_photos

    photos = [str(p) for p in write_test_photos(tmp_path / "p", 1, 5)][:2]
    monkeypatch.setattr(prec, "cpu_native_bf16", lambda: native)
    calls = []
    real = mixed_bf16.forward_features
    monkeypatch.setattr(mixed_bf16, "forward_features", lambda *a: calls.append(1) or real(*a))
    result = runner.invoke(app, ["classify", *photos, "-f", "jsonl", "--workers", "0", "--no-cache", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["precision"] for r in rows] == (["bf16"] * 2 if native else ["fp32"] * 2)
    assert bool(calls) == native
    assert dkgzsl_app.load("demo-shapes", device="cpu", precision="auto").precision == ("bf16" if native else "fp32")


def test_auto_keeps_fp32_for_a_fine_tuned_backbone(monkeypatch):
    """bf16 was checked for the packaged weights: a bundle's fine-tuned copy of the same backbone gets fp32 from
    auto (explicit --precision bf16 still runs the scheme)."""
    import dataclasses
    from types import SimpleNamespace

    from dkgzsl_app.classify import Classifier
    from dkgzsl_app.models.backbone import FINETUNED

    monkeypatch.setattr(prec, "cpu_native_bf16", lambda: True)
    clf = dkgzsl_app.load("demo-shapes", device="cpu", precision="auto")
    assert clf.precision == "bf16"
    tuned = SimpleNamespace(config=dataclasses.replace(clf.backbone.config, pretrained_tag=FINETUNED + "0123abcd"))
    assert Classifier(clf.bundle, tuned, user_classes=False).precision == "fp32"
    assert Classifier(clf.bundle, tuned, user_classes=False, precision="bf16").precision == "bf16"
