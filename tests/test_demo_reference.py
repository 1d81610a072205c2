"""Reference outputs of the bundled demo model, timm-style: exact numbers on fixed inputs.

Three fixed inputs, each compared with the numbers stored in tests/assets/demo_reference.json
(relative tolerance 1e-4):

1. ``tests/assets/chelsea.jpg``: the timm eval transform's tensor (a few statistics: pins resize, crop,
   interpolation and normalisation), then the backbone features the bundle consumes (its
   ``feature_kind``: pooled (D,) or the region map (R, C)) through classify's own path (``extract``: image
   loading with JPEG draft, transform, forward) and the head's class probabilities;
2. a demo photo rendered in memory by ``trainer/render.py`` (the first unseen class, seed 0): its features
   and class probabilities;
3. a synthetic feature input (a sine pattern, no random numbers; (1, D) or (1, R, C)) fed to the head
   alone: the class probabilities, which pin the bundle's weights and the head's arithmetic without the
   backbone.

So the test fails when the bundle's weights, the offline backbone weights, the preprocessing or the
head change, and says which stage moved first.

Regenerate the reference only after a deliberate change to one of those (say which in the commit):

    .venv/bin/python tests/test_demo_reference.py --regenerate

and review ``git diff tests/assets/demo_reference.json`` (the top classes should still make sense).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).parent / "assets"
REFERENCE = ASSETS / "demo_reference.json"
RTOL = 1e-4
FEATURE_IDX = list(range(8)) + list(range(100, 1280, 160))  # a few of the 1280 channels (of the mean region)


def synthetic_features(shape: tuple[int, ...]) -> torch.Tensor:
    """(1, *shape) non-negative values in post-ReLU range, made without any random number generator."""
    i = torch.arange(math.prod(shape), dtype=torch.float64)
    x = (0.6 + 0.5 * torch.sin(0.37 * i) + 0.25 * torch.cos(0.011 * i * i)).clamp(min=0).float()
    return x.reshape(1, *shape)


def _stats(t: torch.Tensor) -> dict:
    t = t.double()
    return {"mean": t.mean().item(), "std": t.std().item(), "l2": t.norm().item(), "min": t.min().item(),
            "max": t.max().item()}


def compute() -> dict:
    """Every number the reference holds, computed the way ``dkgzsl classify`` computes it (CPU)."""
    from PIL import Image

    from dkgzsl_app.extract import extract
    from dkgzsl_app.models.backbone import create_backbone
    from dkgzsl_app.models.bundle import load_bundle
    from dkgzsl_app.sources import DEFAULT_MODEL, resolve_source
    from dkgzsl_app.trainer.render import demo_classes, render

    bundle = load_bundle(resolve_source(DEFAULT_MODEL, offline=True))
    cfg = bundle.config
    backbone = create_backbone(cfg.backbone.name, weights="offline")
    names = cfg.class_names
    shapes: list[tuple[int, ...]] = []  # the feature shape the bundle consumes, from the photos

    def head(feats: torch.Tensor) -> list[float]:
        with torch.inference_mode():
            return bundle.model.class_scores(feats, cfg.head.tau_student)[0].double().tolist()

    def photo(image) -> dict:
        got = extract(backbone, [image], "cpu", batch_size=1, workers=0, kind=cfg.feature_kind)
        assert not got.errors, got.errors
        f = got.features[0]  # (D,) pooled float32, or (R, C) regions float16
        shapes.append(tuple(f.shape))
        probs = head(f[None])
        top = sorted(range(len(probs)), key=lambda c: -probs[c])[:3]
        channels = f.float() if f.ndim == 1 else f.float().mean(0)  # (D,)
        return {"features_at": [channels[i].item() for i in FEATURE_IDX], "features": _stats(f.float()),
                "probabilities": probs, "top3": [names[c] for c in top]}

    chelsea = ASSETS / "chelsea.jpg"
    with Image.open(chelsea) as im:
        x = backbone.transform()(im.convert("RGB"))  # (3, H, W)
    unseen = next(c for c in demo_classes() if not c.seen)
    out = {"chelsea": photo(chelsea), "rendered": {"class": unseen.name, "seed": 0, **photo(render(unseen, seed=0))}}
    synthetic = head(synthetic_features(shapes[0]))
    return {
        "bundle": DEFAULT_MODEL, "weights_sha256": cfg.weights_sha256, "class_names": names,
        "feature_kind": cfg.feature_kind, "feature_shape": list(shapes[0]),
        "backbone": f"{cfg.backbone.name} [{backbone.config.pretrained_tag}]",
        "feature_idx": FEATURE_IDX,
        "chelsea_input": {"shape": list(x.shape), **_stats(x), "pixels": [x[c, 112, 112].item() for c in range(3)]},
        **out, "synthetic_head": {"probabilities": synthetic},
    }


def _close(got, want, where: str) -> None:
    """Numbers within RTOL (plus a tiny absolute floor for values near 0); anything else exactly equal."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {len(got)} values, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=RTOL, abs_tol=1e-7), f"{where}: {got!r} != reference {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != reference {want!r}"


@pytest.fixture(scope="module")
def outputs():
    return compute()


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


def test_the_reference_is_for_this_bundle(outputs, reference):
    for key in ("bundle", "weights_sha256", "class_names", "backbone", "feature_idx", "feature_kind", "feature_shape"):
        assert outputs[key] == reference[key], (
            f"{key} changed: the bundled model or its backbone is not the one the reference was made with "
            "(regenerate it only if that change is deliberate; see this file's docstring)")


def test_preprocessing_matches_the_reference(outputs, reference):
    _close(outputs["chelsea_input"], reference["chelsea_input"], "chelsea_input")


@pytest.mark.parametrize("photo", ["chelsea", "rendered"])
def test_backbone_features_match_the_reference(outputs, reference, photo):
    for key in ("features_at", "features"):
        _close(outputs[photo][key], reference[photo][key], f"{photo}.{key}")


@pytest.mark.parametrize("photo", ["chelsea", "rendered", "synthetic_head"])
def test_class_probabilities_match_the_reference(outputs, reference, photo):
    _close(outputs[photo]["probabilities"], reference[photo]["probabilities"], f"{photo}.probabilities")
    if "top3" in reference[photo]:
        assert outputs[photo]["top3"] == reference[photo]["top3"]


def test_the_rendered_unseen_photo_is_recognised(reference):
    """A sanity check on the stored numbers themselves: the unseen demo class is the model's first guess."""
    assert reference["rendered"]["top3"][0] == reference["rendered"]["class"]
    assert sum(reference["synthetic_head"]["probabilities"]) == pytest.approx(1.0, abs=1e-5)


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(f"usage: {sys.argv[0]} --regenerate   (rewrites {REFERENCE})")
    REFERENCE.write_text(json.dumps(compute(), indent=1) + "\n")
    print(f"wrote {REFERENCE}")
