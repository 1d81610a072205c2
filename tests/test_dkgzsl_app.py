"""DKGZSL bundles in the app (issue 12, item 8): the "why" read-out (ARA or a ridge on v), add-class, classify
and the browser on region features, and the attention-map tool. Tiny random bundles built in the test."""
import asyncio
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dkgzsl_app.classes import add_classes, with_user_classes
from dkgzsl_app.explain import AttributeExplainer
from dkgzsl_app.models.bundle import load_bundle, save_bundle
from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
from dkgzsl_app.models.methods.dkgzsl import DKGZSLModel

from tui_helpers import wait_until
from userclass_helpers import ATTRS, CLASSES, SEEN, VALUES

pytestmark = pytest.mark.filterwarnings("ignore:.*generated features")  # untrained models: close classes
ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).parent / "assets"
HOT_CAT = {"furry": 1, "hot": 1, "ceramic": 0, "size": 0.5}
COLD_VASE = {"furry": 0, "hot": 0, "ceramic": 1, "size": 1}  # far from every built-in class


def dk_bundle(folder, kind="regions", dim=24, backbone=None, seed=0, train_student=False, embed=16, **options):
    """A random-weight DKGZSL bundle over ATTRS/CLASSES; per-channel scaling made up (not the identity)."""
    cfg = ModelConfig(method="dkgzsl", feature_dim=dim, attribute_names=list(ATTRS), class_names=list(CLASSES),
                      seen=list(SEEN), generator=GeneratorConfig(noise_dim=4, hidden_dim=32, critic_hidden_dim=8),
                      head=HeadConfig(embed_dim=embed), calibration=0.1, feature_kind=kind, backbone=backbone,
                      options={"attn_dim": 8, **options})
    torch.manual_seed(seed)
    model = DKGZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.tensor(VALUES, dtype=torch.float32))
    model.feature_min.copy_(torch.rand(dim) * 0.1)
    model.feature_scale.copy_(torch.rand(dim) + 0.5)
    with torch.no_grad():  # an untrained G hardly depends on a: let a, not the noise z, set the features
        model.generator.fc1.weight[:, :cfg.generator.noise_dim] *= 0.05
    if train_student:  # as training leaves it: the student tells the built-in classes' features apart
        cond = model.normalized_attributes("l2").repeat_interleave(32, 0)
        y = torch.arange(len(CLASSES)).repeat_interleave(32)
        params, threads = list(model.student.parameters()), torch.get_num_threads()
        torch.set_num_threads(1)  # tiny ops: a busy machine's thread pool made each step ~30 ms, not ~0.2
        try:
            with torch.no_grad():
                x = model.generator.sample(cond)
            for _ in range(200):  # plain gradient descent: torch.optim's first step imports torch._dynamo (seconds)
                loss = torch.nn.functional.cross_entropy(model.student(x)[1], y)
                grads = torch.autograd.grad(loss, params)
                with torch.no_grad():
                    for p, g in zip(params, grads):
                        p -= 0.5 * g
        finally:
            torch.set_num_threads(threads)
    return save_bundle(model, cfg, folder)


def constant_maps(model, v, regions=9):
    """Raw region maps (N, R, C) whose every region is the raw feature of v (N, C): SOVR gives v back."""
    raw = v / model.feature_scale + model.feature_min  # scale_features(raw) = v
    return raw.unsqueeze(1).expand(-1, regions, -1)


def test_explain_reads_ara_scores_on_the_class_scale(tmp_path):
    model = load_bundle(dk_bundle(tmp_path / "b")).model
    ex = AttributeExplainer.fit(model, ATTRS)
    assert ex.source == "ara"
    raw = np.random.default_rng(0).random((9, 24)).astype(np.float16)  # one photo's region map (R, C)
    ev = ex.explain(raw, np.array(VALUES[0]))
    assert sorted(e.attribute for e in ev) == sorted(ATTRS) and {e.source for e in ev} == {"ara"}
    before = ex.predict(raw[None])  # (1, A)
    # on the reference (maps of generated class features) the read-out averages to the class values
    with torch.no_grad():
        v = model.generator.sample(model.normalized_attributes("l2").repeat_interleave(8, 0),
                                   generator=torch.Generator().manual_seed(0))  # the fit's own draws
    pred = ex.predict(constant_maps(model, v).numpy())
    # observed = α·ARA score + β per attribute: any positive affine change of ARA's scale is undone
    own = model.attribute_scores
    model.attribute_scores = lambda x: own(x) * torch.tensor([7.0, 0.5, 2.0, 30.0]) - 3.0
    np.testing.assert_allclose(AttributeExplainer.fit(model, ATTRS).predict(raw[None]), before, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pred.mean(0), np.mean(VALUES, 0), atol=1e-4)


@pytest.mark.parametrize("kind", ["regions", "pooled"])
def test_without_ara_the_ridge_reads_the_feature_the_model_classifies(tmp_path, kind):
    model = load_bundle(dk_bundle(tmp_path / "b", kind, ara=False)).model
    ex = AttributeExplainer.fit(model, ATTRS)
    assert ex.source == "ridge"
    shape = (5, 9, 24) if kind == "regions" else (5, 24)
    raw = np.random.default_rng(1).random(shape).astype(np.float32)
    with torch.no_grad():
        v = model.visual(torch.from_numpy(raw)).numpy()  # (5, 24): through FDE on regions
    np.testing.assert_allclose(ex.predict(raw), ex.predict_scaled(v), atol=1e-5)
    assert {e.source for e in ex.explain(raw[0], np.array(VALUES[2]))} == {"ridge"}


@pytest.mark.parametrize("seed", [0, 1])
def test_add_class_on_a_regions_bundle_wins_its_own_features(tmp_path, seed):
    folder = dk_bundle(tmp_path / "b", seed=seed, train_student=True, embed=64)  # 16 wide: some seeds lose
    assert add_classes(f"local-dir:{folder}", {"cold_vase": COLD_VASE}) == ["cold_vase"]
    view = with_user_classes(load_bundle(folder))
    cfg, model = view.config, view.model
    assert cfg.class_names[-1] == "cold_vase" and view.origins[-1] == "user" and cfg.feature_kind == "regions"
    new = torch.tensor([[COLD_VASE[a] for a in ATTRS]], dtype=torch.float32)
    with torch.no_grad():
        v = model.generator.sample(torch.nn.functional.normalize(new, dim=1).repeat(200, 1),
                                   generator=torch.Generator().manual_seed(5))  # fresh draws, not the fit's
        probs = model.class_scores(constant_maps(model, v), cfg.head.tau_student)  # (200, 6) through SOVR
    scores = probs - cfg.calibration * torch.tensor(cfg.seen, dtype=torch.float32)
    assert (scores.argmax(1) == len(CLASSES)).float().mean() > 0.8
    assert AttributeExplainer.fit(model, ATTRS).source == "ara"  # the view keeps SOVR


@pytest.fixture(scope="module")
def tiny_backbone():
    from dkgzsl_app.models.backbone import create_backbone

    torch.manual_seed(0)
    return create_backbone("test_efficientnet", weights="none")  # 160 px → a 5x5 grid of 256 channels


@pytest.fixture
def regions_bundle(tmp_path, tiny_backbone, monkeypatch):
    """A DKGZSL regions bundle over the tiny backbone, loadable by name (dkgzsl_app.load builds the backbone
    from the bundle's config: here it gets the tiny one, no network)."""
    monkeypatch.setattr("dkgzsl_app.models.backbone.create_backbone", lambda name, weights="offline": tiny_backbone)
    return dk_bundle(tmp_path / "rb", dim=256, backbone=tiny_backbone.config)


def photos(folder, n=4):
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        shutil.copy(ASSETS / ("chelsea.jpg" if i % 2 else "coffee.jpg"), folder / f"p{i}.jpg")
        out.append(str(folder / f"p{i}.jpg"))
    return out


def test_classify_and_explain_a_photo_with_a_regions_bundle(regions_bundle, tmp_path):
    import dkgzsl_app
    from dkgzsl_app.tui.engine import Engine, EngineOptions

    files = photos(tmp_path / "photos", 2)
    clf = dkgzsl_app.load(f"local-dir:{regions_bundle}", "cpu")
    preds = clf.classify(files + [str(tmp_path / "missing.jpg")], top_k=3, workers=0)
    assert [len(p.top) for p in preds] == [3, 3, 0] and preds[2].error
    assert all(g.name in CLASSES for p in preds[:2] for g in p.top)
    engine = Engine(EngineOptions(model=f"local-dir:{regions_bundle}", device="cpu", workers=0, use_cache=False))
    ev = engine.explain(files[0], preds[0].top[0].name)
    assert engine.features(files[0]).shape == (25, 256) and engine.explainer.source == "ara"
    assert len(ev) == len(ATTRS) and {e.source for e in ev} == {"ara"}


def test_browser_explains_and_adds_a_class_on_a_regions_bundle(regions_bundle, tmp_path):
    from rich.console import Console
    from textual.widgets import Input

    from dkgzsl_app.tui import EngineOptions, create_app
    from dkgzsl_app.tui.editor import AttributeRow, ClassEditor
    from dkgzsl_app.tui.results import RunStore

    files = photos(tmp_path / "photos", 2)

    async def run():
        opts = EngineOptions(model=f"local-dir:{regions_bundle}", device="cpu", workers=0, top_k=6, use_cache=False)
        app = create_app(paths=files, options=opts, show_images=False, store=RunStore(tmp_path / "run"))
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_until(pilot, lambda: bool(app.detail.evidence))
            assert {e.source for e in app.detail.evidence} == {"ara"}
            console = Console(width=160)
            with console.capture() as shown:
                console.print(app.detail.query_one("#why").content)
            assert "ARA attention" in shown.get()
            await pilot.press("a")
            assert isinstance(app.screen, ClassEditor)
            app.screen.query_one("#name", Input).value = "hot_cat"
            for row, value in zip(app.screen.query(AttributeRow), ("1", "1", "0", "0.5")):
                row.query_one(Input).value = value
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: all(any(g.name == "hot_cat" for g in r.pred.top)
                                                for r in app.results.rows.values()), timeout=60)
            assert app.engine.origin_of("hot_cat") == "user" and app.engine.explainer.source == "ara"

    asyncio.run(run())


def test_attention_maps_tool_writes_pngs(regions_bundle, tmp_path):
    from PIL import Image

    import dkgzsl_app

    spec = importlib.util.spec_from_file_location("attention_maps", ROOT / "benchmarks/attention_maps.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    files = photos(tmp_path / "photos", 2)
    clf = dkgzsl_app.load(f"local-dir:{regions_bundle}", "cpu")
    written = tool.attention_maps(clf, files, tmp_path / "maps", top=3, panel=64)
    assert len(written) == 2
    with Image.open(written[0]) as im:
        assert im.size[0] == 64 * 5  # photo, FDE weights, three attributes
    record = json.loads((tmp_path / "maps" / "maps.json").read_text())
    assert record[0]["grid"] == 5 and np.array(record[0]["region_weights"]).shape == (5, 5)
    assert [np.array(a["attention"]).sum() for a in record[0]["attributes"]] == pytest.approx([1, 1, 1], abs=1e-3)
