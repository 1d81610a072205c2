"""From a FeatureSet to a bundle: select epochs and calibration on validation classes, then train on all.

Phase ``select`` trains on the seen classes minus a set of validation classes, which play the unseen
part; each epoch is scored on held-out seen images + validation-class images (never the test split):
the best epoch by calibrated H fixes the number of epochs and the calibration γ. Phase ``final``
trains on all trainval images with the real unseen classes for that many epochs and writes the bundle.

Options (TrainConfig; README "Methods and our decisions"): ``final_length=iterations`` trains the final
run for the selected number of generator iterations instead of epochs (its epochs are longer: it has
more images); ``final_gamma=seen_rate`` keeps a share of the seen training images out of the final run
and re-fits γ on them, so that they fall on the seen side as often as the held-out seen images did at
selection (a transfer of the operating point, not of the raw γ, whose scale changes with the number of
classes; no test image is used).
"""
from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..models.atomic import atomic_write_bytes
from ..models.bundle import save_bundle
from ..models.config import GeneratorConfig, HeadConfig, ModelConfig
from ..models.errors import DataError
from ..models.version import package_version
from . import distributed
from .cegzsl import check_generator, generator_fields
from .config import TrainConfig
from .data import FeatureSet, carve_validation, hold_out_per_class
from .determinism import deterministic_training
from .loop import fit
from .methods import check_options
from .metrics import (ausuc, choose_gamma, czsl_accuracy, gamma_for_seen_rate, gzsl_accuracy, seen_side_rate,
                      seen_unseen_curve, thin_curve)
from .task import Task, make_task


# Intra-op threads while training (README "Reproducibility"): the thread count changes the float32 bits of
# the result, so it is fixed, not taken from the machine's core count. 2 is what the bundled demo model was
# built with; `dkgzsl train --threads N` overrides it (0 = torch's default for this machine).
TRAIN_THREADS = 2


@dataclass
class TrainOutcome:
    bundle_dir: Path
    best_epoch: int
    calibration: float
    select_history: list[dict]
    final_history: list[dict]


def scores_for(model, features: torch.Tensor, tau: float = 1.0, batch: int = 4096) -> np.ndarray:
    """Unified-classifier probabilities (N, C) for raw features (N, D) or regions (N, R, C), in batches (of at
    most ``batch`` photos and 16 M feature values), on the model's device."""
    model.eval()
    if len(features):
        batch = max(1, min(batch, (1 << 24) // features[0].numel()))
    dev = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.class_scores(features[i:i + batch].to(dev), tau).cpu()
                          for i in range(0, len(features), batch)]).numpy()


def validation_metrics(task: Task, tau: float, with_seen_rate: bool = False) -> Callable:
    """Per-epoch GZSL metrics on the task's evaluation images (validation only).

    ``with_seen_rate`` adds ``val_seen_rate``: the share of held-out seen images predicted as some seen
    class at the chosen γ (the operating point ``final_gamma=seen_rate`` carries to the final model).
    """
    labels, seen = task.labels[task.eval_idx].numpy(), task.seen.numpy()

    def evaluate(model) -> dict:
        # task.features read now: with --finetune-backbone the trainer refreshes its evaluation rows each epoch
        scores = scores_for(model, task.features[task.eval_idx], tau)
        s, u, h = gzsl_accuracy(scores, labels, seen, 0.0)
        gamma, h_cal = choose_gamma(scores, labels, seen)
        row = {"val_S": s, "val_U": u, "val_H": h, "val_H_cal": h_cal, "val_gamma": gamma}
        row.update(selection_curve(scores, labels, seen, gamma))
        if with_seen_rate:
            row["val_seen_rate"] = seen_side_rate(scores[seen[labels]], seen, gamma)
        return row

    return evaluate


def selection_curve(scores: np.ndarray, labels: np.ndarray, seen: np.ndarray, gamma: float) -> dict:
    """What the model card shows of a selection epoch beyond S/U/H: CZSL (validation-class photos among those
    classes only), AUSUC, S and U at the chosen γ (the operating point) and the seen-unseen curve thinned to
    64 points for its plot (``val_curve``: gamma, S, U lists; the area is the full curve's). NumPy only: no
    random numbers, nothing the training reads."""
    g, s_curve, u_curve = seen_unseen_curve(scores, labels, seen)
    s_cal, u_cal, _ = gzsl_accuracy(scores, labels, seen, gamma)
    g, s_curve, u_curve = thin_curve(g, s_curve, u_curve)
    return {"val_CZSL": czsl_accuracy(scores, labels, seen), "val_AUSUC": ausuc(scores, labels, seen),
            "val_S_cal": s_cal, "val_U_cal": u_cal,
            "val_curve": {"gamma": [float(f"{x:.6g}") for x in g], "S": [round(float(x), 5) for x in s_curve],
                          "U": [round(float(x), 5) for x in u_curve]}}


def model_config(fs: FeatureSet, cfg: TrainConfig, calibration: float, provenance: dict,
                 backbone=None, options: dict | None = None) -> ModelConfig:
    """The bundle's config; ``options`` are the trained model's method options (``model.options_dict()``)."""
    options = options or {}
    return ModelConfig(
        method=cfg.method, feature_dim=int(fs.features.shape[-1]), feature_kind=fs.kind, options=options,
        attribute_names=list(fs.attribute_names), class_names=list(fs.class_names),
        seen=[bool(s) for s in fs.seen],
        generator=GeneratorConfig(noise_dim=len(fs.attribute_names), hidden_dim=cfg.hidden_dim,
                                  critic_hidden_dim=cfg.critic_hidden_dim, **generator_fields(cfg)),
        head=HeadConfig(embed_dim=cfg.embed_dim, tau_teacher=cfg.tau_teacher, tau_student=cfg.tau_student,
                        tau_kl=cfg.tau_kl, tau_be=cfg.tau_be, tau_od=cfg.tau_od,
                        kl_normalize=cfg.kl_normalize, ood_score=cfg.ood_score,
                        pair_balance=cfg.pair_balance, od_target=cfg.od_target),
        calibration=float(calibration), provenance=provenance, backbone=backbone)


def train_bundle(fs: FeatureSet, cfg: TrainConfig, run_dir, resume: bool = False,
                 on_epoch: Callable[[str, dict], None] | None = None,
                 progress: Callable[[str, int, int], None] | None = None, device: str = "cpu",
                 backbone=None, threads: int = TRAIN_THREADS, init_from=None,
                 init_source: str | None = None, photos=None, backbone_weights: dict | None = None) -> TrainOutcome:
    """Train and write ``run_dir/bundle``. With ``resume``, continue an interrupted run exactly.

    ``backbone`` (a BackboneConfig) is recorded in the bundle when the features came from photos.
    ``init_from`` (a Bundle or a bundle folder; ``init_source``: how the user named it) fine-tunes it: the run
    starts from its weights, keeps its networks, attribute vocabulary and feature scaling (trainer/finetune.py)
    and the new bundle records ``finetuned_from``.
    ``photos`` (a ``backbone_ft.PhotoSet`` of ``fs``'s rows) with ``cfg.finetune_backbone``: the backbone trains
    with the head and the bundle carries its weights; ``backbone_weights``: weights of a fine-tuned backbone
    (from ``init_from``) that the bundle carries unchanged when the backbone stays frozen.
    Training runs with deterministic algorithms and ``threads`` intra-op threads (0: torch's current
    setting); both, with the CPU capability, go into the bundle's provenance (determinism.conditions).
    """
    cfg.validate()
    check_generator(cfg)
    check_options(cfg)
    if cfg.finetune_backbone and photos is None:
        raise DataError("--finetune-backbone trains the image backbone on photos: train with --images "
                        "(feature files hold no photos).")
    finetuned_from = None
    if init_from is not None:
        from .finetune import prepare

        cfg, backbone, finetuned_from = prepare(init_from, init_source, fs, cfg, backbone)
    from .methods import trainer_class

    kinds = trainer_class(cfg.method).feature_kinds
    if fs.kind not in kinds:
        hint = ("give region features (train --images extracts them; or a region feature folder)" if "pooled" not in kinds
                else "give pooled features, or train a method that refines regions (--method dkgzsl)")
        raise DataError(f"{fs.source}: {fs.kind} features, but {cfg.method} trains on {' or '.join(kinds)} "
                        f"features; {hint}.")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():  # under torchrun, rank 0 alone writes (and checks) the run folder
        _pin_config(run_dir / "train_config.json", cfg, fs, resume, finetuned_from)
    with deterministic_training(threads, device) as conditions:
        return _train(fs, cfg, run_dir, resume, on_epoch, progress, device, backbone, conditions, finetuned_from,
                      photos if cfg.finetune_backbone else None, backbone_weights)


def _train(fs: FeatureSet, cfg: TrainConfig, run_dir: Path, resume: bool, on_epoch, progress, device: str,
           backbone, conditions: dict, finetuned_from: dict | None = None, photos=None,
           backbone_weights: dict | None = None) -> TrainOutcome:
    say = (lambda phase: (lambda row: on_epoch(phase, row))) if on_epoch else (lambda phase: None)
    tick = (lambda phase: (lambda i, n: progress(phase, i, n))) if progress else (lambda phase: None)

    best_epoch, gamma, select_hist, extra = cfg.epochs, 0.0, [], {}
    final_train, held = np.asarray(fs.trainval), None
    if cfg.final_gamma == "seen_rate":  # seen images the final run never trains on, to re-fit γ with
        final_train, held = hold_out_per_class(fs.trainval, fs.labels, cfg.gamma_holdout, cfg.seed)
    final_epochs = best_epoch
    if cfg.select == "val":
        vs = carve_validation(fs, cfg.seed, cfg.val_class_fraction, cfg.seen_holdout)
        classes = np.flatnonzero(fs.seen)
        task = make_task(fs, classes, vs.seen[classes], vs.train, np.concatenate([vs.val_seen, vs.val_unseen]))
        res = fit(task, cfg, cfg.epochs, run_dir / "select", resume,
                  evaluate=validation_metrics(task, cfg.tau_student, cfg.final_gamma == "seen_rate"),
                  on_epoch=say("select"), progress=tick("select"), device=device, photos=photos)
        select_hist = res.history
        rows = [r for r in res.history if "val_H_cal" in r]
        best = max(rows, key=lambda r: (r["val_H_cal"], -r["epoch"]))
        best_epoch, gamma = int(best["epoch"]), float(best["val_gamma"])
        final_epochs = best_epoch
        if cfg.final_length == "iterations":  # as many generator iterations as the selected selection epochs
            iters = best_epoch * iterations_per_epoch(len(vs.train), cfg.batch_size)
            final_epochs = max(1, round(iters / iterations_per_epoch(len(final_train), cfg.batch_size)))
            extra.update(selected_iterations=iters, final_epochs=final_epochs)

    task = make_task(fs, np.arange(len(fs.class_names)), fs.seen, final_train)
    res = fit(task, cfg, final_epochs, run_dir / "final", resume, on_epoch=say("final"), progress=tick("final"),
              device=device, photos=photos)
    if held is not None:
        rate = float(best["val_seen_rate"])
        if res.backbone is not None:  # the held-out photos through the final backbone
            dev = torch.device(device)
            raw = photos.features(photos.copy_to(dev, res.backbone), torch.from_numpy(held), dev, fs.kind).cpu()
        else:
            raw = torch.from_numpy(np.ascontiguousarray(fs.features[held], np.float32 if fs.kind == "pooled" else None))
        scores = scores_for(res.model, raw, cfg.tau_student)
        extra.update(select_gamma=gamma, seen_rate=rate, gamma_holdout_images=int(len(held)))
        gamma = gamma_for_seen_rate(scores, fs.seen, rate)
    provenance = {
        "data_sha256": fs.sha256(), "data_source": fs.source, "seed": cfg.seed,
        "selected_epoch": best_epoch, **extra, "selection": cfg.select, "train_config": cfg.to_dict(),
        "dkgzsl": package_version(), "torch": torch.__version__, "python": platform.python_version(),
        "device": torch.device(device).type, **conditions,
    }
    if finetuned_from is not None:
        provenance["finetuned_from"] = finetuned_from
    config = model_config(fs, cfg, gamma, provenance, backbone, res.model.options_dict())
    open_idx = held if held is not None else (vs.val_seen if cfg.select == "val" else None)
    if open_idx is not None and len(open_idx):
        _fit_open_set(config, res, fs, open_idx, "held-out seen training photos" if held is not None
                      else "validation photos of seen classes (also in the final run's training set)", photos, device)
    bundle_dir = run_dir / "bundle"
    if distributed.is_main():
        bundle_dir = save_bundle(res.model, config, bundle_dir,
                                 backbone_state=res.backbone if res.backbone is not None else backbone_weights)
    return TrainOutcome(bundle_dir, best_epoch, gamma, select_hist, res.history)


def _fit_open_set(config: ModelConfig, res, fs: FeatureSet, idx: np.ndarray, fitted_on: str, photos,
                  device: str) -> None:
    """The bundle's open-set threshold and confidence temperature (models/openset.py), fitted on the final
    model's scores of ``idx``: photos of seen classes only."""
    from ..models.openset import fit_records

    if res.backbone is not None:  # the photos through the final backbone
        dev = torch.device(device)
        raw = photos.features(photos.copy_to(dev, res.backbone), torch.from_numpy(idx), dev, fs.kind).cpu()
    else:
        raw = torch.from_numpy(np.ascontiguousarray(fs.features[idx], np.float32 if fs.kind == "pooled" else None))
    config.open_set, config.confidence = fit_records(res.model, config, raw, np.asarray(fs.labels)[idx],
                                                     fitted_on=fitted_on)


def iterations_per_epoch(n_images: int, batch_size: int) -> int:
    """Generator iterations in one epoch over ``n_images`` real training features (loop.run_epoch)."""
    return math.ceil(n_images / batch_size)


def _pin_config(path: Path, cfg: TrainConfig, fs: FeatureSet, resume: bool,
                finetuned_from: dict | None = None) -> None:
    """A run folder belongs to one configuration, one data set and (fine-tuning) one source bundle; resuming
    with others is refused."""
    record = {"train_config": cfg.to_dict(), "data_sha256": fs.sha256()}
    if finetuned_from is not None:
        record["finetuned_from"] = finetuned_from
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        was = old.get("finetuned_from")
        if resume and was != finetuned_from:
            started = f"from {was['source']} (weights {was['weights_sha256'][:12]}…)" if was else "without --from"
            raise DataError(f"{path.parent} was started {started}; resume it "
                            + (f"with --from {was['source']}" if was else "without --from")
                            + ", or train into a new --out folder.")
        if resume and old != record:
            raise DataError(f"{path.parent} was started with other settings or data; "
                            "resume with the same options, or train into a new --out folder.")
        if not resume:
            raise DataError(f"{path.parent} already holds a run; pass --resume to continue it "
                            "or choose a new --out folder.")
    atomic_write_bytes(path, json.dumps(record, indent=2).encode("utf-8"))
