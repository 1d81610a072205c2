"""Model bundle I/O: one folder, identical on disk, on the Hub and inside the package.

    config.json        ModelConfig (format version, method, dims, names, seen mask, calibration ...)
    model.safetensors  every weight and buffer; never pickle
    classes.csv        name, origin (seen | unseen | user), attribute values
    README.md          Hugging Face model card

Loading checks the format version, the weights' hash, every tensor's name and shape, finiteness,
and that classes.csv agrees with config.json, and says exactly what is wrong.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import FORMAT_VERSION, METHODS, ModelConfig
from .errors import BundleError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CLASSES_FILE = "classes.csv"
CARD_FILE = "README.md"


@dataclass
class Bundle:
    config: ModelConfig
    model: "object"  # ZSLModel; typed loosely so importing this module stays torch-free
    origins: list[str]  # per class: seen | unseen | user
    path: Path | None = None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace: readers see old or new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _classes_csv(config: ModelConfig, origins: list[str], attributes) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "origin", *config.attribute_names])
    for name, origin, row in zip(config.class_names, origins, attributes.tolist()):
        w.writerow([name, origin, *(repr(float(v)) for v in row)])
    return buf.getvalue().encode("utf-8")


def model_card(config: ModelConfig, origins: list[str]) -> str:
    """A Hub model card: YAML front matter + what the model is and how it was made."""
    base = config.backbone.name if config.backbone else "precomputed features"
    n_seen = origins.count("seen")
    prov = config.provenance
    lines = [
        "---",
        "library_name: dkgzsl",
        f"license: {prov.get('license', 'apache-2.0')}",
        "tags: [zero-shot-image-classification, generalized-zero-shot-learning, dkgzsl]",
    ]
    if config.backbone:
        lines.append(f"base_model: timm/{config.backbone.name}")
    if prov.get("dataset"):
        lines.append(f"datasets: [{prov['dataset']}]")
    lines += [
        "---",
        f"# dkgzsl bundle: {config.method} over {base}",
        "",
        f"{len(config.class_names)} classes ({n_seen} seen in training, "
        f"{origins.count('unseen')} unseen, {origins.count('user')} user-added), "
        f"{config.attr_dim} attributes, feature dim {config.feature_dim}, calibration γ = {config.calibration:.4g}.",
        "",
        "Load with `dkgzsl classify --model <this folder or hf-hub:ORG/NAME>`.",
        "",
        "## Provenance",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in sorted(prov.items())]
    return "\n".join(lines) + "\n"


def save_bundle(model, config: ModelConfig, directory, origins: list[str] | None = None) -> Path:
    """Write a bundle folder; every file is written atomically, weights first, config last."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    origins = origins or ["seen" if s else "unseen" for s in config.seen]
    _check_config(config, origins, directory / CONFIG_FILE)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors, metadata={"format": "pt", "dkgzsl_format_version": str(FORMAT_VERSION)})
    config.weights_sha256 = sha256_bytes(blob)
    atomic_write_bytes(directory / WEIGHTS_FILE, blob)
    atomic_write_bytes(directory / CLASSES_FILE, _classes_csv(config, origins, tensors["class_attributes"]))
    atomic_write_bytes(directory / CARD_FILE, model_card(config, origins).encode("utf-8"))
    data = json.dumps(config.to_dict(), indent=2, ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(directory / CONFIG_FILE, data)
    return directory


def _check_config(config: ModelConfig, origins: list[str], where: Path) -> None:
    problems = []
    if config.method not in METHODS:
        problems.append(f"method {config.method!r} is not one of {', '.join(METHODS)}")
    if len(config.seen) != len(config.class_names):
        problems.append(f"'seen' has {len(config.seen)} entries for {len(config.class_names)} classes")
    if len(set(config.class_names)) != len(config.class_names):
        dup = sorted({n for n in config.class_names if config.class_names.count(n) > 1})
        problems.append(f"duplicate class names: {', '.join(dup[:5])}")
    if len(origins) != len(config.class_names) or any(o not in ("seen", "unseen", "user") for o in origins):
        problems.append("class origins must be one of seen/unseen/user, one per class")
    if not 0 < config.num_seen <= len(config.class_names):
        problems.append("a bundle needs at least one seen class")
    if not math.isfinite(config.calibration):
        problems.append(f"calibration {config.calibration} is not a finite number")
    if problems:
        raise BundleError(f"{where}: " + "; ".join(problems))


def load_config(directory) -> ModelConfig:
    """Read and validate config.json only (cheap: no torch)."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise BundleError(f"{directory}: no such bundle folder. Give a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}.")
    if not path.is_file():
        raise BundleError(f"{path} is missing: {directory} is not a dkgzsl bundle.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); re-download or re-export the bundle.") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object.")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version!r}, but this dkgzsl reads version {FORMAT_VERSION}. "
            "Upgrade dkgzsl (pip install -U dkgzsl) or re-export the bundle with this version.")
    try:
        return ModelConfig.from_dict(data)
    except (KeyError, TypeError) as e:
        raise BundleError(f"{path}: malformed config ({e}).") from None


def load_bundle(directory, device: str = "cpu") -> Bundle:
    """Load and verify a bundle; raise BundleError naming the first problem found."""
    from safetensors.torch import load as st_load
    import torch

    from .networks import ZSLModel

    directory = Path(directory)
    config = load_config(directory)
    wpath = directory / WEIGHTS_FILE
    if not wpath.is_file():
        raise BundleError(f"{wpath} is missing; re-download or re-export the bundle.")
    blob = wpath.read_bytes()
    if config.weights_sha256 and sha256_bytes(blob) != config.weights_sha256:
        raise BundleError(
            f"{wpath} does not match the weights_sha256 in {CONFIG_FILE}: the file is corrupt or was "
            "modified. Re-download the bundle (dkgzsl models download) or re-export it.")
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises several error types on bad headers
        raise BundleError(f"{wpath} is not a readable safetensors file ({e}).") from None

    origins = _read_origins(directory, config)
    _check_config(config, origins, directory / CONFIG_FILE)
    model = ZSLModel.from_config(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"unexpected tensors {', '.join(unexpected[:6])}")
        raise BundleError(f"{wpath} does not fit {CONFIG_FILE}: " + "; ".join(parts) + ".")
    for name, ref in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise BundleError(
                f"{wpath}: tensor {name} has shape {tuple(got.shape)} but {CONFIG_FILE} implies "
                f"{tuple(ref.shape)} (classes={config.num_classes}, seen={config.num_seen}, "
                f"attributes={config.attr_dim}, feature_dim={config.feature_dim}).")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise BundleError(f"{wpath}: tensor {name} holds NaN or inf values; the bundle is broken.")
    model.load_state_dict(tensors, strict=True)
    _check_classes_csv(directory, config, model.class_attributes)
    model.eval().to(device)
    return Bundle(config=config, model=model, origins=origins, path=directory)


def _read_rows(directory: Path) -> list[list[str]]:
    path = directory / CLASSES_FILE
    if not path.is_file():
        raise BundleError(f"{path} is missing; re-download or re-export the bundle.")
    try:
        return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise BundleError(f"{path} is not a readable UTF-8 CSV ({e}).") from None


def _read_origins(directory: Path, config: ModelConfig) -> list[str]:
    rows = _read_rows(directory)
    path = directory / CLASSES_FILE
    header = ["name", "origin", *config.attribute_names]
    if not rows or rows[0] != header:
        raise BundleError(f"{path}: header does not match {CONFIG_FILE}'s attribute names.")
    names = [r[0] for r in rows[1:] if r]
    if names != config.class_names:
        raise BundleError(f"{path}: class names/order differ from {CONFIG_FILE} "
                          f"({len(names)} rows vs {config.num_classes} classes).")
    return [r[1] for r in rows[1:] if r]


def _check_classes_csv(directory: Path, config: ModelConfig, attributes) -> None:
    path = directory / CLASSES_FILE
    rows = [r for r in _read_rows(directory)[1:] if r]
    for i, (row, ref) in enumerate(zip(rows, attributes.tolist()), start=2):
        try:
            values = [float(v) for v in row[2:]]
        except ValueError:
            raise BundleError(f"{path} row {i}: non-numeric attribute value.") from None
        if len(values) != len(ref) or any(abs(a - b) > 1e-6 * max(1.0, abs(b)) for a, b in zip(values, ref)):
            raise BundleError(f"{path} row {i} ({row[0]}): attribute values differ from {WEIGHTS_FILE}.")
    seen_from_origin = [o == "seen" for o in (r[1] for r in rows)]
    if seen_from_origin != list(config.seen):
        raise BundleError(f"{path}: origins disagree with the seen mask in {CONFIG_FILE}.")
