"""Slim bundles: the same model without the parts only training reads (models/parts.py says which, per method).

``dkgzsl models slim BUNDLE OUT`` writes one beside the full bundle; ``dkgzsl push`` pushes one unless
``--full``. A slim bundle classifies, evaluates, scores open-set photos, explains and adds classes exactly
as its full bundle does (same tensors, same results bit for bit); it cannot be fine-tuned (``train --from``
refuses it, naming what it lacks). It is a bundle of its own: its weights have their own SHA-256, so user
classes added to the full bundle are not its user classes.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .models.bundle import CARD_FILE, CLASSES_FILE, CONFIG_FILE, WEIGHTS_FILE, load_bundle, save_bundle


def write_slim(src, dest, card: bool = True) -> dict:
    """Write the slim bundle of the bundle folder ``src`` to ``dest`` (may be ``src`` itself: rewritten in place,
    each file atomically). ``card``: refresh the model card (README.md), keeping the training record of the
    source's card. Returns {"bundle", "omitted_parts", "left_out" (parts this call removed), "weights_bytes":
    {"before", "after"}, "weights_sha256"}, and "card_warning" when the card could not be refreshed (the bundle
    is complete without it: save_bundle wrote a plain one)."""
    src, dest = Path(src), Path(dest)
    from .models.parts import slim_config_and_model

    bundle = load_bundle(src)  # verified: hash, names, shapes
    before = (src / WEIGHTS_FILE).stat().st_size
    previous = training = None
    if card:
        from .card import previous_metadata

        previous = previous_metadata(src)
        old = previous.get("dkgzsl") or {}
        training = old.get("training") if old.get("weights_sha256") == bundle.config.weights_sha256 else None
    config, left_out = slim_config_and_model(bundle)
    warning = None
    if not left_out:  # slim already, or a method whose inference reads every tensor (MSDN): the files as they are
        if src.resolve() != dest.resolve():
            dest.mkdir(parents=True, exist_ok=True)
            for name in (CONFIG_FILE, WEIGHTS_FILE, CLASSES_FILE, CARD_FILE):
                if (src / name).is_file():
                    shutil.copyfile(src / name, dest / name)
        config = bundle.config
    else:
        save_bundle(bundle.model, config, dest, origins=bundle.origins, backbone_state=bundle.backbone_state)
        if card:
            warning = _card(src, dest, training, previous)
    out = {"bundle": str(dest), "omitted_parts": list(config.omitted_parts or []), "left_out": left_out,
           "weights_bytes": {"before": before, "after": (dest / WEIGHTS_FILE).stat().st_size},
           "weights_sha256": config.weights_sha256}
    return {**out, "card_warning": warning} if warning else out


def _card(src: Path, dest: Path, training, previous) -> str | None:
    """The card of the source, refreshed for the slim bundle (and its AUSUC plot, which shows the same run);
    what went wrong, or None."""
    from .card import write_card
    from .models import bundle as files

    plot = getattr(files, "CURVE_FILE", None)
    if plot and (src / plot).is_file() and src.resolve() != dest.resolve():
        shutil.copyfile(src / plot, dest / plot)
    try:
        write_card(dest, training=training, previous=previous)
    except Exception as e:  # noqa: BLE001  (save_bundle wrote a plain card; a card problem must not lose the bundle)
        return f"{dest / CARD_FILE}: the model card was not refreshed ({e}); `dkgzsl push` writes one."
    return None
