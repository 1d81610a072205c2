"""CE-GZSL as the generator of a generative method's training (``TrainConfig.generator = "ce-gzsl"``).

One mixin, ``CEGZSLTraining``, serves every trainer built on ``loop._Trainer`` (D3GZSL's and DKGZSL's): it adds
CE-GZSL's embedding net E and comparator F (models/cegzsl.py) to the run through the trainer's hooks, and never
looks at the method. With the default ``clswgan`` nothing here runs and the networks are those of before.

Choices (METHODS.md "CE-GZSL"; the published code read, not copied):

* E and F train on the critic's real batches, one Adam step per critic step (G's and D's lr and betas), on
  L_ins(z) + L_cls(F(h, a_seen)) unweighted, as the published code trains them with the critic's optimiser. No
  other optimiser holds them: the student's and G's losses flow through E (into G, SOVR or a fine-tuned
  backbone) but never update it, so E stays the contrastive embedding the paper describes.
* G's objective gains ``ce_ins_weight`` · L_ins over [z(fake), z(real) detached] (labels [y, y]) and
  ``ce_cls_weight`` · L_cls(F(h(fake), a_seen)) on the generator step's fake seen features (the paper: 0.001;
  0.01 on FLO and SUN).
* The unified classifier (the student ψ) reads h = E(v) of real seen and generated unseen features
  (``ZSLModel.student_features``), as CE-GZSL's final classifier reads h; so do its losses in G's step and
  ``add-class`` (dkgzsl_app/classes/refit.py).
* The teacher φ reads v, not h. It is pre-trained on real seen features and frozen before the generator phase,
  when E is still at its random initialisation: a teacher on h would be frozen on an embedding that then
  moves, and its MSP/energy OOD score and the L_kl/L_be targets would drift with E. On v it is what D3GZSL's
  teacher is on any generator. L_be compares E_o(v) with E_s(h), both ``embed_dim`` wide; L_kl compares logits.
* It draws no random numbers of its own (E and F only read the batches the loop draws); E and F are part of
  the model (their weights go into the bundle) and E's optimiser into the checkpoint, so ``--resume`` is exact.
"""
from __future__ import annotations

import torch

from ..models.cegzsl import class_contrastive_loss, instance_contrastive_loss
from ..models.errors import UsageError


def resolved_dims(cfg) -> tuple[int, int, int]:
    """(h, z, comparator) widths of a TrainConfig: 0 follows ``embed_dim`` as the paper's 2048 → 512, 2048 do."""
    h = cfg.ce_embed_dim or cfg.embed_dim
    return h, cfg.ce_proj_dim or max(1, h // 4), cfg.ce_comparator_dim or h


def model_kwargs(cfg) -> dict:
    """What a trainer's ``build`` passes to the method's model for ``cfg``'s generator: nothing for clswgan."""
    return {"ce_dims": resolved_dims(cfg)} if cfg.generator == "ce-gzsl" else {}


def generator_fields(cfg) -> dict:
    """The bundle's GeneratorConfig fields for ``cfg``'s generator (none for clswgan: its defaults)."""
    if cfg.generator == "clswgan":
        return {}
    h, p, c = resolved_dims(cfg)
    return {"kind": cfg.generator, "embed_dim": h, "proj_dim": p, "comparator_dim": c}


def settings_from_generator(generator_config) -> dict:
    """The TrainConfig fields a bundle's GeneratorConfig fixes (``train --from`` keeps them)."""
    kind = getattr(generator_config, "kind", "clswgan")
    if kind == "clswgan":
        return {"generator": kind}
    return {"generator": kind, "ce_embed_dim": generator_config.embed_dim, "ce_proj_dim": generator_config.proj_dim,
            "ce_comparator_dim": generator_config.comparator_dim}


def check_generator(cfg) -> None:
    """UsageError when ``cfg.method`` has no generator for ``cfg.generator`` to be (MSDN, MSDN++)."""
    from .loop import _Trainer
    from .methods import trainer_class

    if cfg.generator != "clswgan" and not issubclass(trainer_class(cfg.method), _Trainer):
        raise UsageError(f"--generator {cfg.generator}: {cfg.method} is an embedding method with no generator; "
                         "the generator choice applies to the generative methods (--method d3gzsl or dkgzsl). "
                         "Drop --generator.")


def with_generator(cls, cfg):
    """``cls`` (a method's trainer) training ``cfg.generator``: itself for clswgan, with ``CEGZSLTraining`` for
    ce-gzsl."""
    if cfg.generator == "clswgan":
        return cls
    check_generator(cfg)
    return type(f"{cls.__name__}CEGZSL", (CEGZSLTraining, cls), {})


class CEGZSLTraining:
    """Mixin over a ``loop._Trainer`` subclass: CE-GZSL's embedding net and losses (module docstring)."""

    def __init__(self, task, cfg, device: str = "cpu", **kwargs):
        super().__init__(task, cfg, device, **kwargs)
        net = self.model.contrastive
        if net is None:
            raise ValueError(f"{type(self).__name__}: the model was built without CE-GZSL's embedding net "
                             "(its trainer's build must pass cegzsl.model_kwargs)")
        self.opt_e = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.optimizer_names = (*self.optimizer_names, "opt_e")
        self.seen_attr = self.attr[self.seen_classes]  # (S, A) the comparator's class prototypes

    def _losses(self, h, z, y) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_ins on z (N, P) with labels y (N,), L_cls of the first len(h) samples' h (B, H))."""
        cfg, net = self.cfg, self.model.contrastive
        ins = instance_contrastive_loss(z, y, cfg.ce_ins_temp)
        scores = net.compare(h, self.seen_attr)  # (B, S)
        return ins, class_contrastive_loss(scores, self.seen_pos[y[:len(h)]], cfg.ce_cls_temp)

    def critic_extra(self, idx: torch.Tensor) -> dict[str, float]:
        """E and F: one step on the critic's real batch ``idx``."""
        out = super().critic_extra(idx)
        h, z = self.model.contrastive(self.x[idx])  # (B, H), (B, P)
        ins, cls = self._losses(h, z, self.y[idx])
        self.opt_e.zero_grad(set_to_none=True)  # also drops what G's and the student's losses left in E
        (ins + cls).backward()
        self.opt_e.step()
        return {**out, "ce_ins": ins.item(), "ce_cls": cls.item()}

    def generator_extra(self, y_real, a_real, x_real, fake) -> dict[str, torch.Tensor]:
        """G's share of the contrastive losses, on its fake seen features ``fake`` (B, D)."""
        out = super().generator_extra(y_real, a_real, x_real, fake)
        cfg, net = self.cfg, self.model.contrastive
        h, z = net(fake)
        y = y_real
        if x_real is not None:  # real embeddings are fixed anchors: G moves its fakes towards them
            with torch.no_grad():
                _, z_real = net(x_real)
            z, y = torch.cat([z, z_real]), torch.cat([y_real, y_real])
        ins, cls = self._losses(h, z, y)
        return {**out, "ce_ins_g": cfg.ce_ins_weight * ins, "ce_cls_g": cfg.ce_cls_weight * cls}

    def grow_lr(self) -> None:
        """E and F follow the critic's lr (they share its optimiser in the published code)."""
        super().grow_lr()
        for group in self.opt_e.param_groups:
            group["lr"] = self.opt_d.param_groups[0]["lr"]
