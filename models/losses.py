"""Losses of f-CLSWGAN and D3GZSL, as METHODS.md states them.

Each takes plain tensors so it can be unit-tested against hand-computed values. Pairwise losses
(L_be, L_od) use one normalised matrix product, never repeat/expand.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, attributes: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: E[(‖∇_x̂ D(x̂, a)‖₂ − 1)²] on random interpolates x̂ of real (B, D) and fake (B, D).

    A critic whose forward takes ``first_order`` (networks.Critic) is asked for it: its activation's mask is
    then a constant of the double backward, which saves the work autograd spends on a zero gradient, with the
    same values."""
    alpha = torch.rand(real.shape[0], 1, generator=generator, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, D)
    first_order = _takes_first_order(critic)
    scores = critic(mixed, attributes, first_order=True) if first_order else critic(mixed, attributes)  # (B,)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def _takes_first_order(critic) -> bool:
    forward = getattr(critic, "forward", None)
    try:
        return forward is not None and "first_order" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def cls_loss(logits: torch.Tensor, labels: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """L_cls: cross-entropy of the student's logits (B, C) at temperature τ_s."""
    return F.cross_entropy(logits / tau, labels)


def kl_loss(teacher_logits: torch.Tensor, student_seen_logits: torch.Tensor, tau: float = 0.1,
            normalize: str = "both") -> torch.Tensor:
    """L_kl (instance-wise ID logit identity): KL(p_o ‖ p_s) on real seen samples.

    p_o = softmax(l2norm(teacher logits) / τ), p_s = softmax(student seen-class logits / τ), with
    the student's logits L2-normalised too when ``normalize == "both"`` (same scale on both sides).
    One softmax each; mean over the batch.
    """
    t = F.normalize(teacher_logits, dim=1)  # (B, S)
    s = F.normalize(student_seen_logits, dim=1) if normalize == "both" else student_seen_logits
    log_p_o = F.log_softmax(t / tau, dim=1)
    log_p_s = F.log_softmax(s / tau, dim=1)
    return (log_p_o.exp() * (log_p_o - log_p_s)).sum(dim=1).mean()


def pairwise_bce(left: torch.Tensor, right: torch.Tensor, labels: torch.Tensor, tau: float,
                 balance: bool = True) -> torch.Tensor:
    """BCE of σ(cos(left_i, right_j) / τ) against 1[y_i = y_j] over all pairs (i, j).

    ``balance``: average the positive and the negative pairs' means, so each side weighs half however
    many classes a batch holds. With many classes almost every pair is negative (~97% for a batch of
    256 over 150 classes), and the plain mean's gradient is then mostly "push cross-class cosines to
    0", which for ReLU embeddings drives the student's embedding of real seen images towards zero on
    every dimension another class uses. ``balance=False`` is the plain mean over all B² pairs.
    """
    cos = F.normalize(left, dim=1) @ F.normalize(right, dim=1).T  # (B, B)
    target = (labels[:, None] == labels[None, :]).to(cos.dtype)  # (B, B)
    bce = F.binary_cross_entropy_with_logits(cos / tau, target, reduction="none")  # (B, B)
    if not balance:
        return bce.mean()
    n_pos = target.sum()
    n_neg = target.numel() - n_pos
    pos = (bce * target).sum() / n_pos.clamp_min(1)
    neg = (bce * (1 - target)).sum() / n_neg.clamp_min(1)
    return (pos + neg) / 2 if n_neg > 0 else pos


def be_loss(teacher_embed: torch.Tensor, student_embed: torch.Tensor, labels: torch.Tensor,
            tau: float = 0.1, balance: bool = True) -> torch.Tensor:
    """L_be (batch-wise ID embedding identity): A_ij = cos(E_o(x_i), E_s(x_j)) on real seen samples."""
    return pairwise_bce(teacher_embed, student_embed, labels, tau, balance)


def teacher_ood_score(teacher_logits: torch.Tensor, tau: float = 1.0, kind: str = "msp") -> torch.Tensor:
    """s̃: maximum softmax probability (MSP) of φ(x), or the energy score.

    For ``energy`` we return τ·logsumexp(z/τ) (higher = more in-distribution, like MSP).
    """
    if kind == "msp":
        return torch.softmax(teacher_logits / tau, dim=1).max(dim=1).values  # (B,)
    if kind == "energy":
        return tau * torch.logsumexp(teacher_logits / tau, dim=1)  # (B,)
    raise ValueError(f"unknown OOD score {kind!r}: use 'msp' or 'energy'")


def normalize_ood_score(score: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Map an OOD score onto the unit range: ``lo`` → 0, ``hi`` → 1 (values outside stay outside).

    For the energy score, whose raw values are O(10) while ε is initialised for MSP's [0, 1]."""
    return (score - lo) / (hi - lo)


def od_loss(id_score: torch.Tensor, student_ood: torch.Tensor, labels: torch.Tensor,
            tau: float = 0.1, balance: bool = True) -> torch.Tensor:
    """L_od: B_ij = cos(h̃_i, ĥ_j) with h̃ = [c, 1 − c] from the teacher, ĥ = H(softmax ψ(x)) (B, 2).

    ``id_score`` is c = ε(s̃) (B,). ``labels`` decide which pairs are positive: class indices
    (METHODS.md) or, for the ``domain`` target option, 0 = seen / 1 = unseen.
    """
    h_tilde = torch.stack([id_score, 1 - id_score], dim=1)  # (B, 2)
    return pairwise_bce(h_tilde, student_ood, labels, tau, balance)
