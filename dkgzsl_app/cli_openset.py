"""``dkgzsl calibrate-openset``: fit a bundle's open-set threshold and confidence temperature on photos.

``dkgzsl train`` fits both for the bundles it writes (models/openset.py); this command gives them to a bundle
that has none (or refits them), from photos of the model's SEEN classes only: the threshold keeps ``--keep``
of them, and when every photo's class can be read from its path (a class-named folder, as ``dkgzsl demo
--training`` writes, or ``<class>__NNNN.jpg``, as ``dkgzsl demo`` writes) the confidence's temperature is
fitted too. Only config.json changes: the weights and their hash stay as they were.

Registered on the main app by cli.py; heavy imports happen inside the command.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .cli_util import warn as _warn


def photo_labels(paths: list[str], class_names: list[str]) -> list[int] | None:
    """Class indices read from the paths (the parent folder's name, else the file name before ``__``), or
    None when some photo's class cannot be read."""
    index = {n: i for i, n in enumerate(class_names)}
    out = []
    for p in paths:
        path = Path(p)
        name = path.parent.name if path.parent.name in index else path.name.split("__")[0]
        if name not in index:
            return None
        out.append(index[name])
    return out


def write_records(folder: Path, open_set: dict, confidence: dict | None) -> Path:
    """Put the records into ``folder``'s config.json (atomically, written as save_bundle writes it)."""
    from .models.atomic import atomic_write_bytes
    from .models.bundle import CONFIG_FILE, load_config

    config = load_config(folder)
    config.open_set = open_set
    if confidence is not None:
        config.confidence = confidence
    path = folder / CONFIG_FILE
    atomic_write_bytes(path, json.dumps(config.to_dict(), indent=2, ensure_ascii=False).encode("utf-8"))
    return path


def calibrate_openset(
    bundle: str = typer.Argument(..., help="The bundle folder to write into (a folder, or local-dir:PATH)."),
    images: list[str] = typer.Option(..., "--images", help="Photos of the model's SEEN classes (files, folders, globs; repeatable): held out from training."),
    keep: float = typer.Option(0.95, "--keep", min=0.5, max=1.0, help="Share of these photos the threshold keeps (the rest would be flagged unknown)."),
    score: Optional[str] = typer.Option(None, "--score", help="Open-set score: prototype, max_logit, energy, msp or attribute_cosine (default: the method's)."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into sub-folders (class folders)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(32, min=1, help="Photos per forward pass."),
    fitted_on: Optional[str] = typer.Option(None, "--fitted-on", help="What the photos are, for the bundle's record (default: how many photos)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be written; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the fitted records as JSON."),
) -> None:
    """Fit a bundle's open-set threshold ("unknown" photos) and confidence temperature on photos of its seen classes."""
    from .cli_util import fail
    from .models.errors import DataError, UsageError

    if bundle.startswith("hf-hub:"):
        raise UsageError("calibrate-openset writes into a bundle folder: download the bundle (dkgzsl models "
                         "download), copy its folder, and give that folder.")
    folder = Path(bundle[len("local-dir:"):] if bundle.startswith("local-dir:") else bundle)
    if not folder.is_dir():
        fail(f"{folder}: no such bundle folder.", 1)
    from .classify import Classifier, bundle_backbone, pick_device
    from .images import collect_images
    from .models.bundle import load_bundle
    from .models.openset import fit_records
    from .progress import photo_progress

    found = collect_images(list(images), recursive)
    for w in found.warnings:
        _warn(w)
    paths = [str(p) for p in found.images]
    if not paths:
        fail("no photos to fit the threshold on.", 4)
    loaded = load_bundle(folder)
    clf = Classifier(loaded, bundle_backbone(loaded), pick_device(device), user_classes=False, precision="fp32")
    from .cache import FeatureCache
    from .locations import feature_cache_file

    cache = FeatureCache(feature_cache_file(), warn=_warn)  # as classify: photos seen before skip the backbone
    with photo_progress(len(paths), label="scoring") as tick:
        got = clf.features(paths, batch_size=batch_size, on_batch=tick, cache=cache)
    for i, reason in sorted(got.errors.items()):
        _warn(f"{paths[i]}: {reason} (skipped)")
    order = sorted(got.features)
    if not order:
        fail("none of the photos could be read.", 1)
    import torch

    raw = torch.stack([got.features[i] for i in order])
    labels = photo_labels([paths[i] for i in order], loaded.config.class_names)
    fitted_on = fitted_on or f"{len(order)} photo(s) of seen classes given to dkgzsl calibrate-openset"
    try:
        open_set, conf = fit_records(clf.model, loaded.config, raw.to(clf.device), labels, keep, score, fitted_on)
    except ValueError as e:
        raise DataError(str(e)) from None
    if labels is None:
        _warn("the photos' classes cannot be read from their paths (class-named folders or CLASS__N.jpg): the "
              "confidence temperature is not fitted.")
    if not dry_run:
        write_records(folder, open_set, conf)
    if as_json:
        typer.echo(json.dumps({"open_set": open_set, "confidence": conf}, indent=2))
        return
    typer.echo(f"open-set score {open_set['score']}: threshold {open_set['threshold']:.6g} keeps "
               f"{keep:.0%} of {open_set['photos']} photo(s)"
               + (f"; confidence temperature {conf['temperature']:.4g}" if conf else "")
               + ("" if dry_run else f" → {folder / 'config.json'}"))


def register(app: typer.Typer) -> None:
    app.command("calibrate-openset")(calibrate_openset)
