"""Model bundle I/O: one folder, identical on disk, on the Hub and inside the package.

    config.json        ModelConfig (format version, method, dims, names, seen mask, calibration ...)
    model.safetensors  every weight and buffer; never pickle (with ``train --finetune-backbone``
                       also the backbone's, named ``backbone.*``; config.backbone's tag says so)
    classes.csv        name, origin (seen | unseen | user), attribute values
    README.md          Hugging Face model card
    ausuc.png          optional: the card's plot of the selected epoch's validation seen-unseen curve
                       (written with the card by `dkgzsl train`; a bundle loads without it)

A slim bundle's model.safetensors leaves out the parts only training reads (critic, teacher, ...);
config.json's ``omitted_parts`` names them (models/parts.py, `dkgzsl models slim`).

Loading checks the format version, the weights' hash, every tensor's name and shape, finiteness,
and that classes.csv agrees with config.json, and says exactly what is wrong. It builds the model on the
meta device and assigns the file's tensors (no random initialisation that the weights then overwrite).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write_bytes
from .classcsv import ClassTable, read_class_csv, write_class_csv
from .config import FORMAT_VERSION, ModelConfig
from .errors import BundleError, DataError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CLASSES_FILE = "classes.csv"
CARD_FILE = "README.md"
CURVE_FILE = "ausuc.png"  # optional: the model card's AUSUC plot; load_bundle never reads it


@dataclass
class Bundle:
    config: ModelConfig
    model: "object"  # the method's model (models/methods); typed loosely so importing this module stays torch-free
    origins: list[str]  # per class: seen | unseen | user
    path: Path | None = None
    backbone_state: dict | None = None  # a fine-tuned backbone's weights (models/backbone.py), else None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_card(config: ModelConfig, origins: list[str]) -> str:
    """A Hub model card: YAML metadata (huggingface_hub's ModelCardData) + what the model is and how it was made."""
    from huggingface_hub import ModelCard, ModelCardData

    from .backbone import is_finetuned

    base = config.backbone.name if config.backbone else "precomputed features"
    n_seen = origins.count("seen")
    prov = config.provenance
    data = ModelCardData(
        library_name="dkgzsl", license=prov.get("license", "apache-2.0"),
        tags=["zero-shot-image-classification", "generalized-zero-shot-learning", "dkgzsl"],
        base_model=f"timm/{config.backbone.name}" if config.backbone else None,
        datasets=[prov["dataset"]] if prov.get("dataset") else None)
    lines = [
        f"# dkgzsl bundle: {config.method} over {base}",
        "",
        f"{len(config.class_names)} classes ({n_seen} seen in training, "
        f"{origins.count('unseen')} unseen, {origins.count('user')} user-added), "
        f"{config.attr_dim} attributes, feature dim {config.feature_dim}, calibration γ = {config.calibration:.4g}.",
        "",
        f"Method `{config.method}` on {config.feature_kind} backbone features"
        + (f", options {json.dumps(config.options, sort_keys=True)}" if config.options else "") + ".",
        "",
        *([f"The backbone was fine-tuned with the head ({config.backbone.pretrained_tag}); its weights are the "
           "`backbone.*` tensors of model.safetensors, and dkgzsl runs them instead of the stock ones.", ""]
          if is_finetuned(config.backbone) else []),
        "Load with `dkgzsl classify --model <this folder or hf-hub:ORG/NAME>`.",
        "",
        "## Provenance",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in sorted(prov.items())]
    lines += _reproducibility(prov)
    body = "\n".join(lines) + "\n"
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def _reproducibility(prov: dict) -> list[str]:
    """What a rebuild reproduces (README "Reproducibility"), from the conditions the run recorded."""
    if "threads" not in prov:  # trained before the conditions were recorded: promise nothing
        return []
    return [
        "",
        "## Reproducing it",
        "",
        f"Training again with the same data (data_sha256), options and seed is byte-identical "
        f"(same model.safetensors) when it runs with torch {prov.get('torch')}, CPU capability "
        f"{prov.get('cpu_capability')}, {prov['threads']} training threads (`dkgzsl train --threads "
        f"{prov['threads']}`) on {prov.get('device', 'cpu')}, as recorded above. Another torch version, "
        "instruction set (AVX2 vs AVX512) or thread count changes the float32 rounding: the file differs, "
        "and the selected epoch and γ may too; accuracy agrees within noise (for dkgzsl's demo model, "
        "within 2.5 points of S, U and H on 960 test photos). Compare with `dkgzsl evaluate`, not by hash.",
    ]


def save_bundle(model, config: ModelConfig, directory, origins: list[str] | None = None,
                backbone_state: dict | None = None) -> Path:
    """Write a bundle folder; every file is written atomically, weights first, config last.

    ``backbone_state``: the weights of a backbone fine-tuned with the head; stored as ``backbone.*`` tensors
    and named in ``config.backbone`` (its tag, with their digest). Without it the files are as before."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    origins = origins or ["seen" if s else "unseen" for s in config.seen]
    _check_config(config, origins, directory / CONFIG_FILE)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if backbone_state is not None:
        from .backbone import BUNDLE_PREFIX, finetuned_config

        if config.backbone is None or any(k.startswith(BUNDLE_PREFIX) for k in tensors):
            raise BundleError(f"{directory}: backbone weights need a config.backbone, and a model without "
                              f"{BUNDLE_PREFIX}* tensors of its own")
        config.backbone = finetuned_config(config.backbone, backbone_state)
        tensors.update({BUNDLE_PREFIX + k: v.detach().cpu().contiguous() for k, v in backbone_state.items()})
    # one metadata key: safetensors writes its metadata map in arbitrary order, and bundles must be
    # byte-reproducible (same model, same files); the format version lives in config.json
    blob = st_save(tensors, metadata={"format": "pt"})
    config.weights_sha256 = sha256_bytes(blob)
    atomic_write_bytes(directory / WEIGHTS_FILE, blob)
    write_class_csv(ClassTable(list(config.class_names), list(origins), list(config.attribute_names),
                               tensors["class_attributes"].numpy()), directory / CLASSES_FILE)
    atomic_write_bytes(directory / CARD_FILE, model_card(config, origins).encode("utf-8"))
    data = json.dumps(config.to_dict(), indent=2, ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(directory / CONFIG_FILE, data)
    return directory


def _check_config(config: ModelConfig, origins: list[str], where: Path) -> None:
    from .methods import FEATURE_KINDS, canonical_method

    canonical_method(config.method, str(where))  # an unimplemented or unknown method: refused, never guessed
    problems = []
    if config.feature_kind not in FEATURE_KINDS:
        problems.append(f"feature_kind {config.feature_kind!r} is not one of {', '.join(FEATURE_KINDS)}")
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
    from .openset import check_records

    problems += check_records(config)
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


def load_bundle(directory, device: str = "cpu", *, init: str = "meta") -> Bundle:
    """Load and verify a bundle; raise BundleError naming the first problem found.

    ``init``: "meta" builds the model on the meta device and assigns the file's tensors (models/parts.py);
    "random", the old path kept for comparison (benchmarks/bundle_load.py, tests), initialises it at random
    and copies them over. Both give the same model bit for bit. A slim bundle (config ``omitted_parts``) is
    built without the parts it leaves out."""
    from safetensors.torch import load as st_load
    import torch

    from .parts import assign, build

    if init not in ("meta", "random"):
        raise ValueError(f"init must be 'meta' or 'random', not {init!r}")
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

    table = _read_classes(directory, config)
    origins = table.origins
    _check_config(config, origins, directory / CONFIG_FILE)
    tensors, backbone_state = _split_backbone(tensors, config, wpath)
    model = build(config, str(directory / CONFIG_FILE), meta=init == "meta")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"unexpected tensors {', '.join(unexpected[:6])}")
        if config.omitted_parts:
            parts.append(f"{CONFIG_FILE} says this slim bundle leaves out {', '.join(config.omitted_parts)}")
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
    if init != "meta" or not assign(model, tensors):  # a tensor the file does not hold: built the old way
        model = build(config, str(directory / CONFIG_FILE))
        model.load_state_dict(tensors, strict=True)
    if not torch.equal(torch.from_numpy(table.values), model.class_attributes):
        bad = int((torch.from_numpy(table.values) != model.class_attributes).any(dim=1).nonzero()[0])
        raise BundleError(f"{directory / CLASSES_FILE}: attribute values of class {config.class_names[bad]!r} "
                          f"differ from {WEIGHTS_FILE}; the bundle was edited by hand or is corrupt.")
    model.eval().to(device)
    return Bundle(config=config, model=model, origins=origins, path=directory, backbone_state=backbone_state)


def _split_backbone(tensors: dict, config: ModelConfig, wpath: Path) -> tuple[dict, dict | None]:
    """(the model's tensors, the fine-tuned backbone's weights or None); BundleError when the ``backbone.*``
    tensors and config.backbone's tag disagree (one without the other, or other weights than it names)."""
    from .backbone import BUNDLE_PREFIX, check_finetuned_state, is_finetuned

    state = {k[len(BUNDLE_PREFIX):]: v for k, v in tensors.items() if k.startswith(BUNDLE_PREFIX)}
    if not state and not is_finetuned(config.backbone):
        return tensors, None
    if not state:
        raise BundleError(f"{wpath}: {CONFIG_FILE} says the backbone was fine-tuned in this bundle, but the file "
                          f"holds no {BUNDLE_PREFIX}* tensors; re-download or re-export the bundle.")
    if not is_finetuned(config.backbone):
        raise BundleError(f"{wpath}: holds {BUNDLE_PREFIX}* tensors, but {CONFIG_FILE} names no fine-tuned "
                          "backbone; the bundle was edited by hand or is corrupt.")
    check_finetuned_state(config.backbone, state, str(wpath))
    return {k: v for k, v in tensors.items() if not k.startswith(BUNDLE_PREFIX)}, state


def _read_classes(directory: Path, config: ModelConfig) -> ClassTable:
    path = directory / CLASSES_FILE
    if not path.is_file():
        raise BundleError(f"{path} is missing; re-download or re-export the bundle.")
    try:
        table = read_class_csv(path, attribute_names=config.attribute_names, require_origin=True)
    except DataError as e:
        raise BundleError(str(e)) from None
    if table.names != config.class_names:
        raise BundleError(f"{path}: class names or their order differ from {CONFIG_FILE} "
                          f"({len(table.names)} rows vs {config.num_classes} classes).")
    if [o == "seen" for o in table.origins] != list(config.seen):
        raise BundleError(f"{path}: origins disagree with the seen mask in {CONFIG_FILE}.")
    return table
