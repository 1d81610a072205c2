"""Slim bundles (models/parts.py, dkgzsl_app/slim.py) and meta-device loading (issue 17): a slim bundle leaves out
what only training reads and infers exactly as its full bundle; loading assigns the file's tensors to a model
built on the meta device and gives the model the old random-init-then-copy path gave, bit for bit."""
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import make_feature_set, tiny_config
from dkgzsl_app.classes import add_classes, with_user_classes
from dkgzsl_app.cli import app
from dkgzsl_app.explain import AttributeExplainer
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.errors import BundleError
from dkgzsl_app.models.parts import meta_leftovers
from dkgzsl_app.slim import write_slim
from dkgzsl_app.trainer.data import save_feature_folder
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.synthetic import make_region_set
from dkgzsl_app.trainer.train import train_bundle
from test_hub_push import files_on, hub, push  # noqa: F401  (hub: the loopback Hub server fixture)

runner = CliRunner()
FAST = dict(epochs=1, teacher_epochs=1, select="none")
LEFT_OUT = ["critic", "teacher", "ood_head", "epsilon"]
CE = ["contrastive.project", "contrastive.compare1", "contrastive.compare2"]
# method case -> (data kind, TrainConfig overrides, parts a slim bundle leaves out)
CASES = {
    "d3gzsl": ("pooled", dict(method="d3gzsl"), LEFT_OUT),
    "d3gzsl on ce-gzsl": ("pooled", dict(method="d3gzsl", generator="ce-gzsl"), LEFT_OUT + CE),
    "dkgzsl (regions)": ("regions", dict(method="dkgzsl", attn_dim=16), LEFT_OUT),
    "dkgzsl on ce-gzsl (regions)": ("regions", dict(method="dkgzsl", attn_dim=16, generator="ce-gzsl"), LEFT_OUT + CE),
    "msdn": ("regions", dict(method="msdn", attr_embed_dim=16), []),
    "msdnpp": ("regions", dict(method="msdnpp", attr_embed_dim=16), []),
}


@pytest.fixture(scope="module")
def data():
    return {"pooled": make_feature_set(n_classes=8, n_unseen=3, per_class=12),
            "regions": make_region_set(n_classes=8, n_unseen=3, per_class=12, regions=4, distractors=1)}


@pytest.fixture(scope="module")
def bundles(data, tmp_path_factory):
    """Per case: (full bundle folder, slim bundle folder, its data), trained once for the module."""
    out = {}
    for case, (kind, cfg, _) in CASES.items():
        root = tmp_path_factory.mktemp(case.replace(" ", "_").replace("(", "").replace(")", ""))
        run = train_bundle(data[kind], tiny_config(**FAST, **cfg), root / "run", threads=1)
        full = shutil.copytree(run.bundle_dir, root / "full")
        write_slim(full, root / "slim")
        out[case] = (full, root / "slim", data[kind])
    return out


def _test_features(fs):
    idx = np.concatenate([fs.test_seen, fs.test_unseen])[:16]
    return torch.from_numpy(np.asarray(fs.features[idx], np.float32))


def _outputs(bundle, x):
    """Everything inference computes from a bundle: class scores and every open-set score (one pass and
    apart), v, the attribute read-out, and the prototypes generative methods score against."""
    m, cfg = bundle.model, bundle.config
    with torch.no_grad():
        probs, scores = m.scores_with_open_set(x, cfg.head.tau_student, cfg.attribute_norm)
        out = {"probs": probs, "visual": m.visual(x), **{f"open/{k}": v for k, v in scores.items()},
               **{f"apart/{k}": v for k, v in m.open_set_scores(x, cfg.head.tau_student, cfg.attribute_norm).items()}}
        attrs = m.attribute_scores(x)
        if attrs is not None:
            out["attributes"] = attrs
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_slim_round_trip_infers_exactly_as_the_full_bundle(case, bundles):
    full_dir, slim_dir, fs = bundles[case]
    omitted = CASES[case][2]
    full, slim = load_bundle(full_dir), load_bundle(slim_dir)
    assert (slim.config.omitted_parts or []) == omitted
    assert "omitted_parts" not in json.loads((full_dir / "config.json").read_text())  # a full bundle's file as before
    fs_state, sl_state = full.model.state_dict(), slim.model.state_dict()
    assert all(any(n.startswith(p + ".") for n in fs_state) for p in omitted)  # the full bundle holds them
    assert sorted(sl_state) == sorted(n for n in fs_state if not any(n.startswith(p + ".") for p in omitted))
    for name, t in sl_state.items():
        assert torch.equal(t, fs_state[name]), name
    for part in omitted:
        assert full.model.get_submodule(part) is not None
        parent, _, leaf = part.rpartition(".")
        assert getattr(slim.model.get_submodule(parent) if parent else slim.model, leaf) is None
    x = _test_features(fs)
    a, b = _outputs(full, x), _outputs(slim, x)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert evaluate_bundle(slim, fs) == evaluate_bundle(full, fs)
    ea = AttributeExplainer.fit(full.model, full.config.attribute_names, full.config.attribute_norm)
    eb = AttributeExplainer.fit(slim.model, slim.config.attribute_names, slim.config.attribute_norm)
    assert ea.source == eb.source and np.array_equal(ea.predict(x[:4].numpy()), eb.predict(x[:4].numpy()))
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    if omitted:
        assert size(slim_dir) < size(full_dir) and slim.config.weights_sha256 != full.config.weights_sha256
    else:  # MSDN's inference reads every tensor: the slim bundle is the full one, file for file
        for f in ("config.json", "model.safetensors", "classes.csv"):
            assert (slim_dir / f).read_bytes() == (full_dir / f).read_bytes(), f


def test_slimming_is_reproducible_and_idempotent(bundles, tmp_path):
    full_dir, slim_dir, _ = bundles["dkgzsl (regions)"]
    again = write_slim(full_dir, tmp_path / "again")
    twice = write_slim(slim_dir, tmp_path / "twice")
    assert again["left_out"] == LEFT_OUT and twice["left_out"] == [] and twice["omitted_parts"] == LEFT_OUT
    for f in ("config.json", "model.safetensors", "classes.csv"):
        assert (tmp_path / "again" / f).read_bytes() == (slim_dir / f).read_bytes() == \
            (tmp_path / "twice" / f).read_bytes(), f


@pytest.mark.parametrize("case", ["d3gzsl on ce-gzsl", "dkgzsl (regions)", "msdn"])
def test_add_class_on_a_slim_bundle(case, bundles, tmp_path):
    from dkgzsl_app.classes.refit import fit_user_rows

    full_dir, slim_dir, fs = bundles[case]
    slim_dir = shutil.copytree(slim_dir, tmp_path / "s")
    full, slim = load_bundle(full_dir), load_bundle(slim_dir)
    names = slim.config.attribute_names
    values = {"made_up": {a: float(i % 2) for i, a in enumerate(names)}}
    assert add_classes(f"local-dir:{slim_dir}", values) == ["made_up"]
    view = with_user_classes(load_bundle(slim_dir))
    assert view.config.class_names[-1] == "made_up" and view.origins[-1] == "user"
    x = _test_features(fs)
    out = _outputs(view, x)
    assert out["probs"].shape == (len(x), full.config.num_classes + 1)
    assert all(torch.isfinite(v).all() for v in out.values())
    if full.config.weights_sha256 == slim.config.weights_sha256:  # MSDN: the same files, so the same user classes
        same = _outputs(with_user_classes(full), x)
        for k in out:
            assert torch.equal(out[k], same[k]), k
        return
    # generative: the rows are fitted on features G generates, seeded by the bundle's weights hash (a slim
    # bundle's is its own); from the same seed, a slim bundle fits exactly the full bundle's rows
    row = np.array([list(values["made_up"].values())], np.float32)
    a = fit_user_rows(full.model, full.config, row, "same seed")
    b = fit_user_rows(slim.model, slim.config, row, "same seed")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _rewrite(folder, tensors=None, **config):
    """Write new weights (a dict of tensors) and/or config fields, with a matching weights_sha256."""
    from safetensors.torch import save

    from dkgzsl_app.models.bundle import sha256_bytes

    data = json.loads((folder / "config.json").read_text())
    if tensors is not None:
        blob = save(tensors, metadata={"format": "pt"})
        (folder / "model.safetensors").write_bytes(blob)
        data["weights_sha256"] = sha256_bytes(blob)
    for k, v in config.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    (folder / "config.json").write_text(json.dumps(data))


def test_tampered_missing_and_unknown_tensors_are_bundle_errors(bundles, tmp_path):
    from safetensors.torch import load_file

    full_dir, slim_dir, _ = bundles["d3gzsl"]
    bad = shutil.copytree(slim_dir, tmp_path / "tampered")
    blob = bytearray((bad / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="does not match the weights_sha256"):
        load_bundle(bad)

    tensors = load_file(slim_dir / "model.safetensors")
    critic = {k: v for k, v in load_file(full_dir / "model.safetensors").items() if k.startswith("critic.")}
    cases = {
        "missing": ({k: v for k, v in tensors.items() if k != "student.head.bias"}, {},
                    "missing tensors student.head.bias"),
        "unknown": ({**tensors, "mystery.weight": torch.zeros(2)}, {}, "unexpected tensors mystery.weight"),
        "omitted but present": ({**tensors, **critic}, {}, "unexpected tensors critic."),
        "not said to be slim": (tensors, {"omitted_parts": None}, "missing tensors critic."),
        "omits what inference reads": (tensors, {"omitted_parts": LEFT_OUT + ["student"]}, "'student'"),
        "omits a part it has not": (tensors, {"omitted_parts": LEFT_OUT + ["nonsense"]}, "'nonsense'"),
        "malformed": (tensors, {"omitted_parts": "critic"}, "omitted_parts must be a list"),
    }
    for name, (weights, config, message) in cases.items():
        folder = shutil.copytree(slim_dir, tmp_path / name.replace(" ", "_"))
        _rewrite(folder, weights, **config)
        with pytest.raises(BundleError, match=message):
            load_bundle(folder)
        r = runner.invoke(app, ["models", "info", str(folder)])
        assert r.exit_code == 1 and "Traceback" not in r.output, (name, r.output)


def test_models_slim_command(bundles, tmp_path):
    full_dir, _, _ = bundles["dkgzsl (regions)"]
    r = runner.invoke(app, ["models", "slim", str(full_dir), str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["omitted_parts"] == LEFT_OUT and info["weights_bytes"]["after"] < info["weights_bytes"]["before"]
    assert load_bundle(tmp_path / "out").config.weights_sha256 == info["weights_sha256"]
    assert (tmp_path / "out" / "README.md").is_file()
    r = runner.invoke(app, ["models", "info", str(tmp_path / "out"), "--json"])
    assert json.loads(r.stdout)["omitted_parts"] == LEFT_OUT
    r = runner.invoke(app, ["models", "slim", str(full_dir), str(tmp_path / "out")])  # not empty now
    assert r.exit_code == 2 and "new or empty folder" in r.output
    r = runner.invoke(app, ["models", "slim", str(tmp_path / "nowhere"), str(tmp_path / "o2")])
    assert r.exit_code == 1 and "nowhere" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["models", "slim", str(full_dir), str(tmp_path / "o3")])
    assert r.exit_code == 0 and "left out: critic, teacher, ood_head, epsilon" in r.output


def test_fine_tuning_from_a_slim_bundle_is_refused_by_name(bundles, data, tmp_path):
    _, slim_dir, _ = bundles["d3gzsl"]
    features = tmp_path / "features"
    save_feature_folder(data["pooled"], features)
    r = runner.invoke(app, ["train", "--features", str(features), "--from", f"local-dir:{slim_dir}",
                            "--epochs", "1", "--out", str(tmp_path / "run")])
    assert r.exit_code == 1 and "slim bundle" in r.output and "critic, teacher" in r.output, r.output
    assert "push --full" in r.output and "Traceback" not in r.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_meta_device_loading_equals_the_old_path(case, bundles):
    full_dir, slim_dir, fs = bundles[case]
    x = _test_features(fs)
    for folder in (full_dir, slim_dir):
        new, old = load_bundle(folder), load_bundle(folder, init="random")
        assert meta_leftovers(new.model) == []
        a, b = new.model.state_dict(keep_vars=True), old.model.state_dict(keep_vars=True)
        assert list(a) == list(b)
        for name in a:
            assert torch.equal(a[name], b[name]) and a[name].dtype == b[name].dtype, name
            assert a[name].stride() == b[name].stride() and a[name].requires_grad == b[name].requires_grad, name
            assert type(a[name]) is type(b[name]), name  # Parameter stays Parameter, buffers plain tensors
        assert [n for n, _ in new.model.named_modules()] == [n for n, _ in old.model.named_modules()]
        oa, ob = _outputs(new, x), _outputs(old, x)
        for k in oa:
            assert torch.equal(oa[k], ob[k]), k


def test_meta_loading_draws_no_random_numbers(bundles):
    full_dir, _, _ = bundles["dkgzsl (regions)"]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    load_bundle(full_dir)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_tensor_not_in_the_file_is_built_the_old_way(bundles, monkeypatch):
    """A non-persistent buffer (computed at init, not stored) would stay on the meta device: the loader sees it
    and builds that model on the CPU as before, so the buffer holds its real values."""
    from dkgzsl_app.models.methods import d3gzsl
    from dkgzsl_app.models.networks import ZSLModel

    class WithDerived(ZSLModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_buffer("twos", torch.full((3,), 2.0), persistent=False)

    monkeypatch.setattr(d3gzsl, "MODEL", WithDerived)
    full_dir, _, fs = bundles["d3gzsl"]
    b = load_bundle(full_dir)
    assert isinstance(b.model, WithDerived) and torch.equal(b.model.twos, torch.full((3,), 2.0))
    assert meta_leftovers(b.model) == []
    ref = load_bundle(full_dir, init="random")
    x = _test_features(fs)
    assert torch.equal(_outputs(b, x)["probs"], _outputs(ref, x)["probs"])


def test_push_sends_the_slim_bundle_unless_full(hub, bundles, tmp_path):  # noqa: F811
    from dkgzsl_app.hub import HubRef, download_bundle

    full_dir, slim_dir, fs = bundles["d3gzsl on ce-gzsl"]
    x = _test_features(fs)
    r = push(full_dir, "acme/slim", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["omitted_parts"] == LEFT_OUT + CE
    on_hub = files_on(hub, "acme/slim")
    for f in ("config.json", "model.safetensors", "classes.csv"):
        assert on_hub[f] == (slim_dir / f).read_bytes(), f
    got = load_bundle(download_bundle(HubRef("acme/slim")))
    a, b = _outputs(got, x), _outputs(load_bundle(full_dir), x)
    for k in a:
        assert torch.equal(a[k], b[k]), k

    r = push(full_dir, "acme/full", "--full", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["omitted_parts"] == [], r.output
    for f in ("config.json", "model.safetensors", "classes.csv"):
        assert files_on(hub, "acme/full")[f] == (full_dir / f).read_bytes(), f

    for source in (full_dir, slim_dir):  # user classes folded in, from a full and from a slim bundle
        folder = shutil.copytree(source, tmp_path / source.name)
        names = load_bundle(folder).config.attribute_names
        add_classes(f"local-dir:{folder}", {"made_up": {a: float(i % 2) for i, a in enumerate(names)}})
        r = push(folder, f"acme/users-{source.name}", "--with-user-classes", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["omitted_parts"] == LEFT_OUT + CE, r.output
        got = load_bundle(download_bundle(HubRef(f"acme/users-{source.name}")))
        view = with_user_classes(load_bundle(folder))
        assert got.config.class_names == view.config.class_names and got.origins[-1] == "user"
        with torch.no_grad():
            assert torch.allclose(got.model.class_scores(x), view.model.class_scores(x), atol=1e-6)
