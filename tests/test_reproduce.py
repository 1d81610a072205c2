"""`dkgzsl reproduce` end to end on a fake CUB download, with a tiny random backbone (timm's test_resnet)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dataset_trees import make_cub
from dkgzsl_app.cli import app
from dkgzsl_app.datasets import SPLITS
from dkgzsl_app.reproduce import load_presets, make_plan, parse_overrides, training_config
from dkgzsl_app.models.errors import UsageError

TINY = ["--set", "epochs=2", "--set", "teacher_epochs=1", "--set", "hidden_dim=32", "--set", "embed_dim=32",
        "--set", "gen_per_unseen=2", "--set", "batch_size=16"]


def few_classes(tmp_path):
    """A partial CUB: 4 seen classes (one of xlsa17's validation classes) × 3 photos, 2 unseen × 2."""
    read = lambda f: (SPLITS / "CUB" / f).read_text().split()  # noqa: E731
    val, unseen = read("valclasses.txt"), read("testclasses.txt")
    train = [n for n in read("trainvalclasses.txt") if n not in val]
    return make_cub(tmp_path, only={**dict.fromkeys(train[:3] + val[:1], 3), **dict.fromkeys(unseen[:2], 2)})


@pytest.mark.timeout(900)  # ~20 s of CPU; minutes on a loaded 2-core machine
def test_reproduce_runs_end_to_end_on_a_fake_cub(tmp_path):
    root, out = few_classes(tmp_path / "data"), tmp_path / "out"
    res = CliRunner().invoke(app, ["reproduce", "cub", "--root", str(root), "--backbone", "test_resnet",
                                   "--backbone-weights", "none", "--partial", "--device", "cpu", *TINY,
                                   "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output.strip().splitlines()[-1])
    assert result["method"] == "dkgzsl" and result["split"] == "partial" and result["backbone_weights"] == "random-init-seed0"
    assert result["n_photos"] == {"trainval": 8, "test_seen": 4, "test_unseen": 4}
    for k in ("U", "S", "H", "CZSL", "AUSUC"):
        assert 0.0 <= result["metrics"][k] <= 1.0
    assert (out / "run" / "bundle" / "config.json").is_file()
    config = json.loads((out / "run" / "bundle" / "config.json").read_text())
    assert config["backbone"]["name"] == "test_resnet" and config["feature_kind"] == "regions"
    assert len(config["class_names"]) == 6 and sum(config["seen"]) == 4
    md = (out / "results.md").read_text()
    assert "| ours (γ from validation) |" in md and "PARTIAL download" in md
    assert "dkgzsl reproduce cub --root" in md and "--set epochs=2" in md  # the exact command
    assert "dkgzsl train --dataset cub" in md and "--epochs 2 --teacher-epochs 1" in md
    assert f"dkgzsl evaluate --model local-dir:{out / 'run' / 'bundle'} --dataset cub" in md
    assert json.loads((out / "results.json").read_text())["metrics"] == result["metrics"]
    card = (out / "run" / "bundle" / "README.md").read_text()  # the card `train` writes: command, validation table
    assert "| selected epoch | S (seen) |" in card and "dkgzsl reproduce cub --root" in card
    again = ["reproduce", "cub", "--root", str(root), "--backbone", "test_resnet", "--backbone-weights", "none",
             "--partial", "--device", "cpu", *TINY, "--out", str(out), "--json"]
    res = CliRunner().invoke(app, again)
    assert res.exit_code == 1 and "already holds a run; pass --resume" in res.output
    res = CliRunner().invoke(app, again + ["--resume"])  # a finished run resumes to the same bundle and figures
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["metrics"] == result["metrics"]


def test_results_sit_beside_the_published_row():
    from dkgzsl_app.reproduce import results_markdown

    plan = make_plan("cub", "msdn", None, {})
    assert plan.timm_name == "resnet101.tv_in1k" and plan.train["batch_size"] == 50
    r = {"method": "msdn", "dataset": "CUB", "backbone": plan.timm_name, "split": "proposed",
         "n_photos": {"trainval": 7057, "test_seen": 1764, "test_unseen": 2967}, "backbone_weights": "tv_in1k",
         "selected_epoch": 12, "calibration": 0.5, "bundle": "b", "published": plan.published, "train": plan.train,
         "notes": plan.notes, "seconds": {"extract": 1, "train_and_evaluate": 2}, "commands": ["x"],
         "metrics": {"U": 0.5, "S": 0.6, "H": 0.545, "CZSL": 0.7, "AUSUC": 0.3, "U_uncalibrated": 0.1,
                     "S_uncalibrated": 0.9, "H_uncalibrated": 0.18}}
    md = results_markdown(r)
    assert "| ours (γ from validation) | 50.0 | 60.0 | 54.5 | 70.0 | 30.0 |" in md
    assert "| published: MSDN (Chen et al., CVPR 2022) | 68.7 | 67.5 | 68.1 | 76.1 | – |" in md
    assert "xlsa17 proposed split" in md


def test_presets_are_valid_training_configs_and_cover_every_method_and_data_set():
    presets = load_presets()
    from dkgzsl_app.trainer.methods import TRAINERS

    assert set(presets["methods"]) == set(TRAINERS)
    for method, m in presets["methods"].items():
        assert set(m["datasets"]) == {"cub", "awa2", "sun"}
        for dataset in m["datasets"]:
            cfg = training_config(make_plan(dataset, method, None, {}))
            assert cfg.method == method
    assert make_plan("sun", "dkgzsl", "vit_base_patch16_224", {}).published["H"] == 51.0


def test_bad_overrides_and_names_are_usage_errors():
    assert parse_overrides(["epochs=3", "lr=1e-3", "fde=false"]) == {"epochs": 3, "lr": 1e-3, "fde": False}
    with pytest.raises(UsageError, match="'wings' is none"):
        parse_overrides(["wings=2"])
    with pytest.raises(UsageError, match="give FIELD=VALUE"):
        parse_overrides(["epochs"])
    res = CliRunner().invoke(app, ["reproduce", "flo", "--root", ".", "--out", "o"])
    assert res.exit_code == 2 and "unknown data set 'flo'" in res.output
    with pytest.raises(UsageError, match="epochs"):
        training_config(make_plan("cub", "d3gzsl", None, {"epochs": 0}))


@pytest.mark.timeout(900)  # ~20 s of CPU; minutes on a loaded 2-core machine
def test_train_and_evaluate_read_a_data_set(tmp_path):
    """`train --dataset` then `evaluate --dataset` (the offline lite0 backbone: evaluate rebuilds the bundle's)."""
    root, run = few_classes(tmp_path / "data"), tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--dataset", "cub", "--root", str(root), "--partial", "--method", "d3gzsl",
                                   "--epochs", "2", "--teacher-epochs", "1", "--hidden-dim", "32", "--embed-dim", "32",
                                   "--gen-per-unseen", "2", "--batch-size", "16", "--device", "cpu", "--out", str(run),
                                   "--json"])
    assert res.exit_code == 0, res.output
    config = json.loads((run / "bundle" / "config.json").read_text())
    assert config["backbone"]["name"] == "tf_efficientnet_lite0" and sum(config["seen"]) == 4
    res = CliRunner().invoke(app, ["evaluate", "--model", f"local-dir:{run / 'bundle'}", "--dataset", "cub", "--root",
                                   str(root), "--partial", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output.strip().splitlines()[-1])
    assert (metrics["n_test_seen"], metrics["n_test_unseen"]) == (4, 4)  # the same split train held out
    res = CliRunner().invoke(app, ["evaluate", "--model", f"local-dir:{run / 'bundle'}", "--dataset", "cub",
                                   "--root", str(root)])
    assert res.exit_code == 1 and "partial download" in res.output and "--partial" in res.output
    res = CliRunner().invoke(app, ["train", "--dataset", "cub", "--features", str(root), "--out", str(run)])
    assert res.exit_code == 2 and "--dataset NAME takes --root DIR" in res.output


def test_hub_weights_that_cannot_be_fetched_say_where_they_come_from(monkeypatch):
    import dkgzsl_app.models.backbone as backbone
    from dkgzsl_app.models.errors import BundleError
    from dkgzsl_app.reproduce import make_backbone

    def offline(name, weights):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(backbone, "create_backbone", offline)
    with pytest.raises(BundleError, match=r"resnet101.tv_in1k: its ImageNet weights come from the Hugging Face Hub "
                                          r"\(timm/resnet101.tv_in1k\).*--backbone-weights none"):
        make_backbone("resnet101.tv_in1k")
