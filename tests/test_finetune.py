"""Fine-tuning a bundle (train --from): starts from its weights, adds classes, keeps its vocabulary and
networks, refuses what does not fit, resumes exactly."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import Interrupt, make_feature_set, stop_after, tiny_config
from dkgzsl_app.cli import app
from dkgzsl_app.models.bundle import load_bundle, save_bundle
from dkgzsl_app.models.errors import BundleError, DataError, UsageError
from dkgzsl_app.sources import resolve_source
from dkgzsl_app.trainer.data import FeatureSet, save_feature_folder
from dkgzsl_app.trainer.finetune import load_source, prepare
from dkgzsl_app.trainer.loop import _Trainer
from dkgzsl_app.trainer.synthetic import make_region_set
from dkgzsl_app.trainer.task import make_task
from dkgzsl_app.trainer.train import scores_for, train_bundle

CFG = tiny_config(epochs=3, teacher_epochs=3, select="none", student_lr=1e-2)


def drop_classes(fs: FeatureSet, names) -> FeatureSet:
    """``fs`` without the classes ``names`` (their images gone, indices renumbered)."""
    keep = np.array([n not in names for n in fs.class_names])
    remap = np.full(len(keep), -1)
    remap[keep] = np.arange(keep.sum())
    img = keep[fs.labels]
    pos = np.full(len(fs.labels), -1)
    pos[img] = np.arange(img.sum())

    def sel(idx):
        return pos[idx[img[idx]]]

    return FeatureSet(features=fs.features[img], labels=remap[fs.labels[img]],
                      class_names=[n for n, k in zip(fs.class_names, keep) if k], attributes=fs.attributes[keep],
                      attribute_names=list(fs.attribute_names), seen=fs.seen[keep], trainval=sel(fs.trainval),
                      test_seen=sel(fs.test_seen), test_unseen=sel(fs.test_unseen), source=fs.source + "-less")


@pytest.fixture(scope="module")
def data():
    return make_feature_set(n_classes=10, n_unseen=3, per_class=24)


def new_classes(fs):
    return [n for n, s in zip(fs.class_names, fs.seen) if s][:2]  # seen in the new data, unknown to the bundle


@pytest.fixture(scope="module")
def base(data, tmp_path_factory):
    """A d3gzsl bundle trained without two of ``data``'s seen classes."""
    return train_bundle(drop_classes(data, new_classes(data)), CFG, tmp_path_factory.mktemp("base")).bundle_dir


def test_starts_from_the_bundles_weights(data, base):
    src = load_bundle(base)
    cfg, _, record = prepare(base, None, data, CFG, None)
    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    tr, fresh = _Trainer(task, cfg), _Trainer(task, CFG)  # same seed: the same random initialisation
    mine, theirs, init = tr.model.state_dict(), src.model.state_dict(), fresh.model.state_dict()
    shared = [k for k in mine if k.split(".")[0] in ("generator", "critic", "epsilon")]
    shared += ["teacher.embed.weight", "student.embed.bias", "ood_head.bias", "feature_min", "feature_scale"]
    for k in shared:  # before the first step: the bundle's, not a fresh init, not a re-fitted scaling
        assert torch.equal(mine[k], theirs[k]), k
        assert k.endswith("bias") or not torch.equal(mine[k], init[k]), k  # (the critic's fc2 bias never trains)
    assert torch.equal(tr.x, src.model.scale_features(task.features[task.train_idx]))  # the bundle's scaling
    assert torch.equal(mine["class_attributes"], task.attributes)  # the new data's classes
    names, old = data.class_names, src.config.class_names
    for i, n in enumerate(names):  # student rows and OOD-head columns by class name
        row = mine["student.head.weight"][i]
        want = theirs["student.head.weight"][old.index(n)] if n in old else init["student.head.weight"][i]
        assert torch.equal(row, want), n
        col = mine["ood_head.weight"][:, i]
        want = theirs["ood_head.weight"][:, old.index(n)] if n in old else init["ood_head.weight"][:, i]
        assert torch.equal(col, want), n
    seen_old = [n for n, s in zip(old, src.config.seen) if s]
    for j, n in enumerate(names[i] for i in task.seen_classes.tolist()):  # teacher rows by seen-class name
        want = theirs["teacher.head.bias"][seen_old.index(n)] if n in seen_old else init["teacher.head.bias"][j]
        assert torch.equal(mine["teacher.head.bias"][j], want), n
    assert tr.init_report["classes_new"] == 2 and tr.init_report["seen_new"] == 2
    assert record["classes_new"] == 2 and record["weights_sha256"] == src.config.weights_sha256


def test_fewer_classes_keep_their_rows(data, base):
    src = load_bundle(base)
    fewer = drop_classes(drop_classes(data, new_classes(data)), [src.config.class_names[0]])
    cfg, _, _ = prepare(base, None, fewer, CFG, None)
    task = make_task(fewer, np.arange(len(fewer.class_names)), fewer.seen, fewer.trainval)
    tr = _Trainer(task, cfg)
    assert torch.equal(tr.model.student.head.weight, src.model.student.head.weight[1:])
    assert tr.init_report == {**tr.init_report, "classes_new": 0, "seen_new": 0}


def accuracy(bundle_dir, fs, classes):
    """Share of ``classes``' test images predicted as their class, among all the bundle's classes."""
    b = load_bundle(bundle_dir)
    idx = [i for i in fs.test_seen if fs.class_names[fs.labels[i]] in classes]
    pred = scores_for(b.model, torch.from_numpy(fs.features[idx])).argmax(1)
    return float(np.mean([b.config.class_names[p] == fs.class_names[fs.labels[i]] for p, i in zip(pred, idx)]))


def test_new_classes_get_rows_and_are_learned(data, base, tmp_path):
    out = train_bundle(data, CFG, tmp_path, init_from=load_bundle(base), init_source="my-source")
    b = load_bundle(out.bundle_dir)
    assert b.config.class_names == data.class_names
    prov = b.config.provenance["finetuned_from"]
    assert prov == {"source": "my-source", "weights_sha256": load_bundle(base).config.weights_sha256,
                    "method": "d3gzsl", "classes_kept": 8, "classes_new": 2}
    assert accuracy(out.bundle_dir, data, new_classes(data)) >= 0.75, "new classes not learned"  # chance 0.1
    old = [n for n, s in zip(data.class_names, data.seen) if s and n not in new_classes(data)]
    assert accuracy(out.bundle_dir, data, old) >= 0.75


def renamed(fs, names):
    fs = dataclasses.replace(fs)
    fs.attribute_names = names
    return fs


@pytest.mark.parametrize("change, words", [
    (lambda a: [*a[:3], "stripes", *a[4:]], ["missing 1", "'attr_03'", "'stripes'"]),
    (lambda a: a[:-1], ["missing 1", "'attr_15'"]),
    (lambda a: [a[1], a[0], *a[2:]], ["another order", "'attr_01' at 0"]),
])
def test_attribute_vocabulary_mismatch_is_refused_naming_the_attributes(data, base, tmp_path, change, words):
    fs = renamed(data, change(list(data.attribute_names)))
    if len(fs.attribute_names) < len(data.attribute_names):
        fs.attributes = fs.attributes[:, :-1]
    with pytest.raises(DataError, match="attributes differ") as e:
        train_bundle(fs, CFG, tmp_path / "run", init_from=base)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_method_kind_and_dim_mismatches_are_refused(data, base, tmp_path):
    with pytest.raises(UsageError, match="method 'dkgzsl'.*the bundle has 'd3gzsl'"):
        train_bundle(data, dataclasses.replace(CFG, method="dkgzsl"), tmp_path, init_from=base)
    regions = make_region_set(n_classes=10, n_unseen=3, per_class=4)
    with pytest.raises(DataError, match="regions features, but the bundle .* consumes pooled"):
        train_bundle(regions, dataclasses.replace(CFG, method="d3gzsl"), tmp_path, init_from=base)
    wide = make_feature_set(n_classes=10, n_unseen=3, per_class=4, dim=32)
    with pytest.raises(DataError, match="feature dim 32.*works on 64"):
        train_bundle(wide, CFG, tmp_path, init_from=base)


def test_widths_come_from_the_bundle(data, base):
    cfg, backbone, _ = prepare(base, None, data, dataclasses.replace(CFG, hidden_dim=512, embed_dim=8), None)
    assert (cfg.hidden_dim, cfg.critic_hidden_dim, cfg.embed_dim) == (64, 64, 32) and backbone is None
    assert cfg.init_from == str(base.resolve()) and len(cfg.init_sha256) == 64


def weights(bundle_dir):
    return load_bundle(bundle_dir).model.state_dict()


@pytest.fixture(scope="module")
def region_base(tmp_path_factory):
    """A dkgzsl bundle on region maps (SOVR + KTN/MFU), trained without two seen classes."""
    fs = make_region_set(n_classes=8, n_unseen=2, per_class=12)
    cfg = tiny_config(method="dkgzsl", epochs=1, teacher_epochs=1, select="none", student_lr=1e-2)
    out = train_bundle(drop_classes(fs, new_classes(fs)), cfg, tmp_path_factory.mktemp("rbase"))
    return fs, cfg, out.bundle_dir


@pytest.mark.parametrize("method", ["d3gzsl", "dkgzsl"])
def test_resume_with_from_equals_uninterrupted(method, data, base, region_base, tmp_path):
    if method == "dkgzsl":
        fs, cfg, src = region_base
        assert load_bundle(src).config.options["fde"] and load_bundle(src).config.feature_kind == "regions"
    else:
        fs, cfg, src = data, CFG, base
    cfg = dataclasses.replace(cfg, select="val", epochs=2, teacher_epochs=1, critic_steps=2)
    full = train_bundle(fs, cfg, tmp_path / "full", init_from=src)
    run = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_bundle(fs, cfg, run, init_from=src, on_epoch=stop_after("select", 1))
    with pytest.raises(Interrupt):
        train_bundle(fs, cfg, run, resume=True, init_from=src, on_epoch=stop_after("final", 1))
    resumed = train_bundle(fs, cfg, run, resume=True, init_from=src)
    assert resumed.best_epoch == full.best_epoch and resumed.calibration == full.calibration
    wa, wb = weights(full.bundle_dir), weights(resumed.bundle_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (run / "final" / "metrics.jsonl").read_text() == (tmp_path / "full" / "final" / "metrics.jsonl").read_text()


def test_resume_from_another_source_is_refused(data, base, tmp_path):
    other = tmp_path / "other"
    b = load_bundle(base)
    with torch.no_grad():
        b.model.generator.fc1.bias += 1.0
    save_bundle(b.model, b.config, other, b.origins)
    run = tmp_path / "run"
    with pytest.raises(Interrupt):
        train_bundle(data, CFG, run, init_from=base, on_epoch=stop_after("final", 0))
    with pytest.raises(DataError, match=r"was started from local-dir:.*base.*resume it with --from"):
        train_bundle(data, CFG, run, resume=True, init_from=other)
    with pytest.raises(DataError, match="was started from"):
        train_bundle(data, CFG, run, resume=True)
    with pytest.raises(BundleError, match="changed since this run started"):
        load_source(base, "0" * 64)


# ---- the command line ----------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_train_from(data, base, tmp_path):
    features = tmp_path / "features"
    save_feature_folder(data, features)
    args = ["train", "--features", str(features), "--from", f"local-dir:{base}", "--epochs", "1",
            "--teacher-epochs", "1", "--select", "none", "--device", "cpu", "--json"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])  # widths: the CLI's defaults are not used
    assert r.exit_code == 0, r.output
    b = load_bundle(json.loads(r.stdout)["bundle"])
    assert (b.config.generator.hidden_dim, b.config.head.embed_dim) == (64, 32)
    assert b.config.provenance["finetuned_from"]["source"] == f"local-dir:{base}"

    r = runner.invoke(app, [*args, "--out", str(tmp_path / "r2"), "--hidden-dim", "128"])
    assert r.exit_code == 2 and "hidden_dim 128 (--hidden-dim)" in r.output and "64" in r.output, r.output
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "r3"), "--method", "dkgzsl"])
    assert r.exit_code == 2 and "method 'dkgzsl' (--method)" in r.output, r.output
    r = runner.invoke(app, ["train", "--images", str(tmp_path), "--attributes", str(features / "classes.csv"),
                            "--from", f"local-dir:{base}", "--out", str(tmp_path / "r4")])
    assert r.exit_code == 1 and "records no backbone" in r.output and "Traceback" not in r.output, r.output

    shutil.copytree(features, tmp_path / "f2")
    renamed_csv = (tmp_path / "f2" / "classes.csv").read_text().replace("attr_05", "wings", 1)
    (tmp_path / "f2" / "classes.csv").write_text(renamed_csv)
    r = runner.invoke(app, [*args[:2], str(tmp_path / "f2"), *args[3:], "--out", str(tmp_path / "r5")])
    assert r.exit_code == 1 and "'attr_05'" in r.output and "'wings'" in r.output, r.output


def test_cli_fine_tunes_the_demo_model_on_photos_with_a_new_class(tmp_path):
    """--from demo-shapes --images: its backbone extracts the photos; a new class gets a row."""
    from dkgzsl_app.models.classcsv import ClassTable, write_class_csv
    from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes, render

    seen = [c for c in demo_classes() if c.seen][:3]
    rows = [(c.name, c.attributes()) for c in seen] + [("my_" + seen[0].name, seen[0].attributes())]
    for name, c in [(c.name, c) for c in seen] + [(rows[-1][0], seen[0])]:
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            render(c, 50 + i, size=128).save(tmp_path / "train" / name / f"{i}.jpg", quality=85)
    csv = tmp_path / "classes.csv"
    table = ClassTable([n for n, _ in rows], None, list(ATTRIBUTES), np.array([a for _, a in rows], np.float32))
    write_class_csv(table, csv)
    args = ["train", "--images", str(tmp_path / "train"), "--attributes", str(csv), "--from", "demo-shapes",
            "--epochs", "1", "--teacher-epochs", "1", "--select", "none", "--batch-size", "8", "--device", "cpu"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "r1"), "--backbone", "resnet18"])
    assert r.exit_code == 2 and "--backbone resnet18" in r.output and "tf_efficientnet_lite0" in r.output, r.output
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    b = load_bundle(tmp_path / "run" / "bundle")
    assert b.config.backbone.name == "tf_efficientnet_lite0" and b.config.generator.hidden_dim == 512
    assert b.config.class_names == [n for n, _ in rows]
    assert b.config.provenance["finetuned_from"]["source"] == "demo-shapes"
    demo = load_bundle(resolve_source("demo-shapes"))
    assert torch.equal(b.model.feature_scale, demo.model.feature_scale)  # the demo's scaling, not re-fitted
    drift = (b.model.generator.fc1.weight - demo.model.generator.fc1.weight).abs().max()
    assert 0 < drift < 0.05, drift  # one epoch on from the demo's generator (a fresh one differs by ~0.1–0.2)
