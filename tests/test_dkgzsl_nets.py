"""DKGZSL networks: SOVR (FDE, ARA) and the knowledge-guided generator (KTN, MFU), on tiny tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

from dkgzsl_app.models.knowledge import KTN, MFU, KnowledgeGenerator
from dkgzsl_app.models.networks import Generator
from dkgzsl_app.models.sovr import ARA, FDE, SOVR, SOVROutput, attribute_logits

B, R, C, A, K = 4, 9, 16, 5, 3


def regions(seed=0, b=B, r=R, c=C):
    return torch.rand(b, r, c, generator=torch.Generator().manual_seed(seed))  # (B, R, C) in [0, 1]


def assert_all_grads(module, loss):
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"


# --- FDE -------------------------------------------------------------------------------------------

def test_fde_shapes_and_initial_mask_is_half_open():
    torch.manual_seed(0)
    refined, m = FDE(C, attn_dim=8)(regions())
    assert refined.shape == (B, R, C) and m.shape == (B, R)
    assert ((m > 0.5) & (m < 0.7)).all(), m  # nothing suppressed before training
    torch.testing.assert_close(refined, m.unsqueeze(-1) * regions())


def test_fde_topk_keeps_exactly_k_regions_per_row():
    torch.manual_seed(0)
    fde = FDE(C, attn_dim=8, mask="topk", topk=3)
    _, m = fde(regions())
    assert ((m > 0).sum(1) == 3).all(), m
    s = fde.scores(regions())
    lowest_kept = s.masked_fill(m == 0, math.inf).min(1).values
    highest_dropped = s.masked_fill(m > 0, -math.inf).max(1).values
    assert (lowest_kept >= highest_dropped).all()  # the kept regions are the top-scoring ones
    torch.testing.assert_close(m[m > 0], torch.sigmoid(s)[m > 0])


@pytest.mark.parametrize("kwargs", [{"mask": "hard"}, {"mask": "topk", "topk": 0}])
def test_fde_rejects_bad_mask_settings(kwargs):
    with pytest.raises(ValueError):
        FDE(C, **kwargs)


def test_fde_topk_larger_than_regions_is_refused():
    with pytest.raises(ValueError, match="only 9 regions"):
        FDE(C, mask="topk", topk=R + 1)(regions())


@pytest.mark.parametrize("mask,topk", [("soft", 0), ("topk", 4)])
def test_fde_gradients_reach_every_parameter(mask, topk):
    torch.manual_seed(0)
    fde = FDE(C, attn_dim=8, mask=mask, topk=topk)
    refined, m = fde(regions())
    assert_all_grads(fde, refined.sum() + m.sum())


# --- ARA -------------------------------------------------------------------------------------------

def test_ara_shapes_and_attention_rows_sum_to_one():
    torch.manual_seed(0)
    local, scores, attention = ARA(C, A, attn_dim=8)(regions())
    assert local.shape == (B, A, C) and scores.shape == (B, A) and attention.shape == (B, A, R)
    torch.testing.assert_close(attention.sum(-1), torch.ones(B, A))
    torch.testing.assert_close(local, attention @ regions())


def test_ara_scores_are_per_attribute_linear_readouts():
    torch.manual_seed(0)
    ara = ARA(C, A, attn_dim=8)
    local, scores, _ = ara(regions())
    for a in range(A):
        torch.testing.assert_close(scores[:, a], local[:, a] @ ara.score_weight[a] + ara.score_bias[a])


def test_ara_weights_lower_attention_on_suppressed_regions():
    torch.manual_seed(0)
    ara = ARA(C, A, attn_dim=8)
    weights = torch.ones(B, R)
    weights[:, :3] = 0.01  # regions 0-2 suppressed
    _, _, free = ara(regions(), None)
    _, _, guided = ara(regions(), weights)
    assert (guided[..., :3] < free[..., :3]).all()
    assert (guided[..., 3:] > free[..., 3:]).all()
    _, _, off = ara(regions(), torch.cat([torch.zeros(B, 3), torch.ones(B, R - 3)], 1))
    assert off[..., :3].max() < 1e-4  # weight 0: practically never attended
    # uniform weights change nothing (a constant shift of the logits)
    torch.testing.assert_close(ara(regions(), torch.full((B, R), 0.3))[2], free)


def test_ara_gradients_reach_every_parameter():
    torch.manual_seed(0)
    ara = ARA(C, A, attn_dim=8)
    local, scores, _ = ara(regions(), torch.rand(B, R))
    assert_all_grads(ara, local.pow(2).sum() + scores.sum())


# --- SOVR ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fde,ara", [(True, True), (True, False), (False, True), (False, False)])
def test_sovr_shapes(fde, ara):
    torch.manual_seed(0)
    sovr = SOVR(C, A, attn_dim=8, fde=fde, ara=ara)
    assert (sovr.fde is not None) == fde and (sovr.ara is not None) == ara
    out = sovr(regions())
    assert isinstance(out, SOVROutput) and out.v.shape == (B, C)
    assert (out.region_weights is not None) == fde
    assert (out.attribute_scores is not None) == ara and (out.attention is not None) == ara
    if fde:
        assert out.region_weights.shape == (B, R)
    if ara:
        assert out.attribute_scores.shape == (B, A) and out.attention.shape == (B, A, R)


def test_sovr_both_off_is_the_plain_mean():
    out = SOVR(C, A, fde=False, ara=False)(regions())
    torch.testing.assert_close(out.v, regions().mean(1))
    torch.testing.assert_close(out.v, F.adaptive_avg_pool1d(regions().transpose(1, 2), 1).squeeze(-1))
    assert list(SOVR(C, A, fde=False, ara=False).parameters()) == []


def test_sovr_v_pools_fde_weights_and_ara_locals():
    torch.manual_seed(0)
    sovr = SOVR(C, A, attn_dim=8, mask="topk", topk=2)
    out = sovr(regions())
    m = out.region_weights
    weighted = (m.unsqueeze(-1) * regions()).sum(1) / (m.sum(1, keepdim=True) + 1e-6)
    local, _, _ = sovr.ara(regions(), m)
    torch.testing.assert_close(out.v, (weighted + local.mean(1)) / 2)
    # FDE only: v is a weighted mean of the 2 kept regions
    sovr.ara = None
    torch.testing.assert_close(sovr(regions()).v, weighted)


def test_sovr_gradients_reach_every_parameter():
    torch.manual_seed(0)
    sovr = SOVR(C, A, attn_dim=8)
    out = sovr(regions())
    assert_all_grads(sovr, out.v.pow(2).sum() + out.attribute_scores.sum())


def test_attribute_logits_are_compatibility_scores():
    scores = torch.tensor([[1.0, 0.0, 2.0]])  # (B=1, A=3)
    classes = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.5, 1.0]])  # (K=2, A=3)
    torch.testing.assert_close(attribute_logits(scores, classes), torch.tensor([[1.0, 2.0]]))


def test_sovr_finds_the_one_informative_region_where_mean_pooling_cannot():
    """4 classes; each sample has 9 regions: one marked region (channel 0 = 1) shows the class prototype,
    the 8 others show prototypes of random classes. The mean mixes them all (the true class is only the
    most frequent prototype part of the time); attending to the marked region solves the task."""
    n_cls, n, c, steps = 4, 512, 8, 200
    gen = torch.Generator().manual_seed(0)
    protos = torch.eye(n_cls, c - 1)  # one-hot prototypes on channels 1..4
    labels = torch.randint(n_cls, (n,), generator=gen)
    distract = torch.randint(n_cls, (n, R), generator=gen)
    pos = torch.randint(R, (n,), generator=gen)
    distract[torch.arange(n), pos] = labels
    x = torch.zeros(n, R, c)
    x[..., 1:] = protos[distract] + 0.05 * torch.rand(n, R, c - 1, generator=gen)
    x[torch.arange(n), pos, 0] = 1.0  # the marker
    train, test = slice(0, 384), slice(384, n)

    def fit(fde, ara):
        torch.manual_seed(0)
        sovr, head = SOVR(c, n_cls, attn_dim=16, fde=fde, ara=ara), torch.nn.Linear(c, n_cls)
        opt = torch.optim.Adam([*sovr.parameters(), *head.parameters()], lr=0.02)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(head(sovr(x[train]).v), labels[train]).backward()
            opt.step()
        with torch.no_grad():
            return (head(sovr(x[test]).v).argmax(1) == labels[test]).float().mean().item()

    mean_acc, sovr_acc = fit(False, False), fit(True, True)
    assert mean_acc < 0.8, mean_acc
    assert sovr_acc > 0.95 and sovr_acc - mean_acc > 0.2, (sovr_acc, mean_acc)


# --- KTN, MFU, KnowledgeGenerator --------------------------------------------------------------------

def test_ktn_shapes_levels_and_gradients():
    torch.manual_seed(0)
    ktn = KTN(A, 12, C)
    attrs = torch.rand(K, A)
    k1, k2 = ktn(attrs)
    assert k1.shape == (K, 12) and k2.shape == (K, C)
    assert (k2 >= 0).all()
    torch.testing.assert_close(k1, F.leaky_relu(ktn.fc1(attrs), 0.2))
    torch.testing.assert_close(k2, F.relu(ktn.fc2(k1)))
    assert_all_grads(ktn, k1.sum() + k2.sum())


def test_mfu_is_channelwise_gentle_at_start_and_trainable():
    dim = 4096
    mfu = MFU(dim)
    assert sum(p.numel() for p in mfu.parameters()) == 5 * dim  # O(dim): no dim×dim matrix
    assert all(p.dim() == 1 for p in mfu.parameters())
    torch.manual_seed(0)
    h, k = torch.randn(B, dim), 3 + 2 * torch.randn(B, dim)
    gate = mfu.gate(h, k)
    assert ((gate > 0.1) & (gate < 0.3)).all()
    n = F.layer_norm(k, (dim,))
    out = mfu(h, k)
    assert out.shape == (B, dim)
    torch.testing.assert_close(out, h + gate * n)
    assert_all_grads(mfu, out.pow(2).sum())


def test_knowledge_generator_interface_matches_generator():
    torch.manual_seed(0)
    g = KnowledgeGenerator(A, 6, 12, C)
    plain = Generator(A, 6, 12, C)
    assert g.noise_dim == plain.noise_dim == 6
    assert g.fc1.in_features == plain.fc1.in_features and g.fc1.out_features == 12
    assert g.fc2.in_features == 12 and g.fc2.out_features == C
    assert g.mfu1.w_h.shape == (12,) and g.mfu2.w_h.shape == (C,)
    attrs = torch.rand(B, A)
    k1, k2 = g.knowledge(attrs)
    assert k1.shape == (B, 12) and k2.shape == (B, C)
    z = torch.randn(B, 6)
    x = g(z, attrs)
    assert x.shape == (B, C) and (x >= 0).all()
    h = F.leaky_relu(g.mfu1(g.fc1(torch.cat([z, attrs], 1)), k1), 0.2)
    torch.testing.assert_close(x, F.relu(g.mfu2(g.fc2(h), k2)))
    assert KnowledgeGenerator(A, 6, 12, C, ktn_hidden=12).ktn.fc1.out_features == 12
    with pytest.raises(ValueError, match="hidden_dim"):
        KnowledgeGenerator(A, 6, 12, C, ktn_hidden=7)


def test_knowledge_generator_sample_is_deterministic_with_a_seeded_generator():
    torch.manual_seed(0)
    g = KnowledgeGenerator(A, 6, 12, C)
    attrs = torch.rand(B, A)
    a = g.sample(attrs, torch.Generator().manual_seed(7))
    b = g.sample(attrs, torch.Generator().manual_seed(7))
    c = g.sample(attrs, torch.Generator().manual_seed(8))
    assert a.shape == (B, C)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_knowledge_generator_gradients_reach_every_parameter():
    torch.manual_seed(0)
    g = KnowledgeGenerator(A, 6, 12, C)
    x = g.sample(torch.rand(8, A), torch.Generator().manual_seed(0))
    assert_all_grads(g, x.sum())
