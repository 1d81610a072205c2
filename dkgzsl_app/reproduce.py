"""`dkgzsl reproduce`: from a downloaded benchmark to a bundle and a results table beside the paper's row.

Extract backbone features of the data set's photos (cached), train the method with the paper's settings
(``datasets/presets.json``: one file of presets per method and data set), select epochs and γ on xlsa17's
validation classes (never on the test split), evaluate on the proposed test split and write ``OUT/results.md``
(+ ``results.json``): our U / S / H / CZSL / AUSUC beside the published row, and the exact commands.
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from .models.errors import BundleError, UsageError

PRESETS_FILE = Path(__file__).resolve().parent / "datasets" / "presets.json"
METRICS = ("U", "S", "H", "CZSL", "AUSUC")
RANDOM_TAG = "random-init-seed0"  # --backbone-weights none: timm's initialisation under torch.manual_seed(0)


def load_presets() -> dict:
    return json.loads(PRESETS_FILE.read_text(encoding="utf-8"))


@dataclass
class Plan:
    """What a reproduce run will do, resolved from the presets and the command line."""

    dataset: str  # cub | awa2 | sun
    method: str
    backbone: str  # the key in presets["backbones"], or a timm name given as is
    timm_name: str
    train: dict  # TrainConfig fields
    published: dict | None  # the paper's row for this backbone, None when the presets have none
    notes: list[str]
    image_size: int | None = None  # px the photos are resized to (the preset's, --image-size); None: stock


def parse_overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` (``--set``) → {field: value}, the value parsed as JSON where it can be (1e-4, true)."""
    from .trainer.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in known:
            raise UsageError(f"--set {item!r}: give FIELD=VALUE with a training setting"
                             f"{'' if not eq else f'; {key!r} is none'} (e.g. epochs=10, lr=1e-4).")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def make_plan(dataset: str, method: str, backbone: str | None, overrides: dict, image_size: int | None = None) -> Plan:
    """The preset of ``method`` on ``dataset`` with ``overrides`` (and ``image_size``, px) on top (UsageError for
    unknown names)."""
    from .datasets import DATASETS

    presets = load_presets()
    if dataset not in DATASETS:
        raise UsageError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}.")
    if method not in presets["methods"]:
        raise UsageError(f"--method {method}: no preset; choose one of {', '.join(presets['methods'])}.")
    m = presets["methods"][method]
    d = m["datasets"][dataset]
    backbone = backbone or m["backbone"]
    timm_name = presets["backbones"].get(backbone, {}).get("timm", backbone)
    notes = [n for n in (presets["backbones"].get(backbone, {}).get("note"), m.get("note"), d.get("note")) if n]
    published = d.get("published", {}).get(backbone)
    if published is None:
        notes.append(f"No published {method} row on {dataset.upper()} with {backbone}.")
    train = {"method": method, **m.get("train", {}), **d.get("train", {}), **overrides}
    return Plan(dataset, method, backbone, timm_name, train, published, notes,
                image_size=image_size if image_size is not None else d.get("image_size", m.get("image_size")))


def make_backbone(timm_name: str, weights: str = "auto", image_size: int | None = None):
    """The backbone with its ImageNet weights (packaged offline, else the Hugging Face Hub), or random ones
    (``weights="none"``: smoke tests), at ``image_size`` px (None: its stock size); a BundleError that says
    where the weights come from when they cannot be had."""
    from .models.backbone import with_image_size

    bb = _make_backbone(timm_name, weights)
    return bb if image_size is None else with_image_size(bb, image_size)


def _make_backbone(timm_name: str, weights: str):
    from .models.backbone import OFFLINE, create_backbone

    if weights == "none":  # seeded, and tagged so: the same weights every run (cache, --resume), never mixed up
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            bb = create_backbone(timm_name, weights="none")
        bb.config.pretrained_tag = RANDOM_TAG
        return bb
    if timm_name in OFFLINE:
        return create_backbone(timm_name, weights="offline")
    try:
        return create_backbone(timm_name, weights="hub")
    except BundleError:
        raise
    except Exception as e:  # noqa: BLE001  (huggingface_hub/requests errors when offline)
        repo = "timm/" + timm_name
        raise BundleError(f"{timm_name}: its ImageNet weights come from the Hugging Face Hub ({repo}) and could not be "
                          f"fetched ({type(e).__name__}: {str(e)[:200]}). Run once with network access (they are then "
                          "cached), or pass --backbone-weights none for a smoke test with random weights.") from None


def dataset_features(dataset: str, root: Path, partial: bool, backbone: str, device: str, kind: str, seed: int,
                     warn: Callable[[str], None], progress=None, weights: str = "auto", image_size: int | None = None):
    """`train --dataset`: (the data set's FeatureSet with its split, the backbone's config), through the cache."""
    from .cache import FeatureCache
    from .datasets import feature_set_from_dataset, load_dataset
    from .locations import feature_cache_file

    ds = load_dataset(dataset, root, allow_partial=partial, seed=seed, warn=warn)
    bb = make_backbone(backbone, weights, image_size)
    fs = feature_set_from_dataset(ds, bb, device, FeatureCache(feature_cache_file(), warn=warn), warn=warn,
                                  progress=progress, kind=kind)
    return fs, bb.config


def dataset_test_set(dataset: str, root: Path, partial: bool, clf, warn: Callable[[str], None], progress=None,
                     seed: int = 0):
    """`evaluate --dataset`: the test photos' features by a loaded classifier's backbone (``classify.load``)."""
    from .cache import FeatureCache
    from .datasets import feature_set_from_dataset, load_dataset
    from .extract import default_channels_last
    from .locations import feature_cache_file

    ds = load_dataset(dataset, root, allow_partial=partial, seed=seed, warn=warn)
    return feature_set_from_dataset(ds, clf.backbone, clf.device, FeatureCache(feature_cache_file(), warn=warn),
                                    warn=warn, progress=progress, precision=clf.precision,
                                    channels_last=default_channels_last(clf.device),  # as evaluate --images
                                    kind=clf.bundle.config.feature_kind, test_only=True)


def training_config(plan: Plan):
    from .trainer.config import TrainConfig
    from .trainer.methods import recommended

    train = {**recommended(plan.method), **plan.train}
    if "hidden_dim" in train and "critic_hidden_dim" not in train:
        train["critic_hidden_dim"] = train["hidden_dim"]
    cfg = TrainConfig(**train)
    try:
        cfg.validate()
    except ValueError as e:
        raise UsageError(f"the {plan.method} preset for {plan.dataset}: {e}") from None
    return cfg


def run(plan: Plan, root: Path, out: Path, device: str = "cpu", weights: str = "auto", partial: bool = False,
        command: str = "", warn: Callable[[str], None] = print, progress=None, on_epoch=None,
        train_progress=None, cache=None, resume: bool = False) -> dict:
    """Extract, train, select, evaluate and write ``out/results.md``; returns the results dict. ``resume``
    continues an interrupted run in ``out/run`` exactly (the features come from the cache)."""
    from .datasets import feature_set_from_dataset, load_dataset
    from .models.bundle import load_bundle
    from .trainer.evaluate import evaluate_bundle
    from .trainer.methods import feature_kind
    from .trainer.train import TRAIN_THREADS, train_bundle

    started = time.monotonic()
    cfg = training_config(plan)
    ds = load_dataset(plan.dataset, root, allow_partial=partial, seed=cfg.seed, warn=warn)
    bb = make_backbone(plan.timm_name, weights, plan.image_size)
    fs = feature_set_from_dataset(ds, bb, device, cache, warn=warn, progress=progress, kind=feature_kind(cfg))
    extracted = time.monotonic()
    outcome = train_bundle(fs, cfg, out / "run", resume=resume, device=device, backbone=bb.config,
                           threads=TRAIN_THREADS, on_epoch=on_epoch, progress=train_progress)
    from .card import training_record, write_card

    try:  # the model card with the validation table and AUSUC plot, as `dkgzsl train` writes it
        write_card(outcome.bundle_dir, training=training_record(command or "dkgzsl reproduce",
                                                                time.monotonic() - started, device, outcome))
    except Exception as e:  # noqa: BLE001  (a card problem must not lose a finished training)
        warn(f"{outcome.bundle_dir}: the model card was not refreshed ({e}); `dkgzsl push` writes one.")
    bundle = load_bundle(outcome.bundle_dir)
    metrics = evaluate_bundle(bundle, fs)
    result = {"dataset": ds.name, "split": ds.split, "method": plan.method, "backbone": plan.timm_name,
              "backbone_weights": bb.config.pretrained_tag or "random", "bundle": str(outcome.bundle_dir),
              "input_size": list(bb.config.input_size[-2:]),
              "regions": int(fs.features.shape[1]) if fs.features.ndim == 3 else None,
              "selected_epoch": outcome.best_epoch, "calibration": outcome.calibration, "metrics": metrics,
              "published": plan.published, "train": plan.train, "notes": plan.notes,
              "n_photos": {"trainval": int(len(fs.trainval)), "test_seen": int(len(fs.test_seen)),
                           "test_unseen": int(len(fs.test_unseen))},
              "seconds": {"extract": round(extracted - started, 1), "train_and_evaluate": round(time.monotonic() - extracted, 1)},
              "commands": commands(plan, root, out, outcome.bundle_dir, command, partial, weights)}
    from .models.atomic import atomic_write_bytes

    atomic_write_bytes(out / "results.json", (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(out / "results.md", results_markdown(result).encode("utf-8"))
    return result


def commands(plan: Plan, root: Path, out: Path, bundle_dir: Path, command: str, partial: bool, weights: str) -> list[str]:
    """The command that ran, and the `train` + `evaluate` pair that does the same step by step."""
    import inspect

    from .cli import train as train_command

    q = shlex.quote
    options = set(inspect.signature(train_command).parameters)
    data = f"--dataset {plan.dataset} --root {q(str(root))}" + (" --partial" if partial else "")
    words, rest = [], []
    for k, v in plan.train.items():
        if k == "method" or (k == "critic_hidden_dim" and v == plan.train.get("hidden_dim")):
            continue
        if k not in options:
            rest.append(f"{k}={json.dumps(v)}")
        elif isinstance(v, bool):
            words.append(f"--{'' if v else 'no-'}{k.replace('_', '-')}")
        else:
            words.append(f"--{k.replace('_', '-')} {q(str(v))}")
    size = [f"--image-size {plan.image_size}"] if plan.image_size else []
    step = [" ".join([f"dkgzsl train {data} --method {plan.method} --backbone {q(plan.timm_name)}", *size, *words,
                      f"--out {q(str(out / 'run'))}"])]
    if rest:
        step[0] += f"  # and TrainConfig {', '.join(rest)} (no train option: reproduce --set)"
    if weights == "none":
        step[0] += "  # random backbone weights: only reproduce --backbone-weights none has them"
    step.append(f"dkgzsl evaluate --model local-dir:{q(str(bundle_dir))} {data}")
    return ([command] if command else []) + step


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _input_size(r: dict) -> str:
    """'Input: 448 px photos (196 regions). ' from a results dict (older ones, without the size: '')."""
    if "input_size" not in r:
        return ""
    h, w = r["input_size"]
    regions = f" ({r['regions']} regions)" if r.get("regions") else ""
    return f"Input: {h} px photos{regions}. " if h == w else f"Input: {h} × {w} px photos{regions}. "


def results_markdown(r: dict) -> str:
    m, pub = r["metrics"], r["published"]
    lines = [f"# {r['method']} on {r['dataset']} ({r['backbone']})", "",
             f"Split: {'xlsa17 proposed split' if r['split'] == 'proposed' else 'PARTIAL download: a seeded 20% of each seen class as test_seen, not the proposed split; not comparable with the paper'}. "
             f"Photos: {r['n_photos']['trainval']} trainval, {r['n_photos']['test_seen']} test seen, "
             f"{r['n_photos']['test_unseen']} test unseen. Backbone weights: {r['backbone_weights']}. "
             + _input_size(r) +
             f"Selected on validation classes: {r['selected_epoch']} epochs, γ = {r['calibration']:.4g}.", "",
             "| | U | S | H | CZSL | AUSUC |", "|---|---:|---:|---:|---:|---:|",
             "| ours (γ from validation) | " + " | ".join(_pct(m[k]) for k in METRICS) + " |"]
    if pub is not None:
        lines.append(f"| published: {pub.get('source', '')} | "
                     + " | ".join("–" if pub.get(k) is None else f"{pub[k]:.1f}" for k in METRICS) + " |")
    else:
        lines.append("| published | – | – | – | – | – |")
    lines += ["", f"Uncalibrated (γ = 0): U {_pct(m['U_uncalibrated'])}, S {_pct(m['S_uncalibrated'])}, "
              f"H {_pct(m['H_uncalibrated'])}.", "", f"Bundle: `{r['bundle']}`", "",
              f"Time: {r['seconds']['extract']} s feature extraction, {r['seconds']['train_and_evaluate']} s training and evaluation.",
              "", "## Commands", "", "```bash", *r["commands"], "```", "", "## Settings", "", "```json",
              json.dumps(r["train"], indent=2), "```"]
    if r["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"
