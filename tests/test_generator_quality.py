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
    g, seen = model.generator, task.seen_classes
    x, y = model.scale_features(task.features[task.train_idx]).double(), task.labels[task.train_idx]
    means = torch.stack([x[y == c].mean(0) for c in seen])
    a = model.normalized_attributes().double()
    ac = a[seen] - a[seen].mean(0)
    w = torch.linalg.solve(ac.T @ ac + torch.eye(a.shape[1], dtype=torch.float64), ac.T @ (means - means.mean(0)))
    expected = torch.relu(means.mean(0) + (a - a[seen].mean(0)) @ w)  # (C, D), unseen classes included
    with torch.no_grad():
        for seed in (0, 1):
            out = g.sample(a.float(), torch.Generator().manual_seed(seed)).double()
            assert torch.allclose(out, expected, atol=1e-4), float((out - expected).abs().max())
