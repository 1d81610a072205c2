"""Fitting the unified classifier's rows for user classes, and a bundle view that includes them.

A bundle's student ψ = C_s ∘ E_s scores features x as C_s(relu(E_s(x))). A user class gets a new row of C_s
(weight (E,), bias); nothing of the bundle changes:

* E_s is frozen, so embeddings of photos (cached features included) do not move;
* the built-in rows of C_s stay bit-for-bit, so their logits do too, and an empty registry is the bundle;
* the new rows are fitted by full-batch L-BFGS (our own, below: faster here than scipy's L-BFGS-B, see
  ``lbfgs``) on softmax cross-entropy at τ_s over
  generated features: G's features for every user class and a replay of every built-in class (seen and unseen, the same number
  per class, so the softmax keeps its balance), with the built-in rows held fixed. With those fixed the
  problem is convex in the new rows, and an L2 penalty makes its optimum unique: the fit does not
  depend on the starting point, only on the generated features.
* generated features are seeded per class from (bundle hash, the class's attribute vector), so the same
  registry always gives the same rows, and adding one class leaves the features of the others alone.

Refitting the whole head instead (Adam, 200 steps, same generated features) was measured on the demo
model with one unseen class held out and added back (benchmarks/add_class_holdout.py --compare-full-head,
fresh photos): recall of the added class 0.945 vs 0.875 here, but seen accuracy −5.9 points and the other
unseen classes −8.5 points, because the built-in rows get retrained on generated instead of real features;
here seen accuracy moves −0.3 points and the other unseen classes −0.2. At 200 classes it would also
be ~5× slower (benchmarks/add_class.py). The L2 weight is chosen on seen classes only (RefitConfig).
User classes are calibrated like unseen classes: γ is subtracted from seen classes only.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.networks import normalize_attributes


@dataclass
class RefitConfig:
    """How user rows are fitted.

    ``weight_decay`` (0.3) is chosen on SEEN classes only: each of the demo model's 38 seen classes in turn
    is held out of the bundle and added back from its attribute row, scored on fresh renders of seen
    classes (seed 7, 20 per class; no unseen photo is rendered or read) by the harmonic mean of its recall
    and the other seen classes' accuracy (benchmarks/add_class_holdout.py --select-weight-decay;
    benchmarks/results/add_class_weight_decay_seen.json): 0.001 0.925, 0.01 0.935, 0.03 0.940, 0.1 0.9421,
    0.3 0.9423, 1 0.941. 0.1 to 0.3 is a plateau (0.0002 apart, less than one photo) and the rule takes
    the best. Bias of this proxy: the student embedding E_s was trained on real photos of the held-out
    seen class, so adding it back is easier than adding a class never seen (recall 0.95-0.99 here vs ~0.86-0.9
    for held-out unseen classes); it ranks the weights by how the fit trades the new class against the
    others, not by absolute recall. The previous value, 0.1, had been picked on photos of unseen classes
    (benchmarks/results/add_class_holdout_sweep.json), which are the classes the method is evaluated on.
    """

    replay_budget: int = 4096  # generated features replaying the built-in classes, in total
    min_per_class: int = 16  # generated features per class, at least ...
    max_per_class: int = 100  # ... and at most (every class, built-in or user, gets the same number)
    max_iter: int = 100  # L-BFGS iterations
    weight_decay: float = 0.3  # L2 on the new rows (mean of their squared entries, times this); see above
    chunk: int = 4096  # features per generator pass (bounds peak memory)
    batch_entries: int = 1 << 24  # logits per loss/gradient batch (features × classes; 64 MB of float32)
    steal_warning: float = 0.25  # warn when user classes take this share of a built-in class's features

    def per_class(self, num_builtin: int) -> int:
        return int(min(self.max_per_class, max(self.min_per_class, self.replay_budget // max(1, num_builtin))))


class AppendedHead(nn.Module):
    """C_s with user rows appended: logits (B, C + n) = [base(e), e Wᵀ + b]; base columns are computed
    exactly as the bundle computes them."""

    def __init__(self, base: nn.Linear, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.base = base
        self.extra = nn.Linear(weight.shape[1], weight.shape[0]).to(base.weight.device)
        with torch.no_grad():
            self.extra.weight.copy_(weight)
            self.extra.bias.copy_(bias)
        self.in_features, self.out_features = base.in_features, base.out_features + weight.shape[0]

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.base(e), self.extra(e)], dim=1)  # (B, C + n)


def class_seed(bundle_sha256: str, values: np.ndarray) -> int:
    """Seed of one class's generated features: the bundle and the class's attribute vector (A,)."""
    digest = hashlib.sha256(bundle_sha256.encode() + np.ascontiguousarray(values, np.float32).tobytes())
    return int.from_bytes(digest.digest()[:8], "little") & (2**63 - 1)


Progress = Callable[[str, int, int], None]  # (phase, done, total)


@torch.inference_mode()
def generated_embeddings(model, values: np.ndarray, norm: str, bundle_sha256: str, per_class: int,
                         chunk: int = 4096, progress: Progress | None = None) -> torch.Tensor:
    """relu(E_s(G(z, a))) for ``per_class`` seeded draws of each class row of ``values`` (K, A) →
    (K·per_class, E), class-major (CE-GZSL: relu(E_s(E(G(z, a)))), ψ reading h). Noise is drawn per pass
    (``chunk`` features), so only the output grows with K."""
    g = model.generator
    dev = next(g.parameters()).device
    attrs = normalize_attributes(torch.from_numpy(np.ascontiguousarray(values, np.float32)), norm)  # (K, A)
    out = torch.empty(len(values) * per_class, model.student.head.in_features)  # (K·per_class, E)
    step = max(1, chunk // per_class)  # classes per pass
    for lo in range(0, len(values), step):
        rows = values[lo:lo + step]
        z = torch.cat([torch.randn(per_class, g.noise_dim, generator=torch.Generator().manual_seed(
            class_seed(bundle_sha256, row))) for row in rows])  # (pass, Z)
        cond = attrs[lo:lo + step].repeat_interleave(per_class, 0)  # (pass, A)
        v = model.student_features(g(z.to(dev), cond.to(dev)))  # what ψ reads: v, or CE-GZSL's h = E(v)
        out[lo * per_class:(lo + len(rows)) * per_class] = model.student.embedding(v).cpu()
        if progress:
            progress("generate", min(lo + step, len(values)), len(values))
    return out


def fit_user_rows(model, config, user_values: np.ndarray, bundle_sha256: str, rc: RefitConfig | None = None,
                  progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Head rows for the user classes ``user_values`` (n, A) of a bundle's ``model`` (a ZSLModel).

    Memory: the generated embeddings (M, E) and fixed logits (M, C), M = (C + n)·per_class, plus batches
    of ``rc.batch_entries`` logits; never an (M, C + n) matrix. ``progress(phase, done, total)`` is called
    as features are generated ("generate") and per solver iteration ("fit", total = rc.max_iter).

    Returns:
        weight (n, E) and bias (n,) float32, and diagnostics: settings, loss, iterations, and per user class
        the share of generated features of built-in classes it takes over (``taken``).
    """
    rc = rc or RefitConfig()
    base: nn.Linear = model.student.head
    builtin = model.class_attributes.detach().cpu().numpy()  # (C, A)
    c, n = len(builtin), len(user_values)
    k = rc.per_class(c)
    norm, tau = config.attribute_norm, config.head.tau_student
    e = generated_embeddings(model, np.concatenate([builtin, user_values]), norm, bundle_sha256, k, rc.chunk,
                             progress)
    y = torch.arange(c + n).repeat_interleave(k)  # (M,)
    m, dim = len(y), e.shape[1]
    batch = max(k, rc.batch_entries // (c + n))  # features per loss/gradient batch
    with torch.inference_mode():
        fixed = torch.cat([base(e[i:i + batch].to(base.weight.device)).cpu() for i in range(0, m, batch)])  # (M, C)

    w_old, b_old = base.weight.detach().cpu(), base.bias.detach().cpu()
    means = e[c * k:].view(n, k, -1).mean(1)  # (n, E) mean embedding of each user class
    w0 = F.normalize(means, dim=1) * w_old.norm(dim=1).median()  # a start in the right direction and scale
    theta0 = torch.cat([w0.flatten(), torch.full((n,), float(b_old.median()))])

    def loss_grad(theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean CE at τ_s over every generated feature + weight_decay · mean(W²), and its gradient."""
        weight, bias = theta[: n * dim].view(n, dim), theta[n * dim:]
        g_w, g_b, ce = torch.zeros(n, dim), torch.zeros(n), 0.0
        for lo in range(0, m, batch):
            eb, yb = e[lo:lo + batch], y[lo:lo + batch]
            logp = (torch.cat([fixed[lo:lo + batch], eb @ weight.T + bias], dim=1) / tau).log_softmax(1)  # (b, C + n)
            rows = torch.arange(len(yb))
            ce -= float(logp[rows, yb].sum(dtype=torch.float64))
            p = logp[:, c:].exp()  # (b, n) ∂CE/∂logit = softmax − onehot, on the new columns only
            own = yb >= c
            p[rows[own], yb[own] - c] -= 1
            g_w += p.T @ eb
            g_b += p.sum(0)
        loss = ce / m + rc.weight_decay * float(weight.pow(2).mean())
        g_w = g_w / (m * tau) + (2 * rc.weight_decay / weight.numel()) * weight  # (n, E)
        return loss, torch.cat([g_w.flatten(), g_b / (m * tau)])

    ticks = (lambda it: progress("fit", it, rc.max_iter)) if progress else None
    threads = torch.get_num_threads()
    if m * n * dim < 2**30:
        torch.set_num_threads(1)  # small ops: on few cores, waking the thread pool for each costs more than it saves
    try:
        with torch.no_grad():
            theta, loss, iters = lbfgs(loss_grad, theta0, rc.max_iter, on_iter=ticks)
    finally:
        torch.set_num_threads(threads)
    if progress:
        progress("fit", rc.max_iter, rc.max_iter)
    weight, bias = theta[: n * dim].view(n, dim), theta[n * dim:]
    with torch.no_grad():
        taken = _taken(fixed[: c * k], e[: c * k], weight, bias, config, tau, c, k, batch)
    info = {"method": "append-rows/lbfgs", "settings": asdict(rc), "per_class": k, "loss": round(loss, 6),
            "iterations": iters, "taken": taken}
    return weight.numpy().astype(np.float32), bias.numpy().astype(np.float32), info


def lbfgs(f, x: torch.Tensor, max_iter: int, history: int = 10, tol: float = 1e-7,
          on_iter=None) -> tuple[torch.Tensor, float, int]:
    """Minimise a smooth function ``f(x) -> (value, gradient)`` by L-BFGS with a backtracking (Armijo) line
    search; ``on_iter(iteration)`` after each step. Small and deterministic.

    Kept instead of a library's, because measured slower (CUB-sized random-weight bundle, CPU, same
    generated features, 3 alternating runs in one process, solver time only):
    scipy.optimize.minimize(method="L-BFGS-B", jac=True) took 1.45-1.56 s for 1 class vs 0.66-0.79 s here
    (after a first-call 3.6 s) and 55-58 s for 50 classes vs 8-17 s here, for the same loss (to 1e-5):
    scipy needs a few more evaluations (20 vs 17; 107 vs 93), in float64 with a copy each way, and each
    took ~4x longer in that process (not pinned down; numpy's BLAS threads competing with torch's on 2
    busy cores is a guess; the machine was shared, so figures are noisy). ``import scipy.optimize`` also
    costs 1.5-4 s per process, more than a whole 1-class add-class. torch.optim.LBFGS would pull in
    torch._dynamo (≈1.5 s per process)."""
    loss, g = f(x)
    pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1 / yᵀs)
    it = 0
    for it in range(1, max_iter + 1):
        q, alphas = g.clone(), []
        for s, y, rho in reversed(pairs):  # two-loop recursion: d = −H g
            a = rho * float(s @ q)
            q -= a * y
            alphas.append(a)
        if pairs:
            s, y, _ = pairs[-1]
            q *= float(s @ y) / float(y @ y)
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            q += (a - rho * float(y @ q)) * s
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: forget the curvature and go downhill
            pairs, d, slope = [], -g, -float(g @ g)
        step = 1.0 if pairs else min(1.0, 1.0 / max(float(g.abs().sum()), 1e-12))
        while True:
            x_new = x + step * d
            loss_new, g_new = f(x_new)
            if loss_new <= loss + 1e-4 * step * slope or step < 1e-10:
                break
            step /= 2
        s, y = x_new - x, g_new - g
        if float(y @ s) > 1e-12:
            pairs = (pairs + [(s, y, 1.0 / float(y @ s))])[-history:]
        done = abs(loss - loss_new) <= tol * max(1.0, abs(loss)) or float(g_new.abs().max()) <= tol
        x, loss, g = x_new, loss_new, g_new
        if on_iter:
            on_iter(it)
        if done:
            break
    return x, loss, it


def _taken(fixed, e, weight, bias, config, tau, c: int, k: int, batch: int) -> list[dict]:
    """Per user class: the largest share of one built-in class's generated features it now wins
    (calibrated scores), and which class that is. ``fixed`` (c·k, C), ``e`` (c·k, E): the built-in replay."""
    gamma = config.calibration
    n = weight.shape[0]
    seen = torch.tensor(list(config.seen) + [False] * n, dtype=torch.float32)
    winner = []
    for i in range(0, len(e), batch):
        logits = torch.cat([fixed[i:i + batch], e[i:i + batch] @ weight.T + bias], 1)  # (b, C + n)
        winner.append((torch.softmax(logits / tau, dim=1) - gamma * seen).argmax(1))
    winner = torch.cat(winner)  # (c·k,)
    out = []
    for j in range(n):
        share = (winner == c + j).float().view(c, k).mean(1)  # (C,)
        worst = int(share.argmax())
        out.append({"share": round(float(share[worst]), 4), "from": config.class_names[worst]})
    return out
