"""`train --images --attributes` and `evaluate --images` on a few rendered classes (offline backbone)."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dkgzsl_app.cli import app
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.classcsv import ClassTable, write_class_csv
from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes, render

runner = CliRunner()
TINY = ["--epochs", "3", "--teacher-epochs", "3", "--batch-size", "16", "--hidden-dim", "32", "--embed-dim", "16",
        "--critic-steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    classes = [c for c in demo_classes() if c.seen][:5] + [c for c in demo_classes() if not c.seen][:1]
    for c in classes:
        for i in range(4):
            folder = root / "train" / c.name
            folder.mkdir(parents=True, exist_ok=True)
            if c.seen:
                render(c, i, size=160).save(folder / f"{i}.jpg", quality=85)
            (root / "test").mkdir(exist_ok=True)
            render(c, 100 + i, size=160).save(root / "test" / f"{c.name}__{i}.jpg", quality=85)
    for c in classes:
        if not c.seen:
            (root / "train" / c.name).rmdir()
    table = ClassTable([c.name for c in classes], None, list(ATTRIBUTES), np.array([c.attributes() for c in classes], np.float32))
    write_class_csv(table, root / "classes.csv")
    return root


def test_train_and_evaluate_on_photos(photos, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--images", str(photos / "train"), "--attributes", str(photos / "classes.csv"),
                            "--out", str(out), "--json", *TINY])
    assert r.exit_code == 0, r.output
    bundle = load_bundle(out / "bundle")
    assert bundle.config.backbone.name == "tf_efficientnet_lite0" and bundle.config.feature_dim == 1280
    assert bundle.origins.count("unseen") == 1
    r = runner.invoke(app, ["evaluate", "--model", str(out / "bundle"), "--images", str(photos / "test"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["n_test_seen"] == 20 and m["n_test_unseen"] == 4
    r = runner.invoke(app, ["classify", str(photos / "test"), "--model", str(out / "bundle"), "--format", "json",
                            "--device", "cpu"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 24


def test_photo_folder_errors(photos, tmp_path):
    bad = tmp_path / "classes.csv"
    text = (photos / "classes.csv").read_text().splitlines()
    first_seen = sorted(p.name for p in (photos / "train").iterdir())[0]
    bad.write_text("\n".join(line for line in text if not line.startswith(first_seen + ",")) + "\n")
    r = runner.invoke(app, ["train", "--images", str(photos / "train"), "--attributes", str(bad), "--out",
                            str(tmp_path / "run"), *TINY])
    assert r.exit_code == 1 and "missing from" in r.stderr and first_seen in r.stderr
    r = runner.invoke(app, ["train", "--images", str(photos / "train"), "--out", str(tmp_path / "run2"), *TINY])
    assert r.exit_code == 2 and "--attributes" in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "run3"), *TINY])
    assert r.exit_code == 2 and "either --features" in r.output
