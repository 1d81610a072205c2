"""The training loop: teacher pre-training, then the generator (WGAN-GP) and the D3GZSL student together.

Each iteration: ``critic_steps`` critic updates (WGAN-GP) on random real batches; one generator update
with L_WGAN + β·CE(teacher) on generated seen features + λ·(L_cls + L_od) on generated unseen ones;
one update of the student ψ (E_s, C_s), the OOD head H and ε on real seen + generated unseen features.
The student's Adam sees its losses unscaled (Adam is invariant to λ); λ only weighs G's share.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..models import losses as L
from ..models.atomic import atomic_write_bytes
from ..models.networks import ZSLModel
from . import distributed
from .cegzsl import model_kwargs, with_generator
from .checkpoint import Resumable, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .task import Task, fit_feature_scaling



@dataclass
class FitResult:
    model: ZSLModel
    history: list[dict] = field(default_factory=list)
    backbone: dict | None = None  # the image backbone's weights when the run trained it (trainer/backbone_ft.py)


def fill_buffers(model, task: Task) -> None:
    """What a new model keeps besides weights: the task's class attributes and the feature scaling fitted on
    its training features (pooled (n, D) or regions (n, R, C))."""
    model.class_attributes.copy_(task.attributes)
    lo, scale = fit_feature_scaling(task.features[task.train_idx])
    model.feature_min.copy_(lo)
    model.feature_scale.copy_(scale)


def build_model(task: Task, cfg: TrainConfig) -> ZSLModel:
    model = ZSLModel(task.features.shape[1], task.attributes.shape[1], int(task.seen.sum()), len(task.seen),
                     noise_dim=task.attributes.shape[1], hidden_dim=cfg.hidden_dim,
                     critic_hidden_dim=cfg.critic_hidden_dim, embed_dim=cfg.embed_dim, **model_kwargs(cfg))
    fill_buffers(model, task)
    if cfg.g_init_ridge > 0:  # after the random initialisation; draws no random numbers
        init_generator_ridge(model, task, cfg.g_init_ridge)
    return model


@torch.no_grad()
def init_generator_ridge(model: ZSLModel, task: Task, lam: float) -> None:
    """Make G(z, a) = ReLU(m̄ + Wᵀ(a − ā)) at the start: W (A, D) the ridge map (λ ``lam``) from the seen classes'
    L2-normalised attributes to their mean scaled training features (m̄, ā: the means over seen classes).

    Wᵀ = Σ_j s_j v_j u_jᵀ (SVD) goes through unit pairs: h± = LeakyReLU(±u_j·(a − ā)) gives
    h₊ − h₋ = (1 + slope) u_j·(a − ā) exactly, so fc2's columns ±s_j v_j / (1 + slope) reproduce it. The pairs
    ignore the noise; the remaining units keep their random input weights, output weights 0. Keeps the
    (min(rank, H // 2 − 8)) largest components when the hidden layer is too narrow for all.
    """
    g = model.generator
    w, a_mu, m_mu = ridge_map(model.scale_features(task.features[task.train_idx]), task.labels[task.train_idx],
                              task.seen_classes, model.normalized_attributes(), lam)
    u, s, vt = torch.linalg.svd(w, full_matrices=False)  # (A, r), (r,), (r, D)
    r = int(min(int((s > s[0] * 1e-6).sum()), g.fc1.out_features // 2 - 8))
    if r < 1:
        raise ValueError(f"g_init_ridge needs a hidden layer of at least 18 units, not {g.fc1.out_features}")
    _write_map(g.fc1, g.fc2, g.slope, g.noise_dim, u[:, :r], s[:r], vt[:r], a_mu, m_mu)
    if hasattr(g, "close_fusion"):  # DKGZSL's KnowledgeGenerator: its KTN (the same 2-layer shape, no noise input)
        #   starts as the same map, and its fusion units add 0 until training opens them: G(z, a) is the map
        _write_map(g.ktn.fc1, g.ktn.fc2, g.ktn.slope, 0, u[:, :r], s[:r], vt[:r], a_mu, m_mu)
        g.close_fusion()


@torch.no_grad()
def ridge_map(x: torch.Tensor, y: torch.Tensor, seen: torch.Tensor, attributes: torch.Tensor,
              lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ridge map (λ ``lam``) from the seen classes' attributes to their mean training features, centred.

    x (n, D) scaled training features of classes y (n,), seen (S,) the seen class indices, attributes (C, A) the
    L2-normalised class attributes. Returns (W (A, D), ā (A,), m̄ (D,)) in float64 on the CPU; a class's
    predicted mean is m̄ + Wᵀ(a − ā).
    """
    x, y, seen = x.detach().cpu().double(), y.cpu(), seen.cpu()
    pos = torch.full((len(attributes),), -1, dtype=torch.long)
    pos[seen] = torch.arange(len(seen))
    sums = torch.zeros(len(seen), x.shape[1], dtype=torch.float64).index_add_(0, pos[y], x)
    means = sums / torch.bincount(pos[y], minlength=len(seen)).clamp_min(1)[:, None].double()  # (S, D)
    a = attributes.detach().cpu().double()[seen]  # (S, A)
    a_mu, m_mu = a.mean(0), means.mean(0)
    ac = a - a_mu
    w = torch.linalg.solve(ac.T @ ac + lam * torch.eye(ac.shape[1], dtype=torch.float64), ac.T @ (means - m_mu))
    return w, a_mu, m_mu


@torch.no_grad()
def _write_map(fc1, fc2, slope: float, skip: int, u, s, vt, a_mu, m_mu) -> None:
    """Write x = m̄ + Σ_j s_j v_j u_jᵀ(a − ā) into Linear → LeakyReLU(slope) → Linear through unit pairs; fc1's
    first ``skip`` input columns (the noise) are ignored by the pairs. u (A, r), s (r,), vt (r, D)."""
    r, k = len(s), 1.0 + slope
    fc1.weight[:2 * r] = 0.0
    fc1.weight[:r, skip:] = u.T.float()
    fc1.weight[r:2 * r, skip:] = -u.T.float()
    fc1.bias[:r] = -(u.T @ a_mu).float()
    fc1.bias[r:2 * r] = (u.T @ a_mu).float()
    fc2.weight.zero_()
    fc2.weight[:, :r] = (vt.T * s / k).float()
    fc2.weight[:, r:2 * r] = -(vt.T * s / k).float()
    fc2.bias.copy_(m_mu.float())


class _WeightsWithoutGrad:
    """Within the block the parameters of ``modules`` (None skipped) that require gradients do not: gradients
    still flow through the modules to their inputs. For networks whose weight gradients a step would compute
    only for their optimiser's next zero_grad to drop (the same values, less work)."""

    def __init__(self, *modules):
        self.params = [p for mod in modules if mod is not None for p in mod.parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc) -> None:
        for p in self.params:
            p.requires_grad_(True)


class _Trainer(Resumable):
    """D3GZSL's trainer (method ``d3gzsl``); other methods subclass it (``trainer/methods.py``) through the
    hooks ``build``, ``train_teacher``, ``begin_epoch``, ``critic_extra``, ``generator_extra`` and
    ``student_step``; the generator choice (CE-GZSL) is a mixin on those hooks (``trainer/cegzsl.py``)."""

    optimizer_names = ("opt_g", "opt_d", "opt_t", "opt_s")  # what a checkpoint holds besides the model
    feature_kinds = ("pooled",)  # the FeatureSet kinds it trains on
    trains_backbone = True  # real photos' features reach its losses through real_features (trainer/backbone_ft.py)

    @classmethod
    def feature_kind(cls, cfg: TrainConfig) -> str:
        """The backbone features this method trains on from photos: pooled (B, D) or regions (B, R, C)."""
        return "pooled"

    @classmethod
    def notes(cls, cfg: TrainConfig, feature_kind: str) -> list[str]:
        """What the user should know about this configuration on these features (said before training)."""
        return []

    def build(self, task: Task, cfg: TrainConfig) -> ZSLModel:
        return build_model(task, cfg)

    def initial_features(self) -> torch.Tensor:
        """The scaled training features (n, D)."""
        return self.model.scale_features(self.task.features[self.task.train_idx].to(self.device))

    def __init__(self, task: Task, cfg: TrainConfig, device: str = "cpu"):
        self.task, self.cfg, self.device = task, cfg, torch.device(device)
        self.rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # parameter initialisation (on the CPU, so every device starts alike)
        self.model = m = self.build(task, cfg).to(self.device)
        if cfg.init_from:  # fine-tuning: the bundle's weights over the fresh ones (no random draws)
            from .finetune import init_model

            self.init_report = init_model(m, cfg, task)
        self.opt_g = torch.optim.Adam(m.generator.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(m.critic.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_t = torch.optim.Adam(m.teacher.parameters(), lr=cfg.teacher_lr)
        student = [*m.student.parameters(), *m.ood_head.parameters(), *m.epsilon.parameters()]
        self.opt_s = torch.optim.Adam(student, lr=cfg.student_lr)
        dev = self.device
        self.x = self.initial_features()  # (n, D) the real training features G, the critic and ψ see
        self.y = task.labels[task.train_idx].to(dev)  # (n,)
        self.attr = m.normalized_attributes()  # (C, A)
        self.seen = task.seen.to(dev)
        self.seen_classes = task.seen_classes.to(dev)
        self.unseen_classes = task.unseen_classes.to(dev)
        self.seen_pos = torch.full((len(task.seen),), -1, dtype=torch.long, device=dev)  # class -> teacher output
        self.seen_pos[self.seen_classes] = torch.arange(len(self.seen_classes))
        self.teacher_done = False
        self.ood_norm: tuple[float, float] | None = None  # (lo, hi) for ood_score=energy, see prepare_ood_norm
        self.od_stats: dict[str, float] = {}
        self.epoch = 0
        self.history: list[dict] = []

    # ---- teacher -----------------------------------------------------------------------------
    def train_teacher(self) -> float:
        """Pre-train φ = C_o ∘ E_o on real seen features with CE at τ_o, then freeze it."""
        t, cfg = self.model.teacher, self.cfg
        y = self.seen_pos[self.y]
        loss = torch.tensor(0.0)
        for _ in range(cfg.teacher_epochs):
            for idx in torch.randperm(len(self.x), generator=self.rng, device=self.device).split(cfg.batch_size):
                _, logits = t(self.real_features(idx))
                loss = F.cross_entropy(logits / cfg.tau_teacher, y[idx])
                self.opt_t.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_t.step()
        self.teacher_done = True
        return float(loss.detach())

    def prepare_ood_norm(self) -> None:
        """For ``ood_score=energy`` with ``energy_norm=quantile``: the frozen teacher's energies on the real
        seen training features, 1st..99th percentile mapped to [0, 1] (MSP's range, which ε's initial
        σ(10 (s − 0.5)) is made for). Raw energies are O(10) and drive ε to 1 for every sample.
        Deterministic (no random numbers), so a resumed run recomputes the same values."""
        cfg = self.cfg
        if not (cfg.use_od and cfg.ood_score == "energy" and cfg.energy_norm == "quantile"):
            return
        with torch.no_grad():
            _, z = self.model.teacher(self.x)
            s = L.teacher_ood_score(z, cfg.tau_teacher, "energy")
            lo, hi = torch.quantile(s.double().cpu(), torch.tensor([0.01, 0.99], dtype=torch.float64)).tolist()
        self.ood_norm = (lo, hi if hi > lo else lo + 1.0)

    # ---- one epoch ---------------------------------------------------------------------------
    def student_losses(self, x_real, y_real, x_gen, y_gen, with_id: bool = True) -> dict[str, torch.Tensor]:
        """D3GZSL losses on real seen (x_real) + generated unseen (x_gen) features.

        ``with_id=False`` skips L_kl/L_be (they see real features only, so G gets nothing from them).
        """
        m, cfg = self.model, self.cfg
        use_id = cfg.use_id and with_id and len(x_real) > 0
        x = torch.cat([x_real, x_gen])  # (B + G, D)
        y = torch.cat([y_real, y_gen])
        e_s, z_s = m.student(m.student_features(x))  # (B+G, E), (B+G, C); CE-GZSL: ψ reads h = E(x)
        out = {"cls": L.cls_loss(z_s, y, cfg.tau_student)}
        n = len(x_real)
        if use_id or cfg.use_od:
            with torch.no_grad():
                e_o, z_o = m.teacher(x if cfg.use_od else x_real)
        if use_id:
            out["kl"] = L.kl_loss(z_o[:n], z_s[:n, self.seen_classes], cfg.tau_kl, cfg.kl_normalize)
            out["be"] = L.be_loss(e_o[:n], e_s[:n], y_real, cfg.tau_be, cfg.pair_balance)
        if cfg.use_od:
            s_tilde = L.teacher_ood_score(z_o, cfg.tau_teacher, cfg.ood_score)  # (B+G,)
            if self.ood_norm is not None:
                s_tilde = L.normalize_ood_score(s_tilde, *self.ood_norm)
            c = m.epsilon(s_tilde)
            with torch.no_grad():  # is ε saturated? (σ' < 0.01 outside [0.01, 0.99])
                self.od_stats = {"eps_c": c.mean().item(), "eps_sat": ((c < 0.01) | (c > 0.99)).float().mean().item()}
            h_hat = m.ood_head(torch.softmax(z_s / cfg.tau_student, dim=1))  # (B+G, 2)
            pairs = y if cfg.od_target == "class" else (~self.seen[y]).long()
            out["od"] = L.od_loss(c, h_hat, pairs, cfg.tau_od, cfg.pair_balance)
        return out

    def _gen_unseen(self) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.unseen_classes.repeat_interleave(self.cfg.gen_per_unseen)  # (G,)
        return y, self.attr[y]

    def _batch(self) -> torch.Tensor:
        return torch.randint(len(self.x), (min(self.cfg.batch_size, len(self.x)),), generator=self.rng,
                             device=self.device)

    def precision(self):
        """The steps' autocast region: bf16 with ``mlp_precision="bf16"``, a no-op otherwise (fp32). One region
        per step, so that the bf16 copies of the weights it caches die with the step's optimiser update."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.mlp_precision == "bf16")

    def critic_step(self) -> dict[str, float]:
        m, cfg, rng = self.model, self.cfg, self.rng
        idx = self._batch()
        x_real, a_real = self.x[idx], self.attr[self.y[idx]]  # (B, D), (B, A)
        with self.precision():
            with torch.no_grad():
                fake = m.generator.sample(a_real, rng)
            d_loss = m.critic(fake, a_real).mean() - m.critic(x_real, a_real).mean()
            gp = L.gradient_penalty(m.critic, x_real, fake, a_real, rng)
            self.opt_d.zero_grad(set_to_none=True)
            (d_loss + cfg.gp_weight * gp).backward()
            self.opt_d.step()
            return {"d": d_loss.item(), "gp": gp.item(), **self.critic_extra(idx)}

    def student_step(self, idx: torch.Tensor) -> dict[str, float]:
        """ψ, H, ε on the real seen batch ``idx`` + freshly generated unseen features."""
        with self.precision():
            y_gen, a_gen = self._gen_unseen()
            with torch.no_grad():
                x_gen = self.model.generator.sample(a_gen, self.rng)
            parts = self.student_losses(self.real_features(idx), self.y[idx], x_gen, y_gen)
            self.opt_s.zero_grad(set_to_none=True)
            sum(parts.values()).backward()
            self.opt_s.step()
            return {**{k: v.item() for k, v in parts.items()}, **self.od_stats}

    def grow_lr(self) -> None:
        """Optional lr schedule of the released D3GZSL code: × gd_lr_growth every gd_lr_growth_every epochs."""
        cfg = self.cfg
        if cfg.gd_lr_growth != 1.0 and self.epoch > 0 and self.epoch % cfg.gd_lr_growth_every == 0:
            for opt in (self.opt_g, self.opt_d):
                for group in opt.param_groups:
                    group["lr"] *= cfg.gd_lr_growth

    def run_epoch(self) -> dict:
        """One epoch = ⌈n / B⌉ generator iterations, each after ``critic_steps`` critic updates on random
        batches (f-CLSWGAN's schedule), followed by one student update on that iteration's batch."""
        m, cfg = self.model, self.cfg
        self.grow_lr()
        sums: dict[str, float] = {}
        iters = math.ceil(len(self.x) / cfg.batch_size)
        for p in m.teacher.parameters():
            p.requires_grad_(False)
        self.begin_epoch()
        for _ in range(iters):
            logs: dict[str, float] = {}
            for _ in range(cfg.critic_steps):
                for k, v in self.critic_step().items():
                    logs[k] = logs.get(k, 0.0) + v / cfg.critic_steps
            idx = self._batch()
            logs.update(self.generator_step(self.y[idx], self.attr[self.y[idx]], self.x[idx]))
            logs.update(self.student_step(idx))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
        for p in m.teacher.parameters():
            p.requires_grad_(True)
        return {k: v / iters for k, v in sums.items()}

    def begin_epoch(self) -> None:
        """Hook before an epoch's iterations (D3GZSL: nothing)."""

    def real_features(self, idx: torch.Tensor) -> torch.Tensor:
        """Hook: the real features (B, D) of training photos ``idx`` that the teacher warm-up and the student
        step train on: the stored ones; live from a backbone being fine-tuned (trainer/backbone_ft.py)."""
        return self.x[idx]

    def critic_extra(self, idx: torch.Tensor) -> dict[str, float]:
        """Hook: further updates on the critic step's real batch ``idx``, after it; their logs (D3GZSL: none)."""
        return {}

    def generator_extra(self, y_real, a_real, x_real, fake) -> dict[str, torch.Tensor]:
        """Hook: further weighted terms of G's objective, by name, given the step's fake seen features ``fake``
        (B, D) of classes ``y_real`` (D3GZSL: none)."""
        return {}

    def _class_mean_loss(self, fake: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """MSE between the per-class means of generated features ``fake`` (B, D) of classes ``y`` (B,) and
        ``targets`` (C, D) rows of those classes; by default the real class means of the current training
        features (no random numbers)."""
        if targets is None:
            targets = self._of_x("_real_means", self._mean_features)
        classes, inv = torch.unique(y, return_inverse=True)
        sums = torch.zeros(len(classes), fake.shape[1], device=fake.device, dtype=fake.dtype).index_add(0, inv, fake)
        means = sums / torch.bincount(inv, minlength=len(classes))[:, None].to(fake.dtype)  # (K, D)
        return F.mse_loss(means, targets[classes])

    def _of_x(self, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()`` cached for the current real features ``self.x``: recomputed when x is replaced (DKGZSL's
        per-epoch snapshot of v, a fine-tuned backbone's), so an uninterrupted and a resumed run, whose x after
        ``restore`` is that epoch's, see the same values."""
        cached = getattr(self, name, None)
        if cached is None or cached[0] is not self.x:
            cached = (self.x, compute())
            setattr(self, name, cached)
        return cached[1]

    def _mean_features(self) -> torch.Tensor:
        """The real class means (C, D) of the current training features."""
        n = int(self.y.max()) + 1
        sums = torch.zeros(n, self.x.shape[1], device=self.x.device).index_add_(0, self.y, self.x)
        return sums / torch.bincount(self.y, minlength=n).clamp_min(1)[:, None].to(sums.dtype)

    def _ridge_means(self) -> torch.Tensor:
        """ReLU(m̄ + Wᵀ(a − ā)) (C, D) for every class: the ridge map of G's start (g_init_ridge's λ), fitted on
        the seen classes' current training features; the anchor of G's unseen class means (g_unseen_anchor)."""
        def compute() -> torch.Tensor:
            w, a_mu, m_mu = ridge_map(self.x, self.y, self.seen_classes, self.attr, self.cfg.g_init_ridge)
            a = self.attr.detach().cpu().double()  # (C, A)
            return torch.relu(m_mu + (a - a_mu) @ w).float().to(self.x.device)  # (C, D)

        return self._of_x("_anchor", compute)

    def generator_step(self, y_real, a_real, x_real=None) -> dict[str, float]:
        """L_WGAN + β·CE(teacher) on generated seen features, + λ·(L_cls + L_od) on generated unseen ones
        (with ``g_od_real``: in a batch that also holds the iteration's real seen features ``x_real``).

        Only G steps: the critic's, ψ's (H, ε) and CE-GZSL's E's weights pass G's gradients through but get
        none of their own (their next zero_grad would drop them; the critic's alone cost one product the size
        of its first layer)."""
        m = self.model
        with _WeightsWithoutGrad(m.critic, m.student, m.ood_head, m.epsilon, getattr(m, "contrastive", None)), \
                self.precision():
            return self._generator_step(y_real, a_real, x_real)

    def _generator_step(self, y_real, a_real, x_real=None) -> dict[str, float]:
        m, cfg, rng = self.model, self.cfg, self.rng
        a_in = a_real
        if cfg.g_attr_noise > 0:  # drawn only when on: the default run's random stream is unchanged
            a_in = a_real + cfg.g_attr_noise * torch.randn(a_real.shape, generator=rng, device=a_real.device,
                                                           dtype=a_real.dtype)
        fake = m.generator.sample(a_in, rng)  # (B, D)
        wgan = -m.critic(fake, a_real).mean()
        _, z_o = m.teacher(fake)
        cls_t = F.cross_entropy(z_o / cfg.tau_teacher, self.seen_pos[y_real])
        loss = wgan + cfg.cls_weight * cls_t
        if len(self.unseen_classes):
            y_gen, a_gen = self._gen_unseen()
            x_gen = m.generator.sample(a_gen, rng)
            real = cfg.g_od_real and x_real is not None
            parts = self.student_losses(x_real if real else fake[:0], y_real if real else y_real[:0], x_gen, y_gen,
                                        with_id=False)
            d3 = parts["cls"] + parts.get("od", 0.0)
            loss = loss + cfg.d3_weight * d3
            if cfg.g_unseen_anchor > 0:  # unseen classes have no real features: hold their means at the ridge map
                loss = loss + cfg.g_unseen_anchor * self._class_mean_loss(x_gen, y_gen, self._ridge_means())
        if cfg.g_mean_weight > 0:
            loss = loss + cfg.g_mean_weight * self._class_mean_loss(fake, y_real)
        if cfg.g_weight_decay > 0:
            loss = loss + cfg.g_weight_decay * sum((p ** 2).sum() for name, p in m.generator.named_parameters()
                                                   if name.endswith("weight"))
        extra = self.generator_extra(y_real, a_real, x_real, fake)
        if extra:
            loss = loss + sum(extra.values())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.opt_s.zero_grad(set_to_none=True)  # G's step must not leak into the student's
        return {"g": wgan.item(), "g_cls": cls_t.item(), **{k: v.item() for k, v in extra.items()}}


def fit(task: Task, cfg: TrainConfig, epochs: int, run_dir: Path | None = None, resume: bool = False,
        evaluate: Callable[[ZSLModel], dict] | None = None, on_epoch: Callable[[dict], None] | None = None,
        progress: Callable[[int, int], None] | None = None, device: str = "cpu", photos=None) -> FitResult:
    """Train for ``epochs`` epochs; checkpoint and log every epoch into ``run_dir`` when given.

    ``evaluate(model) -> metrics`` runs after each epoch (validation only; never test images).
    With ``resume`` the run continues from ``run_dir/checkpoint.pt`` to the identical result.
    ``photos`` (a ``backbone_ft.PhotoSet``) with ``cfg.finetune_backbone``: the photos and backbone to train.
    The returned model is on the CPU.
    """
    from .methods import trainer_class

    if cfg.finetune_backbone:  # the method's trainer with the backbone trained inside it
        from .backbone_ft import with_backbone

        tr = with_backbone(with_generator(trainer_class(cfg.method), cfg), cfg.method)(task, cfg, device,
                                                                                      photos=photos)
    else:
        tr = with_generator(trainer_class(cfg.method), cfg)(task, cfg, device)
    ddp = distributed.attach(tr)  # under torchrun: sharded networks, averaged gradients (None otherwise)
    main = distributed.is_main()  # rank 0 alone logs and writes (True outside torchrun)
    if not main:
        on_epoch = progress = None
    ckpt = log = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
        ckpt, log = run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"
        if ddp is not None:  # rank 0 reads the checkpoint, every rank restores it
            state = distributed.load_state(ckpt, resume)
            if state is not None:
                tr.restore(state, ckpt)
        elif resume and ckpt.exists():
            tr.restore(load_checkpoint(ckpt), ckpt)
        if not main:
            ckpt = log = None
        else:
            write_log(log, tr.history)  # drop lines of epochs the checkpoint never saw
    if not tr.teacher_done:
        loss = tr.train_teacher()
        _record(tr, {"epoch": 0, "teacher_loss": loss}, ckpt, log, on_epoch)
    tr.prepare_ood_norm()
    while tr.epoch < epochs:
        tr.model.train()
        row = {"epoch": tr.epoch + 1, **tr.run_epoch()}
        if any(not math.isfinite(v) for v in row.values()):
            raise FloatingPointError(f"training diverged at epoch {row['epoch']}: {row}")
        if evaluate is not None:
            tr.model.eval()
            with torch.no_grad(), ddp.replicated() if ddp else contextlib.nullcontext():
                row.update(evaluate(tr.model))
        tr.epoch += 1
        distributed.check_identical(tr.model, f"epoch {tr.epoch}")
        if cfg.finetune_backbone:  # the backbone too: its gradients are all-reduced like the head's
            distributed.check_identical(tr.backbone.model, f"epoch {tr.epoch} (backbone)")
        _record(tr, row, ckpt, log, on_epoch)
        if progress:
            progress(tr.epoch, epochs)
    if ddp is not None:
        ddp.detach()
    tr.model.eval()
    return FitResult(model=tr.model.cpu(), history=tr.history,
                     backbone=tr.backbone_state() if cfg.finetune_backbone else None)


def _record(tr: _Trainer, row: dict, ckpt, log, on_epoch) -> None:
    tr.history.append(row)
    if ckpt is not None:
        save_checkpoint(tr.state(), ckpt)  # the checkpoint is the truth; the log mirrors its history
        write_log(log, tr.history)
    if on_epoch:
        on_epoch(row)


def write_log(log: Path, history: list[dict]) -> None:
    """``metrics.jsonl``: one JSON object per line, one line per finished epoch (0 = the teacher).

    Rewritten whole and atomically after every epoch (a few hundred short lines at most), so a reader
    or a crash never sees a torn line; an append-only log would need repairing on resume instead. The
    checkpoint is written first: after a crash between the two the log is one epoch behind, and
    ``--resume`` rewrites it from the checkpoint's history (dropping lines of epochs it never saw).
    """
    atomic_write_bytes(log, "".join(json.dumps(r) + "\n" for r in history).encode("utf-8"))
