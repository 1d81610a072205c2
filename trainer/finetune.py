"""Fine-tuning: a training run that starts from a bundle's weights instead of a random initialisation.

``dkgzsl train --from SOURCE`` continues a bundle on new photos or new classes. What carries over:

* the networks' structure: method, widths (hidden, critic hidden, embedding) and the method's options
  (DKGZSL's fde/ara/ktn/mask/attention width) are the bundle's (``adopt_settings``); a run whose settings
  say otherwise is refused, never silently reshaped;
* the attribute vocabulary (names, in order), feature kind (pooled/regions), feature dim and backbone: the
  new data must match them (``check_data``), since the weights only mean something in that space;
* every weight that does not depend on the class list (generator with KTN/MFU, critic, SOVR, the
  teacher's and student's embeddings E, the OOD head's bias, ε) is copied; the class-dependent outputs are
  copied row by row for classes the bundle and the new data share, matched by name: the teacher head's
  rows (seen classes, by seen-class name), the student head's rows C_s (all classes) and the OOD head's
  input columns (one per class). New classes keep their fresh random rows (``init_from_bundle``);
* the feature scaling (``feature_min``/``feature_scale``): the new features live in the bundle's space, so
  they are scaled as the bundle scales them, and new data does not move it (values may fall outside
  [0, 1]); the class attribute matrix is the new data's.

The teacher warm-up runs as usual, from the copied weights (``teacher_epochs`` 0 skips it, leaving new
seen classes' teacher rows at their random init). The copy draws no random numbers: the model is built
(and randomly initialised) exactly as without ``--from``, then overwritten, so a run without ``--from``
is unchanged bit for bit. The run's TrainConfig pins the source folder and its weights' SHA-256
(``init_from``, ``init_sha256``): ``--resume`` with another source, or after the source's weights
changed, is refused.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch

from ..models.bundle import WEIGHTS_FILE, Bundle, load_bundle, load_config
from ..models.config import ModelConfig
from ..models.errors import BundleError, DataError, UsageError
from ..models.methods import canonical_method
from .cegzsl import settings_from_generator
from .config import TrainConfig

# Tensors whose size follows the class list: name -> (which list, axis). "seen": the teacher's outputs, one
# per seen class; "all": one per class. Shared by every method (they are ZSLModel's).
CLASS_AXES = {
    "teacher.head.weight": ("seen", 0), "teacher.head.bias": ("seen", 0),  # (S, E), (S,)
    "student.head.weight": ("all", 0), "student.head.bias": ("all", 0),  # (C, E), (C,)
    "ood_head.weight": ("all", 1),  # (2, C): H reads softmax ψ(x) over the classes
}
OWN_TENSORS = ("class_attributes",)  # (C, A): always the new data's


def settings_from_bundle(config: ModelConfig) -> dict:
    """The TrainConfig fields that fix a bundle's networks: method, widths, the method's options and the
    generator (f-CLSWGAN or CE-GZSL with its widths)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    out = {"method": canonical_method(config.method), "hidden_dim": config.generator.hidden_dim,
           "critic_hidden_dim": config.generator.critic_hidden_dim, "embed_dim": config.head.embed_dim}
    out.update({k: v for k, v in config.options.items() if k in fields})
    out.update(settings_from_generator(config.generator))  # the generator choice and CE-GZSL's widths
    return out


def adopt_settings(cfg, config: ModelConfig, explicit=frozenset(), where: str = "--from"):
    """``cfg`` with the bundle's structural settings; a field in ``explicit`` (set by the user) that differs
    from the bundle's is refused (UsageError naming it). ``explicit`` of every field = check only. A slim
    bundle (models/parts.py) is refused: it lacks the training-only parts a run continues from."""
    if config.omitted_parts:
        raise BundleError(f"{where} is a slim bundle (for inference): it leaves out {', '.join(config.omitted_parts)}, "
                          "which fine-tuning continues from. Fine-tune from the full bundle it was made from "
                          "(`dkgzsl push --full` publishes one).")
    changes, wrong = {}, []
    for name, value in settings_from_bundle(config).items():
        mine = getattr(cfg, name)
        if name == "method":
            mine = canonical_method(mine)
        if mine == value:
            continue
        if name in explicit:
            wrong.append(f"{name} {mine!r} (--{name.replace('_', '-')}) where the bundle has {value!r}")
        changes[name] = value
    if wrong:
        raise UsageError(f"{where}: a fine-tuned model keeps its source's networks, but this run asks for "
                         + "; ".join(wrong) + ". Drop those options (the bundle's values are used), or train "
                         "a new model without --from.")
    return dataclasses.replace(cfg, **changes) if changes else cfg


def attribute_difference(ours: list[str], theirs: list[str]) -> str:
    """How the new data's attribute names ``ours`` differ from the bundle's ``theirs`` ('' when equal)."""
    if list(ours) == list(theirs):
        return ""
    missing = [a for a in theirs if a not in set(ours)]
    extra = [a for a in ours if a not in set(theirs)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} the bundle has ({_names(missing)})")
    if extra:
        parts.append(f"{len(extra)} the bundle does not know ({_names(extra)})")
    if not parts:
        moved = [f"{a!r} at {i} (bundle: {theirs.index(a)})" for i, a in enumerate(ours) if theirs[i] != a]
        parts.append(f"same names in another order: {', '.join(moved[:5])}" + (" …" if len(moved) > 5 else ""))
    return "; ".join(parts)


def _names(names: list[str], limit: int = 8) -> str:
    return ", ".join(map(repr, names[:limit])) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_data(fs, config: ModelConfig, backbone, where: str) -> None:
    """Refuse features that do not live in the bundle's space: attribute vocabulary (names, in order),
    feature kind, feature dim and (for photos) backbone. DataError saying what differs."""
    diff = attribute_difference(list(fs.attribute_names), list(config.attribute_names))
    if diff:
        raise DataError(f"{fs.source}: its attributes differ from those of the bundle {where}: {diff}. A "
                        "fine-tuned model keeps its source's attribute vocabulary: give the classes the same "
                        "attribute columns in the same order.")
    if fs.kind != config.feature_kind:
        raise DataError(f"{fs.source}: {fs.kind} features, but the bundle {where} consumes {config.feature_kind} "
                        "features; extract the kind the bundle was trained on.")
    dim = int(fs.features.shape[-1])
    if dim != config.feature_dim:
        raise DataError(f"{fs.source}: feature dim {dim}, but the bundle {where} works on {config.feature_dim}; "
                        "the features must come from the same backbone as the bundle's.")
    if backbone is not None and config.backbone is not None and backbone.name != config.backbone.name:
        raise DataError(f"{fs.source}: features of backbone {backbone.name}, but the bundle {where} was trained "
                        f"on {config.backbone.name}; extract with its backbone (--backbone {config.backbone.name}).")
    if backbone is not None and config.backbone is None:
        raise DataError(f"the bundle {where} was trained on precomputed features (it records no backbone), so it "
                        "cannot continue on photos; fine-tune it with --features from the same extractor.")


def prepare(init_from, source: str | None, fs, cfg, backbone):
    """Check a fine-tuning run before it starts. ``init_from``: a Bundle or a bundle folder.

    ``cfg.method`` must be the bundle's; its widths and method options are replaced by the bundle's
    (``adopt_settings``). Returns (that cfg, pinned to the source: ``init_from`` folder and ``init_sha256``;
    the backbone the new bundle records: ``backbone``, else the source's; the ``finetuned_from`` record).
    """
    bundle = init_from if isinstance(init_from, Bundle) else load_bundle(init_from)
    if bundle.path is None:
        raise BundleError("--from: the bundle was not loaded from a folder; save it (save_bundle) and give its folder.")
    folder = Path(bundle.path).resolve()
    where = source or f"local-dir:{folder}"
    cfg = adopt_settings(cfg, bundle.config, explicit={"method"}, where=where)
    check_data(fs, bundle.config, backbone, where)
    sha = weights_sha256(folder)
    cfg = dataclasses.replace(cfg, init_from=str(folder), init_sha256=sha)
    names = set(bundle.config.class_names)
    kept = sum(n in names for n in fs.class_names)
    record = {"source": where, "weights_sha256": sha, "method": bundle.config.method,
              "classes_kept": kept, "classes_new": len(fs.class_names) - kept}
    return cfg, backbone if backbone is not None else bundle.config.backbone, record


def weights_sha256(folder: Path) -> str:
    """SHA-256 of a bundle folder's weights file (what a fine-tuning run pins)."""
    from ..models.bundle import sha256_file

    return sha256_file(Path(folder) / WEIGHTS_FILE)


def load_source(folder, sha: str) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The pinned source bundle's config and weights; BundleError if its weights changed since the run began."""
    from safetensors.torch import load as st_load

    folder = Path(folder)
    config = load_config(folder)
    path = folder / WEIGHTS_FILE
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: cannot read the bundle this run starts from ({e.strerror or e}).") from None
    if hashlib.sha256(blob).hexdigest() != sha:
        raise BundleError(f"{path} changed since this run started from it (weights SHA-256 {sha[:12]}…); "
                          "resume needs the same source bundle: restore it, or train into a new --out folder.")
    from ..models.backbone import BUNDLE_PREFIX

    # a fine-tuned backbone's tensors are not the model's (the app extracts the new photos with them)
    return config, {k: v for k, v in st_load(blob).items() if not k.startswith(BUNDLE_PREFIX)}


def init_model(model, cfg, task) -> dict:
    """``model`` (freshly built for ``task``) from the run's pinned source bundle (``cfg.init_from``)."""
    config, state = load_source(cfg.init_from, cfg.init_sha256)
    names = list(task.class_names)
    seen = [names[i] for i in task.seen_classes.tolist()]
    return init_from_bundle(model, config, state, names, seen)


def init_from_bundle(model, config: ModelConfig, state: dict[str, torch.Tensor], class_names: list[str],
                     seen_names: list[str]) -> dict:
    """Copy a bundle's weights into ``model``, built for the classes ``class_names`` (seen ones:
    ``seen_names``, in teacher-output order). Class-independent tensors are copied whole; class rows (and
    the OOD head's class columns) for names the bundle knows; the rest keep their fresh values. Draws no
    random numbers. Returns what was copied: {"copied": [...tensor names], "classes_kept", "classes_new",
    "seen_kept", "seen_new"}."""
    own = model.state_dict()
    if model.options_dict() != dict(config.options):
        raise UsageError(f"the bundle's {config.method} options {config.options} differ from this run's "
                         f"{model.options_dict()}; a fine-tuned model keeps its source's networks.")
    only_own, only_theirs = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if only_own or only_theirs:
        raise UsageError(f"the bundle's networks do not fit this run's (tensors only here: {only_own[:4]}; only "
                         f"in the bundle: {only_theirs[:4]}); a fine-tuned model keeps its source's networks.")
    src_all = {n: i for i, n in enumerate(config.class_names)}
    src_seen = {n: i for i, n in enumerate(n for n, s in zip(config.class_names, config.seen) if s)}
    pairs = {"all": _pairs(class_names, src_all), "seen": _pairs(seen_names, src_seen)}
    copied = []
    with torch.no_grad():
        for name, dst in own.items():
            if name in OWN_TENSORS:
                continue
            src = state[name].to(dst.device, dst.dtype)
            if name in CLASS_AXES:
                which, axis = CLASS_AXES[name]
                ours, theirs = pairs[which]
                if len(ours):
                    dst.index_copy_(axis, ours.to(dst.device), src.index_select(axis, theirs.to(src.device)))
            elif src.shape != dst.shape:
                raise UsageError(f"the bundle's tensor {name} has shape {tuple(src.shape)}, this run's "
                                 f"{tuple(dst.shape)}; a fine-tuned model keeps its source's networks.")
            else:
                dst.copy_(src)
            copied.append(name)
    kept, seen_kept = len(pairs["all"][0]), len(pairs["seen"][0])
    return {"copied": copied, "classes_kept": kept, "classes_new": len(class_names) - kept,
            "seen_kept": seen_kept, "seen_new": len(seen_names) - seen_kept}


def _pairs(names: list[str], source: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions in ``names``, positions in the source) of the names the source knows."""
    ours = [i for i, n in enumerate(names) if n in source]
    return torch.tensor(ours, dtype=torch.long), torch.tensor([source[names[i]] for i in ours], dtype=torch.long)
