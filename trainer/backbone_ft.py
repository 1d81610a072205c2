"""Training the image backbone with the head (``dkgzsl train --images --finetune-backbone``).

Without it, ``train --images`` extracts the backbone's features once and the head trains on those. With it,
the terms that already train on real photos with gradients (the teacher warm-up, the student step, and
DKGZSL's SOVR/ARA terms) read the photos' features from a live forward pass of the backbone, so their
gradients reach it (Adam at ``backbone_lr``); the critic and G see a snapshot of the features, recomputed
without gradients when an epoch starts (as DKGZSL snapshots v). One mixin serves every trainer built on
``loop._Trainer``: it overrides the hooks through which real features reach the losses, ``real_features``
(pooled, scaled) and ``raw_regions`` (DKGZSL's raw region maps), and never looks at the method.

Choices:

* The backbone rides as an extra parameter group (lr ``backbone_lr``) in the optimizers of the steps whose
  losses reach it, the warm-up's (``opt_t``) and the student's (``opt_s``): their zero_grad/step cover it,
  and their state dicts (in the checkpoint) hold its Adam moments. No other step's loss reaches it.
* Under torchrun each rank runs the backbone on its share of every batch (``distributed.per_rank``), the
  gradients all-reduced with the optimizers'; eval-mode BatchNorm (below) makes that split exact.
* BatchNorm stays in eval mode (running statistics frozen, affine weights trained): training batches are
  small and class-skewed, so batch statistics would be noisy and would shift the running ones away from
  the statistics the initial features (and the feature scaling fitted on them) were computed with; eval
  mode also makes the live pass and the snapshot the same function of the weights, with no random draws
  (dropout and drop-path are off too), which exact ``--resume`` needs.
* Feature scaling is fitted on the initial features, as without fine-tuning.
* Photos are kept as uint8 tensors at the input size (resized and cropped; ``Backbone.uint8_transform``)
  and normalised batch by batch, bit for bit as the eval transform does.
* On CUDA the backbone runs in channels_last with bf16 autocast; on the CPU in fp32, the default layout
  (the features ``train --images`` extracts there, so the initial features are exactly those).
* Validation features (``select`` phase) follow the backbone: after every epoch the evaluation photos'
  features are recomputed with it (the task's feature tensor is the trainer's own copy).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable

import torch

from ..models.backbone import Backbone
from ..models.errors import DataError
from . import distributed

CHUNK = 64  # photos per forward pass without gradients (snapshots, validation features)


@dataclass
class PhotoSet:
    """The photos behind a FeatureSet's rows and the backbone whose training starts from ``backbone``."""

    photos: torch.Tensor  # (N, 3, H, W) uint8, FeatureSet row order, as Backbone.uint8_transform makes them
    backbone: Backbone  # the starting weights (never changed: every run trains a copy)

    def copy_to(self, device: torch.device, state: dict | None = None) -> Backbone:
        """A copy of the starting backbone (or with weights ``state``) on ``device``, in eval mode."""
        model = copy.deepcopy(self.backbone.model)
        if state is not None:
            model.load_state_dict(state)
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        return Backbone(model, self.backbone.config)  # Backbone puts it in eval mode

    def raw(self, backbone: Backbone, rows: torch.Tensor, device: torch.device, kind: str) -> torch.Tensor:
        """Raw features of photos ``rows``: pooled (B, D) or regions (B, R, C) float32, the regions rounded to
        float16 as stored features are; with gradients when grad mode is on."""
        x = backbone.normalize(self.photos[rows].to(device, non_blocking=True))  # (B, 3, H, W)
        cuda = device.type == "cuda"
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
            pooled, regions = backbone.features(x)
        if kind == "regions":
            return regions.to(torch.float16).float()  # (B, R, C)
        return pooled.float()  # (B, D)

    @torch.no_grad()
    def features(self, backbone: Backbone, rows: torch.Tensor, device: torch.device, kind: str,
                 tick: Callable[[int], None] | None = None) -> torch.Tensor:
        """Features of photos ``rows`` without gradients, as stored: pooled (n, D) float32 or regions (n, R, C)
        float16, on ``device``; ``tick(k)`` after each chunk of k photos."""
        dtype = torch.float16 if kind == "regions" else torch.float32

        done = []

        def mine(rows: torch.Tensor) -> torch.Tensor:  # under torchrun this rank's share (distributed.per_rank)
            out = []
            for chunk in rows.split(CHUNK):
                out.append(self.raw(backbone, chunk, device, kind).to(dtype))
                done.append(len(chunk))
                if tick:
                    tick(len(chunk))
            return torch.cat(out)
        feats = distributed.per_rank(mine, rows)
        if tick and len(rows) > sum(done):  # the other ranks' photos, at once
            tick(len(rows) - sum(done))
        return feats


def with_backbone(cls, method: str = ""):
    """``cls`` (a method's trainer) with the backbone trained inside it (``BackboneFinetuning``)."""
    if not getattr(cls, "trains_backbone", False):
        raise DataError(f"--finetune-backbone is not available for {method or cls.__name__}: its trainer does not "
                        "read real features through the hooks that let gradients reach the backbone. Train it "
                        "without --finetune-backbone.")
    return type(f"{cls.__name__}WithBackbone", (BackboneFinetuning, cls), {})


class BackboneFinetuning:
    """Mixin over a ``loop._Trainer`` subclass: the backbone trains with the head (module docstring).

    ``raw_now`` (n, ...) holds the current backbone's raw features of the training photos (stored dtype),
    recomputed lazily after the backbone stepped; ``x`` (the critic's and G's view) is ``model.visual`` of it,
    refreshed at the start of an epoch and after the warm-up.
    """

    def __init__(self, task, cfg, device: str = "cpu", photos: PhotoSet | None = None):
        if photos is None:
            raise DataError("--finetune-backbone trains the image backbone on photos: train with --images.")
        if len(photos.photos) != len(task.features):
            raise ValueError(f"{len(photos.photos)} photos for {len(task.features)} feature rows")
        self.photos = photos
        self.raw_now: torch.Tensor | None = None  # None: the stored features (the starting backbone's)
        self.raw_fresh = self.x_fresh = True
        self.saved_norm: list[float] | None = None  # ood_norm of the run being resumed (prepare_ood_norm)
        super().__init__(task, cfg, device)
        self.kind = "regions" if task.features.ndim == 3 else "pooled"
        self.backbone = photos.copy_to(self.device)
        self.rows = task.train_idx.clone()  # (n,) photo rows of the training arrays' positions
        params = list(self.backbone.model.parameters())
        for opt in (self.opt_t, self.opt_s):
            opt.add_param_group({"params": params, "lr": cfg.backbone_lr})
            opt.register_step_post_hook(self._stepped)
        if task.eval_idx is not None and len(task.eval_idx):
            task.features = task.features.clone()  # its evaluation rows follow the backbone (refresh_eval)

    def _stepped(self, *_) -> None:
        self.raw_fresh = False

    # ---- real features: live with gradients, else the current backbone's snapshot -------------------------
    def _live(self, idx: torch.Tensor) -> torch.Tensor:  # under torchrun each rank runs its share of the batch
        return distributed.per_rank(lambda r: self.photos.raw(self.backbone, r, self.device, self.kind),
                                    self.rows[idx.cpu()])

    def real_features(self, idx: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return super().real_features(idx)
        return self.model.scale_features(self._live(idx))  # (B, D)

    def raw_regions(self, idx: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self._live(idx)  # (B, R, C)
        self._refresh_raw()
        return super().raw_regions(idx) if self.raw_now is None else self.raw_now[idx].float()

    def _refresh_raw(self) -> None:
        if not self.raw_fresh:
            self.raw_now = self.photos.features(self.backbone, self.rows, self.device, self.kind)
            self.raw_fresh, self.x_fresh = True, False

    def refresh(self) -> None:
        """``x`` (n, D) of the current backbone and model, when the backbone stepped since the last one."""
        self._refresh_raw()
        if not self.x_fresh:
            with torch.no_grad():
                self.x = torch.cat([self.model.visual(self.raw_now[i:i + CHUNK].float())
                                    for i in range(0, len(self.raw_now), CHUNK)])
            self.x_fresh = True

    def refresh_eval(self) -> None:
        """The evaluation photos' features from the current backbone, into the task (validation metrics)."""
        idx = self.task.eval_idx
        if idx is not None and len(idx):
            self.task.features[idx] = self.photos.features(self.backbone, idx, self.device, self.kind).cpu()

    # ---- the trainer's phases -------------------------------------------------------------------------
    def train_teacher(self) -> float:
        loss = super().train_teacher()
        self.refresh()  # x after the warm-up: what prepare_ood_norm and the first epoch see
        return loss

    def begin_epoch(self) -> None:
        super().begin_epoch()
        self.refresh()  # after the method's own refresh, so the same code writes x here and after --resume

    def prepare_ood_norm(self) -> None:
        """As the method computes it after the warm-up; a resumed run takes the one its checkpoint kept, since
        x (what it is computed on) has moved with the backbone since the warm-up."""
        if self.saved_norm is None:
            super().prepare_ood_norm()
        else:
            self.ood_norm = tuple(self.saved_norm)

    def run_epoch(self) -> dict:
        row = super().run_epoch()
        self.refresh_eval()
        return row

    # ---- checkpoints and the bundle -----------------------------------------------------------------------
    def state(self) -> dict:
        return {**super().state(), "backbone": self.backbone.model.state_dict(),
                "ood_norm": list(self.ood_norm) if self.ood_norm is not None else None}

    def restore(self, st: dict, path) -> None:
        if "backbone" not in st:
            raise ValueError(f"{path} was written by a run with other settings; use another run folder "
                             "or drop --resume to start afresh")
        self.backbone.model.load_state_dict(st["backbone"])
        self.saved_norm = st.get("ood_norm")
        self.raw_fresh = False
        super().restore(st, path)
        self.refresh()

    def backbone_state(self) -> dict:
        return {k: v.detach().cpu().contiguous() for k, v in self.backbone.model.state_dict().items()}
