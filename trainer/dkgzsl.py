"""DKGZSL's training (method ``dkgzsl``): one stage, SOVR + KTN/MFU + G/D + the D3GZSL unified classifier.

On top of D3GZSL's loop (``trainer/loop.py``):

* warm-up (the teacher phase): SOVR and the teacher φ train together on real seen photos, with the
  teacher's cross-entropy on v plus ``ara_weight`` × the seen-class cross-entropy on ARA's attribute scores
  (compatibility aᵀ·scores, as MSDN trains its attention); then φ is frozen, as in D3GZSL;
* each epoch starts from a snapshot of v for every training photo (SOVR without gradients), which the
  critic and G see as the real features; SOVR keeps training during the epoch (Adam at ``sovr_lr``)
  through the student's losses on live v of the real batch (L_cls, L_kl, L_be, L_od) and the ARA loss, so
  refinement and generation are trained together and the snapshot is at most one epoch behind;
* G's objective gains ``ktn_weight`` × KTN's reconstruction error: the knowledge vector of the last level
  against the real refined feature of the same photo (MSE); the meta-fusion units inject both levels.

On pooled features there are no regions: SOVR is off and DKGZSL is KTN/MFU + D3GZSL (said in ``notes``
and written into the bundle's options).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.methods.dkgzsl import DKGZSLModel, Options
from ..models.sovr import attribute_logits
from .cegzsl import model_kwargs
from .config import TrainConfig
from .loop import _Trainer, fill_buffers, init_generator_ridge
from .task import Task


def options(cfg: TrainConfig) -> Options:
    return Options(fde=cfg.fde, ara=cfg.ara, ktn=cfg.ktn, fde_mask=cfg.fde_mask, fde_topk=cfg.fde_topk,
                   attn_dim=cfg.attn_dim)


class DKGZSLTrainer(_Trainer):
    feature_kinds = ("pooled", "regions")

    @classmethod
    def feature_kind(cls, cfg: TrainConfig) -> str:
        return "regions" if (cfg.fde or cfg.ara) else "pooled"

    @classmethod
    def notes(cls, cfg: TrainConfig, feature_kind: str) -> list[str]:
        if feature_kind == "regions" or not (cfg.fde or cfg.ara):
            return []
        return ["DKGZSL on pooled features: there are no regions to refine, so SOVR (FDE, ARA) is off and "
                "KTN/MFU guide the generator on the pooled feature (the bundle records fde=false, ara=false). "
                "Train with --images for region features."]

    def build(self, task: Task, cfg: TrainConfig) -> DKGZSLModel:
        kind = "regions" if task.features.ndim == 3 else "pooled"
        a = task.attributes.shape[1]
        model = DKGZSLModel(task.features.shape[-1], a, int(task.seen.sum()), len(task.seen), noise_dim=a,
                            hidden_dim=cfg.hidden_dim, critic_hidden_dim=cfg.critic_hidden_dim,
                            embed_dim=cfg.embed_dim, options=options(cfg), feature_kind=kind, **model_kwargs(cfg))
        fill_buffers(model, task)
        if cfg.g_init_ridge > 0:  # the map is fitted to real features; on regions v does not exist yet
            if kind == "regions":
                raise ValueError("g_init_ridge needs pooled features: on region features G generates SOVR's v, "
                                 "which is not known before training")
            init_generator_ridge(model, task, cfg.g_init_ridge)
        return model

    def __init__(self, task: Task, cfg: TrainConfig, device: str = "cpu"):
        self.chunk = 256  # photos per SOVR pass when taking the snapshot of v
        super().__init__(task, cfg, device)
        m = self.model
        sovr_params = list(m.sovr.parameters()) if m.sovr is not None else []
        self.opt_v = torch.optim.Adam(sovr_params, lr=cfg.teacher_lr) if sovr_params else None
        if self.opt_v is not None:
            self.optimizer_names = (*self.optimizer_names, "opt_v")

    @property
    def regions(self) -> bool:
        return self.model.sovr is not None

    def initial_features(self) -> torch.Tensor:
        """Scaled pooled features (n, D); on regions, the snapshot of v (n, D) for the raw training regions
        ``self.raw`` (n, R, C), kept as stored (float16) and scaled batch by batch."""
        if not self.regions:
            return super().initial_features()
        self.raw = self.task.features[self.task.train_idx].to(self.device)
        return self.snapshot()

    # ---- v -----------------------------------------------------------------------------------
    def refine(self, idx: torch.Tensor):
        """SOVR's output for training photos ``idx`` (with gradients into SOVR)."""
        m = self.model
        return m.sovr(m.scale_features(self.raw_regions(idx)))

    def raw_regions(self, idx: torch.Tensor) -> torch.Tensor:
        """Hook: raw region maps (B, R, C) float32 of training photos ``idx``: the stored ones; live from a
        backbone being fine-tuned (trainer/backbone_ft.py)."""
        return self.raw[idx].float()

    def snapshot(self) -> torch.Tensor:
        """v (n, D) for every training photo, without gradients."""
        self.stale = False  # until SOVR's next step
        with torch.no_grad():
            return torch.cat([self.refine(torch.arange(i, min(i + self.chunk, len(self.raw)), device=self.device)).v
                              for i in range(0, len(self.raw), self.chunk)])

    def begin_epoch(self) -> None:
        """Refresh the snapshot of v that the critic and G see this epoch (when SOVR stepped since the last)."""
        if self.regions and self.stale:
            self.x = self.snapshot()

    def restore(self, st: dict, path) -> None:
        super().restore(st, path)
        if self.regions:  # v of the restored SOVR (prepare_ood_norm reads it before the first epoch)
            self.x = self.snapshot()

    def ara_loss(self, out, y: torch.Tensor) -> torch.Tensor | None:
        """Seen-class CE on ARA's compatibility scores aᵀ·scores (None without ARA)."""
        if out.attribute_scores is None:
            return None
        logits = attribute_logits(out.attribute_scores, self.attr[self.seen_classes])  # (B, S)
        return F.cross_entropy(logits, self.seen_pos[y])

    def _sovr_zero_grad(self) -> None:
        if self.opt_v is not None:  # None: SOVR without parameters (FDE and ARA both off: the mean region)
            self.opt_v.zero_grad(set_to_none=True)

    def _sovr_step(self) -> None:
        if self.opt_v is not None:
            self.opt_v.step()
            self.stale = True

    # ---- warm-up -----------------------------------------------------------------------------
    def train_teacher(self) -> float:
        if not self.regions:
            return super().train_teacher()
        t, cfg = self.model.teacher, self.cfg
        y = self.seen_pos[self.y]
        loss = torch.tensor(0.0)
        for _ in range(cfg.teacher_epochs):
            for idx in torch.randperm(len(self.raw), generator=self.rng, device=self.device).split(cfg.batch_size):
                out = self.refine(idx)
                _, logits = t(out.v)
                loss = F.cross_entropy(logits / cfg.tau_teacher, y[idx])
                ara = self.ara_loss(out, self.y[idx])
                if ara is not None:
                    loss = loss + cfg.ara_weight * ara
                self.opt_t.zero_grad(set_to_none=True)
                self._sovr_zero_grad()
                loss.backward()
                self.opt_t.step()
                self._sovr_step()
        for group in self.opt_v.param_groups if self.opt_v is not None else ():
            group["lr"] = cfg.sovr_lr
        self.teacher_done = True
        self.begin_epoch()  # v after the warm-up: what prepare_ood_norm and the first epoch see
        return float(loss.detach())

    # ---- one epoch ---------------------------------------------------------------------------
    def generator_extra(self, y_real, a_real, x_real, fake) -> dict[str, torch.Tensor]:
        if not self.model.options.ktn or x_real is None:
            return super().generator_extra(y_real, a_real, x_real, fake)
        _, k2 = self.model.generator.knowledge(a_real)  # (B, D)
        return {"ktn": self.cfg.ktn_weight * F.mse_loss(k2, x_real.detach())}

    def student_step(self, idx: torch.Tensor) -> dict[str, float]:
        if not self.regions:
            return super().student_step(idx)
        with self.precision():
            y_gen, a_gen = self._gen_unseen()
            with torch.no_grad():
                x_gen = self.model.generator.sample(a_gen, self.rng)
            out = self.refine(idx)
            parts = self.student_losses(out.v, self.y[idx], x_gen, y_gen)
            ara = self.ara_loss(out, self.y[idx])
            if ara is not None:
                parts["ara"] = self.cfg.ara_weight * ara
            self.opt_s.zero_grad(set_to_none=True)
            self._sovr_zero_grad()
            sum(parts.values()).backward()
            self.opt_s.step()
            self._sovr_step()
            return {**{k: v.item() for k, v in parts.items()}, **self.od_stats}
