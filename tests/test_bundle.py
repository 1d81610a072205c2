"""Bundle round trip, and refusal of tampered or mismatched bundles with a message naming the problem."""
import json
import shutil

import pytest
import torch

from dkgzsl_app.models.bundle import load_bundle, load_config, save_bundle, sha256_bytes
from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
from dkgzsl_app.models.errors import BundleError
from dkgzsl_app.models.networks import ZSLModel


def make_bundle(tmp_path, name="bundle"):
    torch.manual_seed(0)
    cfg = ModelConfig(method="d3gzsl", feature_dim=8, attribute_names=["stripes", "water", "hooked bill"],
                      class_names=["zebra", "otter", "eagle, bald", "okapi"], seen=[True, True, True, False],
                      generator=GeneratorConfig(noise_dim=3, hidden_dim=16, critic_hidden_dim=16),
                      head=HeadConfig(embed_dim=6), calibration=0.25, provenance={"seed": 0})
    model = ZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.rand(4, 3))
    model.feature_min.copy_(torch.rand(8))
    return save_bundle(model, cfg, tmp_path / name), model, cfg


def rewrite_config(path, **changes):
    data = json.loads((path / "config.json").read_text())
    data.update(changes)
    (path / "config.json").write_text(json.dumps(data))


def test_round_trip_is_exact(tmp_path):
    path, model, cfg = make_bundle(tmp_path)
    b = load_bundle(path)
    assert b.config.to_dict() == cfg.to_dict()
    assert b.origins == ["seen", "seen", "seen", "unseen"]
    for k, v in model.state_dict().items():
        assert torch.equal(b.model.state_dict()[k], v), k
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "classes.csv", "config.json", "model.safetensors"]
    card = (path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dkgzsl")


def test_saving_twice_gives_identical_files(tmp_path):
    a, model, cfg = make_bundle(tmp_path, "a")
    b = save_bundle(model, cfg, tmp_path / "b")
    for f in ("config.json", "model.safetensors", "classes.csv", "README.md"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_flipped_weight_byte_is_refused(tmp_path):
    path, _, _ = make_bundle(tmp_path)
    blob = bytearray((path / "model.safetensors").read_bytes())
    blob[-3] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="weights_sha256"):
        load_bundle(path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    path, _, _ = make_bundle(tmp_path)
    data = json.loads((path / "config.json").read_text())
    data["head"]["embed_dim"] = 7
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"teacher\.embed\.weight has shape \(6, 8\)"):
        load_bundle(path)


def test_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load, save

    path, _, _ = make_bundle(tmp_path)
    tensors = load((path / "model.safetensors").read_bytes())
    del tensors["ood_head.bias"]
    blob = save(tensors)
    (path / "model.safetensors").write_bytes(blob)
    rewrite_config(path, weights_sha256=sha256_bytes(blob))
    with pytest.raises(BundleError, match="missing tensors ood_head.bias"):
        load_bundle(path)


def test_nan_weights_are_refused(tmp_path):
    from safetensors.torch import load, save

    path, _, _ = make_bundle(tmp_path)
    tensors = load((path / "model.safetensors").read_bytes())
    tensors["student.head.weight"][0, 0] = float("nan")
    blob = save(tensors)
    (path / "model.safetensors").write_bytes(blob)
    rewrite_config(path, weights_sha256=sha256_bytes(blob))
    with pytest.raises(BundleError, match="student.head.weight holds NaN"):
        load_bundle(path)


def test_future_format_version_says_upgrade(tmp_path):
    path, _, _ = make_bundle(tmp_path)
    rewrite_config(path, format_version=99)
    with pytest.raises(BundleError, match="format version 99.*Upgrade dkgzsl"):
        load_config(path)


def test_unknown_config_field_and_bad_json(tmp_path):
    path, _, _ = make_bundle(tmp_path)
    rewrite_config(path, colour="blue")
    with pytest.raises(BundleError, match="unknown ModelConfig field.*colour"):
        load_bundle(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(path)


def test_edited_classes_csv_is_refused(tmp_path):
    path, _, _ = make_bundle(tmp_path)
    csv_path = path / "classes.csv"
    lines = csv_path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[-1] = "0.123"
    lines[2] = ",".join(cells)
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BundleError, match="otter.*differ from model.safetensors"):
        load_bundle(path)


def test_renamed_class_and_wrong_origin_are_refused(tmp_path):
    path, _, _ = make_bundle(tmp_path)
    csv_path = path / "classes.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace("zebra,seen", "horse,seen"))
    with pytest.raises(BundleError, match="class names or their order differ"):
        load_bundle(path)
    csv_path.write_text(text.replace("okapi,unseen", "okapi,seen"))
    with pytest.raises(BundleError, match="origins disagree"):
        load_bundle(path)


@pytest.mark.parametrize("victim", ["config.json", "model.safetensors", "classes.csv"])
def test_missing_file_is_named(tmp_path, victim):
    path, _, _ = make_bundle(tmp_path)
    (path / victim).unlink()
    with pytest.raises(BundleError, match=victim.replace(".", r"\.")):
        load_bundle(path)


def test_not_a_folder(tmp_path):
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "nowhere")


def test_truncated_safetensors_without_hash_is_refused(tmp_path):
    path, _, _ = make_bundle(tmp_path)
    rewrite_config(path, weights_sha256="")
    blob = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BundleError, match="not a readable safetensors file"):
        load_bundle(path)


def test_save_refuses_inconsistent_config(tmp_path):
    path, model, cfg = make_bundle(tmp_path)
    cfg.seen = [True, False]
    with pytest.raises(BundleError, match="'seen' has 2 entries for 4 classes"):
        save_bundle(model, cfg, tmp_path / "other")
    shutil.rmtree(path)


def test_network_classes_do_not_reuse_the_apps_class_name(tmp_path):
    """One `Classifier` (the app's); the teacher/student network is EmbeddingClassifier, same tensor names."""
    from dkgzsl_app.models import networks

    assert not hasattr(networks, "Classifier")
    _, model, _ = make_bundle(tmp_path)
    assert type(model.student).__name__ == "EmbeddingClassifier"
    assert {"teacher.embed.weight", "teacher.head.bias", "student.embed.weight", "student.head.weight"} <= set(
        model.state_dict())


def test_model_card_header_is_valid_hub_metadata(tmp_path):
    """The card's YAML header comes from huggingface_hub's ModelCardData: odd names stay valid YAML."""
    from huggingface_hub import ModelCard

    from dkgzsl_app.models.bundle import model_card
    from dkgzsl_app.models.config import BackboneConfig

    _, _, cfg = make_bundle(tmp_path)
    cfg.provenance = {"seed": 0, "dataset": "cub: 200 [birds]", "license": "mit"}
    cfg.backbone = BackboneConfig(name="tf_efficientnet_lite0")
    card = ModelCard(model_card(cfg, ["seen", "seen", "seen", "unseen"]))
    assert card.data.datasets == ["cub: 200 [birds]"]
    assert card.data.license == "mit" and card.data.library_name == "dkgzsl"
    assert card.data.base_model == "timm/tf_efficientnet_lite0"
    assert "## Provenance" in card.text
    assert ModelCard.load(make_bundle(tmp_path, "b")[0] / "README.md").data.library_name == "dkgzsl"
