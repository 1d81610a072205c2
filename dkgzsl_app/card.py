"""A bundle's model card (README.md), built with huggingface_hub's ModelCard / ModelCardData from what the
bundle records: config.json (method, classes, attributes, calibration, provenance: data hash, seed,
versions, threads …), classes.csv (origins), and the training record `dkgzsl train` adds (command, wall
time, hardware, the validation figures of the selected epoch), kept in the card's own metadata under
``dkgzsl.training`` so `dkgzsl push` can refresh the card without the run folder. Beside it, ``ausuc.png``:
the selected epoch's validation seen-unseen curve, drawn when `train` writes the card; the record keeps its
sha256, and the card shows it only while the file matches. Nothing is guessed: what a bundle does not
record, the card says it does not record.

    >>> write_card(folder)                         # refresh from the bundle (and its previous card)
    >>> write_card(folder, repo_id="acme/shapes")  # the card `push` uploads, with the Hub lines
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from .models.atomic import atomic_write_bytes
from .models.bundle import CARD_FILE, CLASSES_FILE, CURVE_FILE, load_config, sha256_file

PIPELINE = "zero-shot-image-classification"
_LIST_MAX = 60  # names listed per class group; the rest are in classes.csv


def command_line(ctx) -> str:
    """The command as the user typed it, rebuilt from click's context: the options given on the command
    line (or the environment), in declaration order, with their values; defaults left out."""
    import shlex

    from .cli_util import given_options

    return shlex.join(ctx.command_path.split() + given_options(ctx))


def hardware(device: str = "cpu") -> str:
    """The machine in words: CPU model and core count, and the GPU when training ran on one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical cores"
    if str(device).startswith("cuda"):
        try:
            import torch

            text += f"; GPU {torch.cuda.get_device_name(torch.device(device))}"
        except Exception:  # the name is decoration: a driver quirk must not fail a finished training
            pass
    return text


_FIGURES = (("S", "val_S"), ("U", "val_U"), ("H", "val_H"), ("S_calibrated", "val_S_cal"),
            ("U_calibrated", "val_U_cal"), ("H_calibrated", "val_H_cal"), ("gamma", "val_gamma"),
            ("CZSL", "val_CZSL"), ("AUSUC", "val_AUSUC"))


def training_record(command: str, seconds: float, device: str, outcome) -> dict:
    """What `dkgzsl train` knows beyond config.json: the command, its wall time, the machine, and the
    validation figures of the selected epoch (``outcome``: trainer.train.TrainOutcome). Its seen-unseen
    curve rides along as ``validation.curve`` for write_card, which draws it (CURVE_FILE) and keeps only the
    plot's sha256 in the card."""
    record = {"command": command, "wall_seconds": round(float(seconds), 1), "hardware": hardware(device)}
    best = [r for r in outcome.select_history if r.get("epoch") == outcome.best_epoch and "val_H_cal" in r]
    if best:
        r = best[-1]
        record["validation"] = {"epoch": int(r["epoch"]), **{k: _figure(r[v]) for k, v in _FIGURES if v in r}}
        if isinstance(r.get("val_curve"), dict):
            record["validation"]["curve"] = r["val_curve"]
    return record


def _figure(value) -> float | None:
    value = float(value)
    return None if value != value else round(value, 6)  # nan (a side without photos): not measured


def draw_curve_plot(folder, validation: dict) -> str | None:
    """Draw ``validation["curve"]`` (a training_record's) as the bundle's CURVE_FILE: S over U, its AUSUC, and
    the operating point at the chosen γ. Returns the PNG's sha256, None when there is no curve to draw."""
    from .trainer.metrics import plot_seen_unseen_curve

    curve = validation.get("curve")
    if not isinstance(curve, dict) or not curve.get("S"):
        return None
    mark = (validation.get("U_calibrated"), validation.get("S_calibrated"))
    path = Path(folder) / CURVE_FILE
    plot_seen_unseen_curve(curve["gamma"], curve["S"], curve["U"], path, area=validation.get("AUSUC"),
                           title=f"seen-unseen curve on the validation classes, epoch {validation['epoch']}:",
                           mark=mark if None not in mark else None,
                           mark_label=f"chosen gamma = {validation['gamma']:.3g}" if None not in mark else "")
    return sha256_file(path)


def shown_plot(folder, training: dict | None) -> str | None:
    """CURVE_FILE when ``folder`` holds the plot that ``training``'s record names (same sha256), else None."""
    plot = ((training or {}).get("validation") or {}).get("plot")
    path = Path(folder) / CURVE_FILE
    if not isinstance(plot, dict) or not path.is_file():
        return None
    return CURVE_FILE if sha256_file(path) == plot.get("sha256") else None


def previous_metadata(folder) -> dict:
    """The ``dkgzsl`` block and license of the bundle's current card ({} when it has none or is unreadable)."""
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    try:
        data = ModelCard.load(path, ignore_metadata_errors=True).data.to_dict()
    except Exception:  # a hand-written or broken card: nothing to carry over
        return {}
    block = data.get("dkgzsl") if isinstance(data.get("dkgzsl"), dict) else {}
    return {"dkgzsl": block, "license": data.get("license")}


def build_card(folder, repo_id: str | None = None, training: dict | None = None, license: str | None = None,
               previous: dict | None = None) -> str:
    """The model card of the bundle in ``folder``. ``training``: a training_record (else the one the previous
    card kept for the same weights); ``previous``: previous_metadata of the card it replaces."""
    from huggingface_hub import ModelCard, ModelCardData

    from .models.classcsv import read_class_csv

    folder = Path(folder)
    cfg = load_config(folder)
    origins = read_class_csv(folder / CLASSES_FILE, attribute_names=cfg.attribute_names, require_origin=True).origins
    prov = cfg.provenance
    previous = previous if previous is not None else previous_metadata(folder)
    old = previous.get("dkgzsl") or {}
    if training is None and old.get("weights_sha256") == cfg.weights_sha256:
        training = old.get("training")
    license = license or previous.get("license") or prov.get("license") or "apache-2.0"
    backbone = cfg.backbone.name if cfg.backbone else None
    groups = {o: [n for n, g in zip(cfg.class_names, origins) if g == o] for o in ("seen", "unseen", "user")}
    block = {"method": cfg.method, "backbone": backbone, "feature_kind": cfg.feature_kind,
             "classes": len(cfg.class_names), **{o: len(v) for o, v in groups.items()},
             "attributes": cfg.attr_dim, "data_source": prov.get("data_source"),
             "data_sha256": prov.get("data_sha256"), "weights_sha256": cfg.weights_sha256}
    if training:
        block["training"] = training = _without_curve(training)
    data = ModelCardData(
        library_name="dkgzsl", pipeline_tag=PIPELINE, license=license,
        datasets=[prov["dataset"]] if prov.get("dataset") else None,
        base_model=f"timm/{backbone}" if backbone else None,
        tags=["dkgzsl", PIPELINE, "generalized-zero-shot-learning", f"dkgzsl-{cfg.method}"]
        + ([f"dkgzsl-{cfg.generator.kind}"] if cfg.generator.kind != "clswgan" else []),
        dkgzsl={k: v for k, v in block.items() if v is not None})
    title = repo_id or f"dkgzsl bundle: {cfg.method} over {backbone or 'precomputed features'}"
    body = [f"# {title}", "", _summary(cfg, groups, backbone), ""]
    body += _recognises(cfg, groups) + _use(cfg, repo_id, backbone) + _trained(cfg, training)
    body += _validation(prov, training, shown_plot(folder, training))
    body += _limits(cfg, groups, backbone, training) + _provenance(prov)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(body) + "\n"))


def write_card(folder, training: dict | None = None, **kwargs) -> Path:
    """Write build_card(folder, …) to the bundle's README.md (atomically); returns its path. A ``training``
    record with a validation curve (training_record) first draws it as the bundle's CURVE_FILE."""
    validation = (training or {}).get("validation")
    if isinstance(validation, dict) and "curve" in validation:
        digest = draw_curve_plot(folder, validation)
        training = _without_curve(training)
        if digest:
            training["validation"]["plot"] = {"file": CURVE_FILE, "sha256": digest}
    path = Path(folder) / CARD_FILE
    atomic_write_bytes(path, build_card(folder, training=training, **kwargs).encode("utf-8"))
    return path


def _without_curve(training: dict) -> dict:
    """``training`` without validation.curve (drawn into CURVE_FILE, too long for the card's metadata)."""
    validation = training.get("validation")
    if not isinstance(validation, dict) or "curve" not in validation:
        return training
    return {**training, "validation": {k: v for k, v in validation.items() if k != "curve"}}


# -- sections --------------------------------------------------------------------------------------

def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:_LIST_MAX])
    return shown + (f" … and {len(names) - _LIST_MAX} more (classes.csv)" if len(names) > _LIST_MAX else "")


def _summary(cfg, groups: dict, backbone: str | None) -> str:
    over = (f"the {'region map' if cfg.feature_kind == 'regions' else 'pooled features'} of `{backbone}`"
            + (f" (weights: {cfg.backbone.pretrained_tag})" if cfg.backbone.pretrained_tag else "")
            if backbone else "precomputed features (no image backbone is recorded)")
    return (f"A [dkgzsl](https://pypi.org/project/dkgzsl/) bundle: method `{cfg.method}` over {over}. It recognises "
            f"{len(cfg.class_names)} classes: {len(groups['seen'])} seen in training, {len(groups['unseen'])} "
            f"unseen (described by their attributes only, never by a photo)"
            + (f" and {len(groups['user'])} added by a user from attribute values" if groups["user"] else "") + ".")


def _recognises(cfg, groups: dict) -> list[str]:
    out = ["## What it recognises", ""]
    labels = {"seen": "Seen classes", "unseen": "Unseen classes", "user": "User-added classes (origin `user`)"}
    for o, names in groups.items():
        if names:
            out += [f"**{labels[o]}** ({len(names)}): {_names(names)}", ""]
    out += [f"**Attribute vocabulary** ({cfg.attr_dim}): {_names(list(cfg.attribute_names))}", "",
            "`classes.csv` holds every class's attribute vector; `dkgzsl add-class` adds classes from attribute "
            "values without retraining.", ""]
    return out


def _use(cfg, repo_id: str | None, backbone: str | None) -> list[str]:
    out = ["## Use it", ""]
    if backbone is None:
        return out + ["It was trained on precomputed features and records no image backbone, so it scores "
                      "feature files (`dkgzsl evaluate --features`), not photos.", ""]
    if repo_id:
        return out + ["```bash", "pip install dkgzsl",
                      f"dkgzsl classify --model hf-hub:{repo_id} PHOTOS...          # the newest version",
                      f"dkgzsl classify --model hf-hub:{repo_id}@COMMIT PHOTOS...   # exactly these weights", "```", "",
                      "COMMIT is the 40-hex commit of this revision: `dkgzsl push` printed it, and `dkgzsl models "
                      f"info hf-hub:{repo_id}` shows it (`commit`). JSON and JSONL results record `model` and "
                      f"`model_commit`. The weights' sha256 is `{cfg.weights_sha256}`.", ""]
    return out + ["```bash", "dkgzsl classify --model local-dir:PATH/TO/THIS/FOLDER PHOTOS...",
                  "dkgzsl push PATH/TO/THIS/FOLDER ORG/NAME      # publish it on the Hugging Face Hub", "```", "",
                  f"The weights' sha256 is `{cfg.weights_sha256}`.", ""]


def _trained(cfg, training: dict | None) -> list[str]:
    prov = cfg.provenance
    out = ["## How it was trained", ""]
    if training and training.get("command"):
        out += ["```bash", training["command"], "```", ""]
    else:
        out += ["The training command is not recorded in this bundle (its card was not written by `dkgzsl train`).", ""]
    facts = [("data", f"`{prov['data_source']}`" if prov.get("data_source") else None),
             ("data sha256", f"`{prov['data_sha256']}`" if prov.get("data_sha256") else None),
             ("seed", prov.get("seed")),
             ("model selection", {"val": "epochs and calibration chosen on validation classes carved from the seen "
                                         "classes (never on test data)",
                                  "none": "none (the last epoch, γ = 0)"}.get(prov.get("selection"),
                                                                                prov.get("selection"))),
             ("selected epoch", prov.get("selected_epoch")), ("calibration γ", f"{cfg.calibration:.4g}"),
             ("fine-tuned from", _finetuned(prov.get("finetuned_from"))),
             ("versions", ", ".join(f"{k} {prov[k]}" for k in ("dkgzsl", "torch", "python") if prov.get(k)) or None),
             ("device", prov.get("device")), ("training threads", prov.get("threads")),
             ("CPU capability", prov.get("cpu_capability")), ("deterministic algorithms", prov.get("deterministic")),
             ("hardware", (training or {}).get("hardware")),
             ("wall time", _duration((training or {}).get("wall_seconds")))]
    out += [f"- {k}: {v}" for k, v in facts if v is not None]
    missing = [k for k, v in facts if v is None and k in ("hardware", "wall time", "data", "seed")]
    if missing:
        out.append(f"- not recorded in this bundle: {', '.join(missing)}")
    if prov.get("train_config"):
        out += ["", "<details><summary>Full training configuration (config.json provenance.train_config)</summary>",
                "", "```json", json.dumps(prov["train_config"], indent=1, sort_keys=True), "```", "", "</details>"]
    return out + [""]


def _finetuned(src) -> str | None:
    if not isinstance(src, dict):
        return None
    return f"`{src.get('source', '?')}` (weights sha256 `{str(src.get('weights_sha256', ''))[:12]}…`)"


def _duration(seconds) -> str | None:
    if seconds is None:
        return None
    seconds = float(seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _validation(prov: dict, training: dict | None, plot: str | None = None) -> list[str]:
    out = ["## Validation (model selection)", ""]
    val = (training or {}).get("validation")
    if prov.get("selection") == "none":
        return out + ["This bundle was trained with `--select none`: no validation figures exist.", ""]
    if not val:
        return out + ["The validation figures of the selected epoch are not recorded in this bundle, nor its AUSUC "
                      "plot. Measure it on your own labelled photos with `dkgzsl evaluate` (`--plot` draws the "
                      "curve).", ""]

    def fig(key: str) -> str:
        return "–" if val.get(key) is None else f"{val[key]:.3f}"

    out += [
        "Scored during selection on held-out seen photos and on validation classes that played the unseen part "
        "(never the test split): the selection model at the chosen epoch, not the final one (which also trains on "
        "the validation classes).", "",
        "| selected epoch | S (seen) | U (unseen) | H at γ = 0 | S at γ | U at γ | H at γ | γ | CZSL | AUSUC |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {val['epoch']} | {fig('S')} | {fig('U')} | {fig('H')} | {fig('S_calibrated')} | {fig('U_calibrated')} "
        f"| {fig('H_calibrated')} | {val['gamma']:.4g} | {fig('CZSL')} | {fig('AUSUC')} |", "",
        "S, U and H are at γ = 0 and at the chosen calibration γ (the one whose H is highest); CZSL: photos of the "
        "validation classes, predicted among those classes only; AUSUC: the area under the seen-unseen accuracy "
        "curve, γ swept over all values."]
    if "CZSL" not in val:
        out.append("This bundle's training record predates CZSL, AUSUC and S/U at γ (–: not recorded).")
    if plot:
        out += ["", f"![Seen-unseen accuracy curve of the selected epoch on the validation classes, AUSUC "
                    f"{fig('AUSUC')}; the circle is the operating point at the chosen γ]({plot})", "",
                f"`{plot}`: U (x) against S (y) as γ sweeps from favouring seen classes to favouring unseen ones; "
                "the circle marks the chosen γ."]
    else:
        out += ["", f"The AUSUC plot is not in this bundle (no `{CURVE_FILE}` matching this record)."]
    return out + ["", "`dkgzsl evaluate --images TEST_PHOTOS` gives S, U, H, CZSL and AUSUC on a labelled test set "
                      "(`--plot FILE.png` draws its curve).", ""]


def _limits(cfg, groups: dict, backbone: str | None, training: dict | None) -> list[str]:
    src = cfg.provenance.get("data_source")
    open_set = getattr(cfg, "open_set", None)  # an open-set threshold (config.json), when the bundle has one
    out = ["## Limits", "",
           f"- It knows {len(cfg.class_names)} classes and nothing else: "
           + ("a photo of anything else gets the closest of them, flagged `unknown` when its open-set score falls "
              f"below the bundle's threshold, fitted on {open_set.get('fitted_on') or 'photos of seen classes'}."
              if isinstance(open_set, dict) else "a photo of anything else still gets the closest of them."),
           f"- The {len(groups['unseen'])} unseen classes are recognised from attribute vectors alone"
           + ("; compare U with S above." if (training or {}).get("validation") else "."),
           f"- Its training data {f'came from `{src}`' if src else 'is not recorded'}; photos unlike those (other "
           "subjects, cameras, styles) are outside what it was checked on."]
    if backbone:
        out.append(f"- Its accuracy is bounded by what `{backbone}`'s features carry about the attributes.")
    return out + [""]


def _provenance(prov: dict) -> list[str]:
    out = ["## Provenance (config.json)", ""]
    out += [f"- {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}"
            for k, v in sorted(prov.items()) if k != "train_config"]
    if "threads" in prov:
        out += ["", "Training again with the same data (data_sha256), options and seed is byte-identical (the same "
                f"model.safetensors) with torch {prov.get('torch')}, CPU capability {prov.get('cpu_capability')} and "
                f"{prov['threads']} training threads (`dkgzsl train --threads {prov['threads']}`) on "
                f"{prov.get('device', 'cpu')}. Another torch version, instruction set or thread count changes the "
                "float32 rounding: the file differs and the selected epoch and γ may too. Compare rebuilds with "
                "`dkgzsl evaluate`, not by hash."]
    return out + [""]
