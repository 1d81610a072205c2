"""MSDN's and MSDN++'s training (methods ``msdn``, ``msdnpp``): an embedding method, no generator.

Each step, on a batch of real seen region features (``batch_size``; the paper uses 50):

* both sub-nets' compatibility logits over the SEEN classes get the cross-entropy against the label;
* semantic distillation: the two sub-nets' predictions over ALL classes teach each other through the
  Jensen–Shannon divergence (symmetric; weight ``distill_weight``, 0.001 as the paper). The authors' code
  adds a weighted L1 between the logits: left out;
* optionally (``msdn_cal_weight`` > 0, off by default) the authors' code's self-calibration term,
  −log of the batch's mean probability mass on the unseen classes (their attribute vectors are known);
* MSDN++ (``MSDNPPTrainer``) adds causal attention: each sub-net's logits under counterfactual attention
  (``counterfactual``: uniform, or random from the run's generator) are subtracted from its logits under the
  learned attention, and that effect gets the seen-class cross-entropy too (weight ``causal_weight``).

RMSprop (lr ``lr``, weight decay ``msdn_weight_decay``, momentum ``msdn_momentum``: 1e-4, 1e-4, 0.9 as the
paper) over every parameter. There is no teacher: ``train_teacher`` only marks the (empty) warm-up done, so
``fit`` records an epoch-0 row with loss 0. Epoch selection and γ come from ``trainer/train.py`` as for the
other methods; ``state``/``restore`` give exact ``--resume`` (model, optimiser, random generator, history).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from ..models.methods.msdn import MSDNModel, Options
from ..models.methods.msdnpp import MSDNPPModel
from .config import TrainConfig
from .checkpoint import Resumable
from .loop import fill_buffers
from .task import Task


def options(cfg: TrainConfig) -> Options:
    return Options(attr_embed_dim=cfg.attr_embed_dim, msdn_fuse=cfg.msdn_fuse)


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence between softmax(logits_a) and softmax(logits_b) (B, K), batch mean.

    Symmetric: JS = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2; both sides get gradients (mutual teaching)."""
    logp, logq = logits_a.log_softmax(1), logits_b.log_softmax(1)  # (B, K)
    logm = torch.logsumexp(torch.stack([logp, logq]), dim=0) - math.log(2.0)  # (B, K) log of the mixture
    kl_pm = (logp.exp() * (logp - logm)).sum(1)
    kl_qm = (logq.exp() * (logq - logm)).sum(1)
    return 0.5 * (kl_pm + kl_qm).mean()


class MSDNTrainer(Resumable):
    """What ``trainer.loop.fit`` drives, for MSDN: ``train_teacher``/``teacher_done``, ``prepare_ood_norm``,
    ``run_epoch``, ``state``/``restore``, ``epoch``, ``history``, ``model``."""

    model_class = MSDNModel
    causal = False  # MSDN++: the causal-attention term
    optimizer_names = ("opt",)
    feature_kinds = ("regions",)
    recommended = {"batch_size": 50}  # the paper's; the CLI's default for this method
    reads_attr_embeddings = True  # cfg.attr_embeddings starts the attribute embeddings
    shard_model = True  # under torchrun the model's forward runs on each rank's rows (trainer/distributed.py)

    @classmethod
    def feature_kind(cls, cfg: TrainConfig) -> str:
        return "regions"

    @classmethod
    def notes(cls, cfg: TrainConfig, feature_kind: str) -> list[str]:
        return []

    def __init__(self, task: Task, cfg: TrainConfig, device: str = "cpu"):
        if task.features.ndim != 3:
            raise ValueError(f"{cfg.method} trains on region features (N, R, C), got shape "
                             f"{tuple(task.features.shape)}")
        self.task, self.cfg, self.device = task, cfg, torch.device(device)
        self.rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # parameter initialisation (on the CPU, so every device starts alike)
        opts, vectors = options(cfg), None
        if cfg.attr_embeddings:  # vectors from a file start the attribute embeddings; d is their width
            from .attr_embeddings import read_attribute_embeddings

            vectors = torch.from_numpy(read_attribute_embeddings(cfg.attr_embeddings, task.attribute_names))
            opts = dataclasses.replace(opts, attr_embed_dim=vectors.shape[1])
        m = self.model_class(task.features.shape[-1], task.attributes.shape[1], len(task.seen), opts)
        if vectors is not None:
            with torch.no_grad():
                m.attr_embed.copy_(F.normalize(vectors, dim=1))  # unit rows, as the random start
        fill_buffers(m, task)
        self.model = m.to(self.device)
        if cfg.init_from:  # fine-tuning: the bundle's weights over the fresh ones (no random draws)
            from .finetune import init_model

            self.init_report = init_model(m, cfg, task)
        self.opt = torch.optim.RMSprop(m.parameters(), lr=cfg.lr, weight_decay=cfg.msdn_weight_decay,
                                       momentum=cfg.msdn_momentum)
        dev = self.device
        self.raw = task.features[task.train_idx].to(dev)  # (n, R, C) as stored (float16), scaled per batch
        self.y = task.labels[task.train_idx].to(dev)  # (n,)
        self.seen_classes = task.seen_classes.to(dev)
        self.unseen_classes = task.unseen_classes.to(dev)
        self.seen_pos = torch.full((len(task.seen),), -1, dtype=torch.long, device=dev)  # class -> seen position
        self.seen_pos[self.seen_classes] = torch.arange(len(self.seen_classes), device=dev)
        self.teacher_done = False
        self.epoch = 0
        self.history: list[dict] = []

    # ---- what fit() calls besides run_epoch --------------------------------------------------------
    def train_teacher(self) -> float:
        """MSDN has no teacher to pre-train: mark the warm-up done."""
        self.teacher_done = True
        return 0.0

    def prepare_ood_norm(self) -> None:
        """Nothing to prepare (no OOD score)."""

    # ---- training ----------------------------------------------------------------------------------
    def losses(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted loss terms for the training images ``idx``."""
        m, cfg = self.model, self.cfg
        raw, y = self.raw[idx], self.seen_pos[self.y[idx]]
        out = m(raw)
        l1, l2 = m.compatibility(out.s1), m.compatibility(out.s2)  # (B, K) each
        seen = self.seen_classes
        parts = {"ce_av": F.cross_entropy(l1[:, seen], y), "ce_va": F.cross_entropy(l2[:, seen], y),
                 "distill": cfg.distill_weight * js_divergence(l1, l2)}
        if cfg.msdn_cal_weight > 0 and len(self.unseen_classes):
            mass = torch.stack([lg.softmax(1)[:, self.unseen_classes].sum(1).mean() for lg in (l1, l2)])  # (2,)
            parts["cal"] = cfg.msdn_cal_weight * -torch.log(mass).sum()
        if self.causal:
            cf = m(raw, counterfactual=cfg.counterfactual, generator=self.rng)
            e1, e2 = l1 - m.compatibility(cf.s1), l2 - m.compatibility(cf.s2)  # (B, K) the attention's effect
            parts["causal"] = cfg.causal_weight * (F.cross_entropy(e1[:, seen], y) + F.cross_entropy(e2[:, seen], y))
        return parts

    def run_epoch(self) -> dict:
        """One pass over the training images in random batches of ``batch_size``."""
        sums: dict[str, float] = {}
        batches = torch.randperm(len(self.raw), generator=self.rng, device=self.device).split(self.cfg.batch_size)
        for idx in batches:
            parts = self.losses(idx)
            self.opt.zero_grad(set_to_none=True)
            sum(parts.values()).backward()
            self.opt.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item()
        return {k: v / len(batches) for k, v in sums.items()}


class MSDNPPTrainer(MSDNTrainer):
    """MSDN++: MSDN's training plus the causal-attention term."""

    model_class = MSDNPPModel
    causal = True
