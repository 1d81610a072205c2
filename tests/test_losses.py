"""Each loss against a value computed by hand (the arithmetic is spelled out in the comments)."""
import math

import pytest
import torch

from dkgzsl_app.models import losses as L


def softplus(x):
    return math.log1p(math.exp(x))


def test_cls_loss_hand_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    # -log softmax of the true class = log(1 + e^{-margin}): margins 2 and 1
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    assert L.cls_loss(logits, labels, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # τ = 2 halves the margins
    expected_t2 = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-0.5))) / 2
    assert L.cls_loss(logits, labels, 2.0).item() == pytest.approx(expected_t2, rel=1e-6)


def test_kl_loss_hand_value():
    teacher = torch.tensor([[3.0, 4.0]])  # L2-normalised: (0.6, 0.8)
    student = torch.tensor([[0.0, 5.0]])  # L2-normalised: (0, 1)
    p_o = [math.exp(0.6), math.exp(0.8)]
    p_o = [v / sum(p_o) for v in p_o]
    p_s = [1 / (1 + math.e), math.e / (1 + math.e)]
    expected = sum(a * math.log(a / b) for a, b in zip(p_o, p_s))
    assert L.kl_loss(teacher, student, tau=1.0).item() == pytest.approx(expected, rel=1e-5)
    # identical directions give zero, whatever the scale
    assert L.kl_loss(teacher, 7 * teacher, tau=0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_loss_teacher_only_normalisation():
    teacher = torch.tensor([[3.0, 4.0]])
    student = torch.tensor([[0.6, 0.8]])  # raw student logits equal the normalised teacher's
    assert L.kl_loss(teacher, student, tau=1.0, normalize="teacher").item() == pytest.approx(0.0, abs=1e-7)


def _pairwise_expected():
    # left = [[1,0],[0,1]], right = [[1,0],[1,1]]: cos = [[1, 1/√2], [0, 1/√2]]; labels (0, 1)
    r = 1 / math.sqrt(2)
    terms = [softplus(-1.0), softplus(r), softplus(0.0), softplus(-r)]  # BCE(σ(c), t) = softplus(∓c)
    return sum(terms) / 4


def test_be_loss_hand_value():
    e_o = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e_s = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # scale must not matter: cosines
    labels = torch.tensor([0, 1])
    assert L.be_loss(e_o, e_s, labels, tau=1.0).item() == pytest.approx(_pairwise_expected(), rel=1e-6)


def test_be_loss_temperature_scales_cosines():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    # cos = I: positives at 1/τ, negatives at 0 → (2·softplus(-10) + 2·softplus(0)) / 4 at τ = 0.1
    expected = (2 * softplus(-10.0) + 2 * softplus(0.0)) / 4
    assert L.be_loss(e, e, labels, tau=0.1).item() == pytest.approx(expected, rel=1e-6)


def test_od_loss_hand_value():
    c = torch.tensor([1.0, 0.0])  # h̃ = [[1, 0], [0, 1]]
    h_hat = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1])
    assert L.od_loss(c, h_hat, labels, tau=1.0).item() == pytest.approx(_pairwise_expected(), rel=1e-6)


def test_od_loss_gradient_reaches_epsilon_and_head():
    from dkgzsl_app.models.networks import LearnableSigmoid

    eps, head = LearnableSigmoid(), torch.nn.Linear(3, 2)
    scores = torch.tensor([0.9, 0.2, 0.5])
    probs = torch.softmax(torch.randn(3, 3), dim=1)
    L.od_loss(eps(scores), head(probs), torch.tensor([0, 1, 1])).backward()
    assert eps.weight.grad is not None and eps.weight.grad.abs() > 0
    assert head.weight.grad.abs().sum() > 0


def test_teacher_ood_scores():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    assert L.teacher_ood_score(logits, kind="msp").item() == pytest.approx(0.75)
    assert L.teacher_ood_score(logits, kind="energy").item() == pytest.approx(math.log(4.0), rel=1e-6)
    with pytest.raises(ValueError):
        L.teacher_ood_score(logits, kind="odin")


def test_gradient_penalty_of_linear_critic():
    class LinearCritic(torch.nn.Module):  # D(x, a) = w·x: ∇ₓD = w everywhere
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))

        def forward(self, x, a):
            return x @ self.w

    real, fake, attrs = torch.randn(5, 2), torch.randn(5, 2), torch.zeros(5, 1)
    gp = L.gradient_penalty(LinearCritic(), real, fake, attrs)
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2, rel=1e-6)  # (‖w‖ − 1)²


def test_pairwise_balance_hand_values():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # cos = [[1,1,0],[1,1,0],[0,0,1]]: 5 positive pairs at cos 1, 4 negative pairs at cos 0
    plain = (5 * softplus(-1.0) + 4 * math.log(2)) / 9
    balanced = (softplus(-1.0) + math.log(2)) / 2
    assert L.be_loss(e, e, labels, tau=1.0, balance=False).item() == pytest.approx(plain, rel=1e-6)
    assert L.be_loss(e, e, labels, tau=1.0, balance=True).item() == pytest.approx(balanced, rel=1e-6)


def test_balanced_loss_does_not_depend_on_how_many_negatives():
    """Balanced: positives and negatives weigh half each, however many classes the batch holds.
    Plain: the more classes, the more the negatives (at ln 2 each here) dominate."""
    def batch(n_classes):
        e = torch.eye(n_classes)  # one sample per class, orthogonal: positives cos 1, negatives cos 0
        return e, e, torch.arange(n_classes)
    few, many = batch(3), batch(30)
    assert L.be_loss(*few, tau=1.0).item() == pytest.approx(L.be_loss(*many, tau=1.0).item(), rel=1e-6)
    plain_few = L.be_loss(*few, tau=1.0, balance=False).item()
    plain_many = L.be_loss(*many, tau=1.0, balance=False).item()
    assert plain_few == pytest.approx((3 * softplus(-1.0) + 6 * math.log(2)) / 9, rel=1e-6)
    assert plain_many == pytest.approx((30 * softplus(-1.0) + 870 * math.log(2)) / 900, rel=1e-6)


def test_normalize_ood_score_maps_the_range_onto_unit():
    s = torch.tensor([2.0, 7.0, 12.0, 17.0])
    assert torch.allclose(L.normalize_ood_score(s, 7.0, 17.0), torch.tensor([-0.5, 0.0, 0.5, 1.0]))


def test_gradient_penalty_first_order_critic_is_autograds_bit_for_bit():
    """networks.Critic's first-order pass (the mask a constant of the double backward) gives the penalty and
    the critic's gradients of autograd's own LeakyReLU exactly, and the interpolates no gradient of their own."""
    from dkgzsl_app.models.networks import Critic

    torch.manual_seed(0)
    critic = Critic(attr_dim=3, hidden_dim=16, feature_dim=8)
    real, fake, attrs = torch.randn(6, 8), torch.randn(6, 8), torch.randn(6, 3)

    def run(first_order: bool):
        critic.zero_grad(set_to_none=True)
        call = critic if first_order else (lambda x, a: Critic.forward(critic, x, a))  # the plain forward
        gp = L.gradient_penalty(call, real, fake, attrs, torch.Generator().manual_seed(1))
        gp.backward()
        return gp.detach(), {n: p.grad for n, p in critic.named_parameters() if p.grad is not None}

    gp_plain, grads_plain = run(False)
    gp_first, grads_first = run(True)
    assert torch.equal(gp_plain, gp_first)
    assert sorted(grads_first) == ["fc1.weight", "fc2.weight"]  # what the penalty depends on
    assert all(torch.equal(grads_plain[n], g) for n, g in grads_first.items())
    # autograd's own pass also hands fc1's bias the zero gradient of the mask's derivative: exactly nothing
    assert sorted(grads_plain) == ["fc1.bias", "fc1.weight", "fc2.weight"]
    assert not grads_plain["fc1.bias"].any()
    assert gp_first.item() > 0 and all(g.abs().sum() > 0 for g in grads_first.values())
