"""CE-GZSL as a generator choice (``train --generator ce-gzsl``): its losses on known inputs, gradients, training
under D3GZSL and DKGZSL, bundles, add-class, --resume, train --from, refusals, and the default left alone."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import Interrupt, make_feature_set, stop_after, tiny_config
from dkgzsl_app.cli import app
from dkgzsl_app.models.bundle import load_bundle, save_bundle
from dkgzsl_app.models.cegzsl import ContrastiveEmbedding, class_contrastive_loss, instance_contrastive_loss
from dkgzsl_app.models.errors import BundleError, UsageError
from dkgzsl_app.trainer.cegzsl import check_generator, with_generator
from dkgzsl_app.trainer.config import CHOICES
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.loop import _Trainer
from dkgzsl_app.trainer.task import make_task
from dkgzsl_app.trainer.train import train_bundle

runner = CliRunner()


def ce_config(**overrides):
    return tiny_config(**{"generator": "ce-gzsl", **overrides})


# ---- the losses -----------------------------------------------------------------------------------------
def test_instance_loss_on_known_values():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # two of class 0, one of class 1 (no positive)
    y = torch.tensor([0, 0, 1])
    # anchors 0 and 1: their positive has similarity 1, the other sample 0 → −log(e^(1/t) / (e^(1/t) + 1))
    for t in (1.0, 0.5):
        want = math.log(math.exp(1 / t) + 1) - 1 / t
        assert instance_contrastive_loss(z, y, t).item() == pytest.approx(want, rel=1e-6)
    assert instance_contrastive_loss(z, torch.tensor([0, 1, 2]), 0.1).item() == 0.0  # no anchor has a positive


def test_instance_loss_averages_over_positives():
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    y = torch.tensor([0, 0, 0])  # every other sample is a positive
    sim = z @ z.T / 0.1
    want = 0.0
    for i in range(3):
        others = [j for j in range(3) if j != i]
        logz = torch.logsumexp(sim[i, others], 0)
        want += -sum((sim[i, j] - logz).item() for j in others) / 2
    assert instance_contrastive_loss(z, y, 0.1).item() == pytest.approx(want / 3, rel=1e-5)


def test_class_loss_on_known_values():
    scores = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    want = (math.log(1 + math.exp(-10)) + math.log(1 + math.exp(5))) / 2  # scores / 0.1 = [10, 0], [0, 5]
    assert class_contrastive_loss(scores, torch.tensor([0, 0]), 0.1).item() == pytest.approx(want, rel=1e-5)


def test_comparator_equals_scoring_every_concatenated_pair():
    torch.manual_seed(0)
    net = ContrastiveEmbedding(feature_dim=6, attr_dim=3, embed_dim=5, proj_dim=2, comparator_dim=4)
    h, a = torch.rand(4, 5), torch.rand(3, 3)
    pairs = torch.cat([h.repeat_interleave(3, 0), a.repeat(4, 1)], dim=1)  # (12, 8)
    want = net.compare2(torch.nn.functional.leaky_relu(net.compare1(pairs), 0.2)).view(4, 3)
    torch.testing.assert_close(net.compare(h, a), want)
    hh, z = net(torch.rand(4, 6))
    assert hh.shape == (4, 5) and (hh >= 0).all() and torch.allclose(z.norm(dim=1), torch.ones(4))


# ---- training -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return make_feature_set(n_classes=30, n_unseen=6)  # chance on unseen: 1/6 (CZSL), 1/30 (GZSL)


def trainer(fs, **overrides):
    cfg = ce_config(**overrides)
    task = make_task(fs, np.arange(len(fs.class_names)), fs.seen, fs.trainval)
    return with_generator(_Trainer, cfg)(task, cfg)


def test_gradients_reach_the_embedding_net_and_the_generator(data):
    tr = trainer(data)
    net, g = tr.model.contrastive, tr.model.generator
    before = [p.detach().clone() for p in net.parameters()]
    logs = tr.critic_step()  # E and F step on the critic's real batch
    assert {"ce_ins", "ce_cls"} <= set(logs)
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    idx = tr._batch()
    y, x = tr.y[idx], tr.x[idx]
    fake = g.sample(tr.attr[y], tr.rng)
    extra = tr.generator_extra(y, tr.attr[y], x, fake)
    for name in ("ce_ins_g", "ce_cls_g"):  # each term alone reaches G through its fake features, and E
        for p in [*g.parameters(), *net.parameters()]:
            p.grad = None
        extra[name].backward(retain_graph=True)
        assert g.fc1.weight.grad.abs().sum() > 0 and g.fc2.weight.grad.abs().sum() > 0, name
        assert net.embed.weight.grad.abs().sum() > 0, name
    # the student reads h = E(x): its losses reach G through E as well
    x_gen = g.sample(tr.attr[tr.unseen_classes], tr.rng)
    for p in g.parameters():
        p.grad = None
    tr.student_losses(x[:0], y[:0], x_gen, tr.unseen_classes, with_id=False)["cls"].backward()
    assert g.fc2.weight.grad.abs().sum() > 0
    assert tr.model.student.embed.in_features == net.embed.out_features  # ψ reads h, not x


def test_default_generator_builds_the_networks_of_before(data):
    cfg = tiny_config()
    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    assert with_generator(_Trainer, cfg) is _Trainer
    tr = _Trainer(task, cfg)
    assert tr.model.contrastive is None and tr.model.generator_kind == "clswgan"
    assert not any(k.startswith("contrastive.") for k in tr.model.state_dict())
    assert tr.model.student.embed.in_features == data.features.shape[1]
    x = tr.x[:5]
    assert tr.model.student_features(x) is x


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    # one thread: tiny steps (a busy 2-core machine's thread pool makes each slower); measured on this machine:
    # S 0.94, U 0.40, H 0.57, CZSL 0.58 (f-CLSWGAN's generator needs ~20 epochs for U > 0.8 here)
    out = train_bundle(data, ce_config(epochs=8, student_lr=1e-2, select="none"), tmp_path_factory.mktemp("ce"),
                       threads=1)
    return out, load_bundle(out.bundle_dir)


def test_d3gzsl_on_ce_gzsl_beats_chance_on_unseen_by_a_wide_margin(trained, data):
    out, bundle = trained
    m = evaluate_bundle(bundle, data)
    assert m["CZSL"] > 0.45 and m["U"] > 0.25 and m["H"] > 0.35, m  # chance 0.17, 0.03, 0.03
    row = out.final_history[-1]
    assert {"ce_ins", "ce_cls", "ce_ins_g", "ce_cls_g"} <= set(row)


def test_bundle_records_the_generator_and_round_trips(trained, data, tmp_path):
    out, bundle = trained
    cfg = bundle.config
    assert cfg.method == "d3gzsl" and cfg.generator.kind == "ce-gzsl"
    assert (cfg.generator.embed_dim, cfg.generator.proj_dim, cfg.generator.comparator_dim) == (32, 8, 32)  # embed 32
    saved = json.loads((out.bundle_dir / "config.json").read_text())
    assert saved["generator"]["kind"] == "ce-gzsl"
    again = load_bundle(save_bundle(bundle.model, cfg, tmp_path / "copy", bundle.origins))
    x = torch.from_numpy(data.features[:16])
    with torch.no_grad():
        assert torch.equal(bundle.model.class_scores(x), again.model.class_scores(x))
        want = torch.softmax(bundle.model.student(bundle.model.contrastive.embedding(bundle.model.visual(x)))[1], 1)
    torch.testing.assert_close(bundle.model.class_scores(x), want)  # the classifier reads h = E(v)


def test_a_clswgan_bundle_writes_no_generator_choice(tmp_path):
    fs = make_feature_set()
    out = train_bundle(fs, tiny_config(epochs=1, teacher_epochs=1, select="none"), tmp_path, threads=1)
    saved = json.loads((out.bundle_dir / "config.json").read_text())
    assert set(saved["generator"]) == {"noise_dim", "hidden_dim", "critic_hidden_dim", "leaky_slope"}
    assert load_bundle(out.bundle_dir).config.generator.kind == "clswgan"


def test_dkgzsl_on_ce_gzsl_trains_and_round_trips(tmp_path):
    from dkgzsl_app.trainer.synthetic import make_region_set

    fs = make_region_set(n_classes=8, n_unseen=2, regions=4, distractors=1, per_class=12)
    cfg = ce_config(method="dkgzsl", attn_dim=8, epochs=2, teacher_epochs=1, select="none")
    out = train_bundle(fs, cfg, tmp_path / "run", threads=1)
    bundle = load_bundle(out.bundle_dir)
    assert bundle.config.method == "dkgzsl" and bundle.config.generator.kind == "ce-gzsl"
    assert bundle.model.sovr is not None and bundle.model.contrastive is not None
    assert {"ce_ins", "ce_ins_g", "ktn"} <= set(out.final_history[-1])
    again = load_bundle(save_bundle(bundle.model, bundle.config, tmp_path / "copy", bundle.origins))
    x = torch.from_numpy(fs.features[:6])
    with torch.no_grad():
        assert torch.equal(bundle.model.class_scores(x), again.model.class_scores(x))


def test_resume_equals_uninterrupted(tmp_path):
    fs = make_feature_set()
    cfg = ce_config(epochs=2, teacher_epochs=1, val_class_fraction=0.25)
    full = train_bundle(fs, cfg, tmp_path / "full", threads=1)
    run = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_bundle(fs, cfg, run, on_epoch=stop_after("select", 1), threads=1)
    with pytest.raises(Interrupt):
        train_bundle(fs, cfg, run, resume=True, on_epoch=stop_after("final", 1), threads=1)
    resumed = train_bundle(fs, cfg, run, resume=True, threads=1)
    a, b = load_bundle(full.bundle_dir).model.state_dict(), load_bundle(resumed.bundle_dir).model.state_dict()
    assert any(k.startswith("contrastive.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- the app: add-class, train --from, refusals -----------------------------------------------------------
def ce_bundle(folder, seed=0):
    """A CE-GZSL d3gzsl bundle over the registry tests' 5 classes, built by hand: h (96 wide) is not x's width
    (24), so a student fed x instead of h fails; the student is trained on h of generated features (as training
    leaves it: it tells the built-in classes apart)."""
    from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
    from dkgzsl_app.models.networks import ZSLModel
    from userclass_helpers import ATTRS, CLASSES, SEEN, VALUES

    cfg = ModelConfig(method="d3gzsl", feature_dim=24, attribute_names=list(ATTRS), class_names=list(CLASSES),
                      seen=list(SEEN), generator=GeneratorConfig(noise_dim=4, hidden_dim=32, critic_hidden_dim=8,
                                                                 kind="ce-gzsl", embed_dim=96, proj_dim=5,
                                                                 comparator_dim=8),
                      head=HeadConfig(embed_dim=64), calibration=0.1)
    torch.manual_seed(seed)
    model = ZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.tensor(VALUES, dtype=torch.float32))
    with torch.no_grad():  # an untrained G hardly depends on a: let a, not the noise z, set the features
        model.generator.fc1.weight[:, :4] *= 0.05
    cond = model.normalized_attributes().repeat_interleave(32, 0)
    y = torch.arange(len(CLASSES)).repeat_interleave(32)
    params = list(model.student.parameters())
    with torch.no_grad():
        h = model.student_features(model.generator.sample(cond))  # (160, 96)
    for _ in range(200):  # plain gradient descent (torch.optim's first step imports torch._dynamo: seconds)
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model.student(h)[1], y), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.5 * g
    return save_bundle(model, cfg, folder)


def test_add_class_embeds_generated_features_before_the_student(tmp_path):
    from dkgzsl_app.classes import add_classes, with_user_classes
    from userclass_helpers import ATTRS, CLASSES

    cold_vase = {"furry": 0, "hot": 0, "ceramic": 1, "size": 1}  # far from every built-in class
    folder = ce_bundle(tmp_path / "b")  # seeds 0, 1, 2: win rates all > 0.8 (h 48 wide: one seed 0.73)
    assert add_classes(f"local-dir:{folder}", {"cold_vase": cold_vase}) == ["cold_vase"]
    view = with_user_classes(load_bundle(folder))
    cfg, model = view.config, view.model
    assert cfg.class_names[-1] == "cold_vase" and view.origins[-1] == "user"
    new = torch.tensor([[cold_vase[a] for a in ATTRS]], dtype=torch.float32)
    with torch.no_grad():
        x = model.generator.sample(torch.nn.functional.normalize(new, dim=1).repeat(200, 1),
                                   generator=torch.Generator().manual_seed(5))  # fresh draws, not the fit's
        probs = model.class_scores(x, cfg.head.tau_student)  # (200, 6): v = x here (min 0, scale 1)
        want = torch.softmax(model.student(model.contrastive.embedding(x))[1], 1)
    torch.testing.assert_close(probs, want)  # the user row reads h = E(x), like the built-in ones
    scores = probs - cfg.calibration * torch.tensor(cfg.seen, dtype=torch.float32)
    assert (scores.argmax(1) == len(CLASSES)).float().mean() > 0.8


def test_train_from_keeps_the_generator(trained, data, tmp_path):
    from dkgzsl_app.trainer.finetune import adopt_settings

    out, bundle = trained
    cfg = adopt_settings(tiny_config(), bundle.config)  # a run that names no generator
    assert cfg.generator == "ce-gzsl" and (cfg.ce_embed_dim, cfg.ce_proj_dim, cfg.ce_comparator_dim) == (32, 8, 32)
    with pytest.raises(UsageError, match="generator"):
        adopt_settings(tiny_config(), bundle.config, explicit={"generator"})  # --generator clswgan said aloud
    tuned = train_bundle(data, tiny_config(epochs=1, teacher_epochs=0, select="none"), tmp_path / "ft",
                         init_from=out.bundle_dir, threads=1)
    again = load_bundle(tuned.bundle_dir)
    assert again.config.generator.kind == "ce-gzsl" and again.config.generator.embed_dim == 32
    assert again.config.provenance["finetuned_from"]["weights_sha256"] == bundle.config.weights_sha256
    # E started from the bundle's (a fresh init would be uncorrelated with it) and moved for one epoch
    w0, w1 = bundle.model.contrastive.embed.weight.flatten(), again.model.contrastive.embed.weight.flatten()
    assert torch.nn.functional.cosine_similarity(w0, w1, dim=0) > 0.8 and not torch.equal(w0, w1)


def test_a_bundle_whose_method_is_ce_gzsl_points_to_the_generator_option(trained, tmp_path):
    out, _ = trained
    copy = shutil.copytree(out.bundle_dir, tmp_path / "b")
    data = json.loads((copy / "config.json").read_text())
    data["method"] = "ce-gzsl"
    (copy / "config.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="--generator ce-gzsl"):
        load_bundle(copy)
    data["method"], data["generator"]["kind"] = "d3gzsl", "vae"
    (copy / "config.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="unknown generator kind 'vae'"):
        load_bundle(copy)


@pytest.mark.skipif("msdn" not in CHOICES["method"], reason="MSDN is not in this checkout")
def test_ce_gzsl_under_an_embedding_method_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no generator"):
        check_generator(tiny_config(method="msdn", generator="ce-gzsl"))
    folder = tmp_path / "feats"
    from dkgzsl_app.trainer.data import save_feature_folder

    save_feature_folder(make_feature_set(), folder)
    r = runner.invoke(app, ["train", "--features", str(folder), "--out", str(tmp_path / "run"), "--method", "msdn",
                            "--generator", "ce-gzsl"])
    assert r.exit_code == 2 and "embedding method with no generator" in r.output, r.output
    run = tmp_path / "run"
    assert not run.exists() or not any(run.iterdir())  # refused before any work


def test_cli_trains_with_the_generator_option(tmp_path):
    from dkgzsl_app.trainer.data import save_feature_folder

    folder = tmp_path / "feats"
    save_feature_folder(make_feature_set(n_classes=8, n_unseen=2, per_class=12), folder)
    threads = torch.get_num_threads()
    try:  # --threads sets torch's count for the process
        r = runner.invoke(app, ["train", "--features", str(folder), "--out", str(tmp_path / "run"), "--generator",
                                "ce-gzsl", "--ce-weight", "0.01", "--epochs", "1", "--teacher-epochs", "1",
                                "--select", "none", "--hidden-dim", "32", "--embed-dim", "16", "--batch-size", "32",
                                "--threads", "1", "--json"])
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    bundle = load_bundle(json.loads(r.stdout)["bundle"])
    assert bundle.config.generator.kind == "ce-gzsl" and bundle.config.generator.embed_dim == 16
    train_config = bundle.config.provenance["train_config"]
    assert train_config["ce_ins_weight"] == train_config["ce_cls_weight"] == 0.01
