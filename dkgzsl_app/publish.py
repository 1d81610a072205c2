"""`dkgzsl push`: a bundle that loads → exactly its four files (and the card's AUSUC plot when it has one), with
a refreshed model card, in one commit on the Hugging Face Hub. With ``with_user_classes`` the pushed bundle is a
new one whose classes include the user's (origin ``user``): the student head's fitted rows become ordinary rows
of its weights."""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .hub import BUNDLE_FILES, PushResult, _REPO, hub_token, push_folder
from .models.bundle import CLASSES_FILE, CONFIG_FILE, CURVE_FILE, WEIGHTS_FILE, load_bundle, save_bundle
from .models.errors import BundleError, UsageError


def check_repo_id(repo_id: str) -> str:
    body = repo_id[len("hf-hub:"):] if repo_id.startswith("hf-hub:") else repo_id
    if not _REPO.match(body) or "@" in body:
        raise UsageError(f"{repo_id!r} is not a Hub repository id: write ORG/NAME (your user name or an "
                         "organisation, a slash, the model's name); the branch goes in --revision.")
    return body


def push_bundle(folder: Path, repo_id: str, *, private: bool = False, revision: str = "main",
                message: str | None = None, with_user_classes: bool = False, license: str | None = None,
                say: Callable[[str], None] = lambda _m: None, full: bool = False) -> tuple[PushResult, dict]:
    """Verify ``folder``, stage the bundle to push with its card, and commit it to ``repo_id``. Returns the
    push result and a summary of what was pushed (files with sizes, classes, weights sha256, the parts a
    slim bundle leaves out). Without ``full`` the pushed bundle is slim (dkgzsl_app/slim.py)."""
    from .card import build_card, previous_metadata, shown_plot

    repo_id = check_repo_id(repo_id)
    token = hub_token()  # before any work: a missing token is the commonest failure
    bundle = load_bundle(folder)  # BundleError names the file that is wrong
    previous = previous_metadata(folder)
    old = previous.get("dkgzsl") or {}
    training = old.get("training") if old.get("weights_sha256") == bundle.config.weights_sha256 else None
    with tempfile.TemporaryDirectory(prefix="dkgzsl-push-") as tmp:
        staged = Path(tmp)
        if with_user_classes:
            _export_with_user_classes(bundle, staged)
        else:
            for name in (CONFIG_FILE, WEIGHTS_FILE, CLASSES_FILE):
                shutil.copyfile(Path(folder) / name, staged / name)
        if not full:  # inference-only: no critic, teacher ... (the card is built below)
            from .slim import write_slim

            write_slim(staged, staged, card=False)
        files = list(BUNDLE_FILES)
        if shown_plot(folder, training):  # the card's AUSUC plot, when it is the one its training record names
            shutil.copyfile(Path(folder) / CURVE_FILE, staged / CURVE_FILE)
            files.append(CURVE_FILE)
        card = build_card(staged, repo_id=repo_id, training=training, license=license, previous=previous)
        (staged / "README.md").write_text(card, encoding="utf-8")
        pushed = load_bundle(staged)  # what leaves the machine loads, card included
        sizes = {f: (staged / f).stat().st_size for f in files}
        message = message or (f"dkgzsl push: {pushed.config.method} bundle, {pushed.config.num_classes} classes "
                              f"(weights {pushed.config.weights_sha256[:12]})")
        say(f"pushing {len(sizes)} files ({sum(sizes.values()) / 1e6:.1f} MB) to hf-hub:{repo_id} ({revision})")
        result = push_folder(staged, files, repo_id, private=private, revision=revision,
                             message=message, token=token)
    summary = {"files": sizes, "classes": pushed.config.num_classes,
               "user_classes": pushed.origins.count("user"), "weights_sha256": pushed.config.weights_sha256,
               "omitted_parts": list(pushed.config.omitted_parts or [])}
    return result, summary


def _export_with_user_classes(bundle, dest: Path) -> None:
    """Write ``bundle`` plus its user classes as a new bundle in ``dest``."""
    import torch

    from .classes import with_user_classes
    from .classes.refit import AppendedHead
    from .models.parts import build

    view = with_user_classes(bundle)
    if view is bundle:
        raise UsageError(f"{bundle.path}: this model has no user classes (dkgzsl classes list --user); push "
                         "without --with-user-classes.")
    state = view.model.state_dict()
    for name, module in view.model.named_modules():
        if isinstance(module, AppendedHead):  # fitted user rows → rows of one plain Linear
            p = f"{name}." if name else ""
            for part in ("weight", "bias"):
                state[p + part] = torch.cat([state.pop(f"{p}base.{part}"), state.pop(f"{p}extra.{part}")])
    names = [n for n, o in zip(view.config.class_names, view.origins) if o == "user"]
    provenance = {**view.config.provenance,
                  "user_classes": {"added_to_weights_sha256": bundle.config.weights_sha256, "names": names}}
    config = dataclasses.replace(view.config, provenance=provenance, weights_sha256="")
    model = build(config, str(bundle.path))  # without the parts a slim source leaves out
    from .trainer.finetune import CLASS_AXES

    fresh = model.state_dict()
    for name, (_, axis) in CLASS_AXES.items():  # per-class tensors inference never reads (the OOD head H,
        have = state.get(name)                  # a training-time part): zero entries for the user classes
        if have is not None and name in fresh and have.shape != fresh[name].shape:
            pad = list(have.shape)
            pad[axis] = fresh[name].shape[axis] - have.shape[axis]
            if pad[axis] > 0:
                state[name] = torch.cat([have, have.new_zeros(pad)], dim=axis)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(f"{bundle.path}: the user classes cannot be folded into a bundle of {config.method} "
                          f"({str(e).splitlines()[0]}).") from None
    save_bundle(model, config, dest, origins=list(view.origins), backbone_state=bundle.backbone_state)
