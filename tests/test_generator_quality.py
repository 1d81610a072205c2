"""Generator-quality options (issue 12 item 9): each one changes what G's update does, and is off by default."""
import numpy as np
import pytest
import torch

from conftest import make_feature_set, tiny_config


@pytest.fixture(scope="module")
def data():
    return make_feature_set(n_classes=12, n_unseen=3)


def _trainer(data, **overrides):
    from dkgzsl_app.trainer.loop import _Trainer
    from dkgzsl_app.trainer.task import make_task

    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    tr = _Trainer(task, tiny_config(**overrides))
    tr.train_teacher()
    return tr


def _one_generator_step(tr, spy=None):
    idx = tr._batch()
    y, a = tr.y[idx], tr.attr[tr.y[idx]]
    if spy is not None:
        spy(tr, a)
    tr.generator_step(y, a, tr.x[idx])
    return a


def test_attribute_noise_perturbs_only_gs_conditioning(data):
    """g_attr_noise: G's seen batch is generated from noisy attributes; the critic still judges the clean ones."""
    calls = {"g": [], "d": []}
    tr = _trainer(data, g_attr_noise=0.3)
    sample, critic = tr.model.generator.sample, tr.model.critic.forward
    tr.model.generator.sample = lambda att, rng=None: (calls["g"].append(att.detach().clone()), sample(att, rng))[1]
    tr.model.critic.forward = lambda x, att: (calls["d"].append(att.detach().clone()), critic(x, att))[1]
    a = _one_generator_step(tr)
    seen_g, seen_d = calls["g"][0], calls["d"][0]  # the first G call and critic call are the seen batch
    assert torch.equal(seen_d, a)
    noise = seen_g - a
    assert 0.2 < float(noise.std()) < 0.4  # N(0, 0.3²) on every attribute
    assert torch.equal(calls["g"][1], tr.attr[tr.unseen_classes.repeat_interleave(tr.cfg.gen_per_unseen)])


def test_attribute_noise_off_by_default_keeps_the_random_stream(data):
    """Default (0): no extra draw, so every default run (and the bundled demo model) is unchanged."""
    states = []
    for noise in (0.0, 0.3):
        tr = _trainer(data, g_attr_noise=noise)
        _one_generator_step(tr)
        states.append(tr.rng.get_state())
    assert not torch.equal(states[0], states[1])
    tr = _trainer(data)
    _one_generator_step(tr)
    assert torch.equal(tr.rng.get_state(), states[0])


def test_generator_weight_decay_shrinks_gs_weights(data):
    """g_weight_decay: an L2 penalty on G's weight matrices in G's objective."""
    norms = {}
    for wd in (0.0, 1.0):
        tr = _trainer(data, g_weight_decay=wd)
        for _ in range(5):
            _one_generator_step(tr)
        norms[wd] = sum(float(p.detach().norm()) for n, p in tr.model.generator.named_parameters() if n.endswith("weight"))
    assert norms[1.0] < norms[0.0] - 0.1, norms


def test_class_mean_term_pulls_generated_means_to_real_means(data):
    """g_mean_weight: G's objective gains an MSE between generated and real per-class means."""
    dist = {}
    for w in (0.0, 100.0):
        tr = _trainer(data, g_mean_weight=w, critic_steps=1)
        for _ in range(30):
            _one_generator_step(tr)
        with torch.no_grad():
            seen = tr.seen_classes
            fake = torch.stack([tr.model.generator.sample(tr.attr[c].expand(64, -1), tr.rng).mean(0) for c in seen])
            real = torch.stack([tr.x[tr.y == c].mean(0) for c in seen])
        dist[w] = float(((fake - real) ** 2).mean())
    assert dist[100.0] < 0.5 * dist[0.0], dist


def test_ridge_initialised_generator_starts_as_the_closed_form_map(data):
    """g_init_ridge: before training, G's output for any noise is ReLU(ridge map of the attributes)."""
    from dkgzsl_app.trainer.loop import build_model
    from dkgzsl_app.trainer.task import make_task

    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    plain = build_model(task, tiny_config())
    model = build_model(task, tiny_config(g_init_ridge=1.0, hidden_dim=600))
    assert [n for n, _ in model.state_dict().items()] == [n for n, _ in plain.state_dict().items()]
    expected = _ridge_means(model, task, 1.0)
    a = model.normalized_attributes()
    with torch.no_grad():
        for seed in (0, 1):
            out = model.generator.sample(a, torch.Generator().manual_seed(seed)).double()
            assert torch.allclose(out, expected, atol=1e-4), float((out - expected).abs().max())


def _ridge_means(model, task, lam):
    """ReLU(m̄ + (a − ā) W) for every class (C, D), computed here independently of trainer/loop.py."""
    seen = task.seen_classes
    x, y = model.scale_features(task.features[task.train_idx]).double(), task.labels[task.train_idx]
    means = torch.stack([x[y == c].mean(0) for c in seen])
    a = model.normalized_attributes().double()
    ac = a[seen] - a[seen].mean(0)
    w = torch.linalg.solve(ac.T @ ac + lam * torch.eye(a.shape[1], dtype=torch.float64), ac.T @ (means - means.mean(0)))
    return torch.relu(means.mean(0) + (a - a[seen].mean(0)) @ w)  # (C, D), unseen classes included


def _dk_trainer(data, **overrides):
    from dkgzsl_app.trainer.methods import trainer_class
    from dkgzsl_app.trainer.task import make_task

    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    return trainer_class("dkgzsl")(task, tiny_config(method="dkgzsl", **overrides)), task


def test_knowledge_generator_with_ridge_start_is_the_closed_form_map(data):
    """DKGZSL (pooled, KTN/MFU) with g_init_ridge: G(z, a) and the KTN's feature-level knowledge k2 both equal
    the ridge map at the start, for any noise (the MFUs add exactly 0 until training opens them)."""
    tr, task = _dk_trainer(data, g_init_ridge=1.0, hidden_dim=600)
    g = tr.model.generator
    assert hasattr(g, "ktn")  # the KnowledgeGenerator, not f-CLSWGAN's plain G
    expected = _ridge_means(tr.model, task, 1.0)
    a = tr.model.normalized_attributes()
    with torch.no_grad():
        for seed in (0, 1):
            out = g.sample(a, torch.Generator().manual_seed(seed)).double()
            assert torch.allclose(out, expected, atol=1e-4), float((out - expected).abs().max())
        _, k2 = g.knowledge(a)
        assert torch.allclose(k2.double(), expected, atol=1e-4)
    assert all(float(m.norm.weight.detach().abs().max()) == 0.0 for m in (g.mfu1, g.mfu2))


def test_knowledge_generator_ridge_start_changes_only_g_and_its_fusion_opens(data):
    """Off (default) ⇒ the weights of a plain build; on ⇒ only G's parameters differ (no extra random draws),
    and one generator step gives the closed MFU gains a gradient."""
    plain, _ = _dk_trainer(data, hidden_dim=600)
    again, _ = _dk_trainer(data, hidden_dim=600, g_init_ridge=0.0)
    ridge, _ = _dk_trainer(data, hidden_dim=600, g_init_ridge=1.0)
    p0, p1, p2 = plain.model.state_dict(), again.model.state_dict(), ridge.model.state_dict()
    assert all(torch.equal(p0[k], p1[k]) for k in p0)
    changed = {k for k in p0 if not torch.equal(p0[k], p2[k])}
    assert changed and all(k.startswith("generator.") for k in changed), changed
    assert {"generator.mfu1.norm.weight", "generator.ktn.fc2.weight", "generator.fc1.weight"} <= changed
    assert torch.equal(plain.rng.get_state(), ridge.rng.get_state())
    ridge.train_teacher()
    _one_generator_step(ridge)
    g = ridge.model.generator
    assert float(g.mfu2.norm.weight.detach().abs().max()) > 0.0  # fusion opened by G's first update


def test_ridge_start_is_refused_on_region_features():
    from dkgzsl_app.trainer.methods import trainer_class
    from dkgzsl_app.trainer.synthetic import make_region_set
    from dkgzsl_app.trainer.task import make_task

    regions = make_region_set(n_classes=8, n_unseen=2, regions=4, distractors=1)
    task = make_task(regions, np.arange(len(regions.class_names)), regions.seen, regions.trainval)
    with pytest.raises(ValueError, match="pooled features"):
        trainer_class("dkgzsl")(task, tiny_config(method="dkgzsl", g_init_ridge=1.0, attn_dim=16))


def test_unseen_anchor_needs_the_ridge_start():
    with pytest.raises(ValueError, match="g_init_ridge"):
        tiny_config(g_unseen_anchor=1.0).validate()
    tiny_config(g_unseen_anchor=1.0, g_init_ridge=1.0).validate()


def test_unseen_anchor_holds_gs_unseen_means_at_the_ridge_map(data):
    """g_unseen_anchor: G's generated unseen class means stay near the map G started from while the critic
    trains G on seen classes; no extra random numbers are drawn."""
    from dkgzsl_app.trainer.task import make_task

    task = make_task(data, np.arange(len(data.class_names)), data.seen, data.trainval)
    dist, states = {}, {}
    for w in (0.0, 100.0):
        tr = _trainer(data, g_init_ridge=1.0, g_unseen_anchor=w, hidden_dim=600, critic_steps=1)
        target = _ridge_means(tr.model, task, 1.0)[tr.unseen_classes]  # (U, D)
        for _ in range(30):
            _one_generator_step(tr)
        states[w] = tr.rng.get_state()
        with torch.no_grad():
            fake = torch.stack([tr.model.generator.sample(tr.attr[c].expand(64, -1), tr.rng).mean(0)
                                for c in tr.unseen_classes]).double()
        dist[w] = float(((fake - target) ** 2).mean())
    assert dist[100.0] < 0.5 * dist[0.0], dist
    assert torch.equal(states[0.0], states[100.0])
