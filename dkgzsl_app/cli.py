"""The ``dkgzsl`` command line (Typer). Heavy libraries load inside commands, so --help is instant."""
from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .sources import DEFAULT_MODEL
from .cli_classes import register as register_class_commands
from .cli_openset import register as register_openset_commands
from .cli_util import DkgzslGroup, fail as _fail, finite as _finite, warn as _warn
from .progress import photo_progress
from .trainer.config import CHOICES, TrainConfig

app = typer.Typer(
    cls=DkgzslGroup,  # the one place a DkgzslError becomes `error: ...` and its exit code
    name="dkgzsl",
    help="Recognise image categories you have no photos of, from their attributes (generative zero-shot learning).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _choices(option: str) -> type[Enum]:
    """The values TrainConfig accepts for a string option, as the Enum Typer shows as choices."""
    return Enum(option.title().replace("_", ""), {v: v for v in CHOICES[option]}, type=str)


Ablation, Select, OdTarget = _choices("ablation"), _choices("select"), _choices("od_target")
FinalLength, FinalGamma = _choices("final_length"), _choices("final_gamma")
OodScore, EnergyNorm = _choices("ood_score"), _choices("energy_norm")
Method, FdeMask = _choices("method"), _choices("fde_mask")
Generator, MlpPrecision = _choices("generator"), _choices("mlp_precision")


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


_PRECISION_HELP = ("The backbone's precision on the CPU: auto (bf16 where the CPU computes it natively, "
                   "else fp32), fp32 or bf16; channels_last either way.")


# `train`'s option defaults are TrainConfig's field defaults (one training configuration, not a copy here).
_TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def _recommended(method: str) -> dict:
    """The method's own defaults for TrainConfig fields (trainer.methods.recommended)."""
    from .trainer.methods import recommended

    return recommended(method)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dkgzsl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """dkgzsl: DKGZSL / D3GZSL / MSDN zero-shot recognition."""


def _bundle_dir(model: str, offline: bool = False) -> Path:
    """Resolve a --model value (hf-hub:, local-dir: or a folder) to a local bundle folder."""
    from .sources import resolve_source

    return resolve_source(model, offline)


@app.command()
def train(
    ctx: typer.Context,
    features: Optional[Path] = typer.Option(None, "--features", help="Folder with xlsa17 files (att_splits.mat + res101.mat) or dkgzsl features (features.safetensors + classes.csv)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Instead of --features: one sub-folder of photos per seen class."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Instead: a benchmark in its official layout (cub, awa2 or sun; with --root), split as xlsa17 proposes."),
    root: Optional[Path] = typer.Option(None, "--root", help="With --dataset: the download's folder (e.g. CUB_200_2011)."),
    partial: bool = typer.Option(False, "--partial", help="With --dataset: use the photos of a partial download (a seeded 20%% of each seen class as test photos, not the proposed split)."),
    attributes: Optional[Path] = typer.Option(None, "--attributes", help="With --images: the class table CSV (name, [origin,] attribute columns) of every class, seen and unseen."),
    backbone: str = typer.Option("tf_efficientnet_lite0", help="With --images: the timm backbone whose features to train on."),
    image_size: Optional[int] = typer.Option(None, "--image-size", show_default=False, help="With --images or --dataset: resize photos to N px for the backbone (default: its stock size, e.g. 224); the bundle records it and every command uses it (MSDN's paper: 448, 14 × 14 regions)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, metrics.jsonl and the bundle (OUT/bundle)."),
    from_: Optional[str] = typer.Option(None, "--from", help="Fine-tune a bundle (a bundled model name, local-dir:PATH or hf-hub:ORG/NAME[@REV]): start from its weights on new photos or new classes. Keeps its method, network widths, DKGZSL switches, attribute vocabulary, feature scaling and backbone (those options, when given and different, are refused)."),
    offline: bool = typer.Option(False, "--offline", help="With --from: use only the local Hub cache."),
    method: Method = typer.Option(Method(_TRAIN["method"]), help="d3gzsl: generator + D3GZSL unified classifier on pooled features; dkgzsl: + SOVR on region features (with --images) and KTN/MFU knowledge-guided generation; msdn: MSDN, an embedding method on region features (no generator; RMSprop at --lr; the paper uses --batch-size 50); msdnpp: MSDN++, MSDN with causal attention."),
    generator: Generator = typer.Option(Generator(_TRAIN["generator"]), help="d3gzsl, dkgzsl: the generator, f-CLSWGAN (clswgan) or CE-GZSL (ce-gzsl: + an embedding net h = E(x) trained with instance- and class-level contrastive losses, which the unified classifier reads; widths follow --embed-dim)."),
    ce_weight: float = typer.Option(_TRAIN["ce_ins_weight"], help="--generator ce-gzsl: weight of each contrastive loss in the generator's objective (the paper: 0.001; 0.01 on FLO and SUN)."),
    fde: bool = typer.Option(_TRAIN["fde"], "--fde/--no-fde", help="dkgzsl: SOVR's feature denoising encoder (region features)."),
    ara: bool = typer.Option(_TRAIN["ara"], "--ara/--no-ara", help="dkgzsl: SOVR's attribute-region attention (region features)."),
    ktn: bool = typer.Option(_TRAIN["ktn"], "--ktn/--no-ktn", help="dkgzsl: knowledge transfer network + meta-fusion units in the generator."),
    fde_mask: FdeMask = typer.Option(FdeMask(_TRAIN["fde_mask"]), help="dkgzsl: FDE's region mask, soft (sigmoid weights) or topk."),
    fde_topk: int = typer.Option(_TRAIN["fde_topk"], help="dkgzsl with --fde-mask topk: regions kept."),
    ara_weight: float = typer.Option(_TRAIN["ara_weight"], help="dkgzsl: weight of ARA's seen-class loss on attribute scores."),
    ktn_weight: float = typer.Option(_TRAIN["ktn_weight"], help="dkgzsl: weight of KTN's reconstruction of real refined features in G's objective."),
    sovr_lr: float = typer.Option(_TRAIN["sovr_lr"], help="dkgzsl: Adam learning rate of SOVR after the warm-up."),
    finetune_backbone: bool = typer.Option(_TRAIN["finetune_backbone"], "--finetune-backbone", help="With --images: train the image backbone with the head, on live features of the photos (BatchNorm statistics frozen); the bundle carries its weights. Slower: the backbone runs forward and backward every epoch."),
    backbone_lr: float = typer.Option(_TRAIN["backbone_lr"], help="With --finetune-backbone: Adam learning rate of the backbone."),
    mlp_precision: MlpPrecision = typer.Option(MlpPrecision(_TRAIN["mlp_precision"]), "--mlp-precision", help="d3gzsl, dkgzsl: bf16 runs the generator, critic and student steps under bf16 autocast (weights and Adam states stay fp32): about 1.5x faster on CPUs with bf16 matrix units (AMX) and on CUDA, a different (not byte-reproducible) result; fp32: the reference."),
    attribute_embeddings: Optional[Path] = typer.Option(None, "--attribute-embeddings", help="msdn, msdnpp: a CSV of one vector per attribute (name,v1,...,vd; e.g. GloVe of the attribute names) that starts the attribute embeddings instead of random ones."),
    ablation: Ablation = typer.Option(Ablation(_TRAIN["ablation"]), help="baseline = generator + L_cls; id = +ID²SD (L_kl, L_be); od = +O²DBD (L_od); both = D3GZSL."),
    epochs: int = typer.Option(_TRAIN["epochs"], help="Generator/student epochs (an epoch = one pass of real features through the critic)."),
    teacher_epochs: int = typer.Option(_TRAIN["teacher_epochs"], help="Epochs of teacher pre-training."),
    batch_size: Optional[int] = typer.Option(None, min=1, show_default=False, help=f"Training images per step [default: {_TRAIN['batch_size']}; msdn, msdnpp: 50, the paper's]."),
    lr: float = typer.Option(_TRAIN["lr"], help="Adam learning rate of the generator and critic."),
    student_lr: float = typer.Option(_TRAIN["student_lr"], help="Adam learning rate of the unified classifier."),
    critic_steps: int = typer.Option(_TRAIN["critic_steps"], help="Critic updates per generator update."),
    hidden_dim: int = typer.Option(_TRAIN["hidden_dim"], help="Hidden width of generator and critic."),
    embed_dim: int = typer.Option(_TRAIN["embed_dim"], help="Embedding width of teacher and student."),
    gen_per_unseen: int = typer.Option(_TRAIN["gen_per_unseen"], help="Generated features per unseen class per step."),
    d3_weight: float = typer.Option(_TRAIN["d3_weight"], help="λ: weight of the D3GZSL losses in the generator's objective."),
    cls_weight: float = typer.Option(_TRAIN["cls_weight"], help="β: weight of the teacher's CE on generated seen features."),
    tau_kl: float = typer.Option(_TRAIN["tau_kl"], help="Temperature of L_kl on L2-normalised logits."),
    tau_be: float = typer.Option(_TRAIN["tau_be"], help="Temperature on the cosines of L_be."),
    tau_od: float = typer.Option(_TRAIN["tau_od"], help="Temperature on the cosines of L_od."),
    od_target: OdTarget = typer.Option(OdTarget(_TRAIN["od_target"]), help="L_od positive pairs: same class (class) or same seen/unseen side (domain)."),
    select: Select = typer.Option(Select(_TRAIN["select"]), help="val: pick epochs and calibration on validation classes; none: last epoch, γ=0."),
    final_length: FinalLength = typer.Option(FinalLength(_TRAIN["final_length"]), help="Length of the final run: the selected epoch count (epochs) or the selected number of generator iterations (iterations)."),
    final_gamma: FinalGamma = typer.Option(FinalGamma(_TRAIN["final_gamma"]), help="Calibration γ of the final model: chosen on the selection model (select), or re-fitted on held-out seen training images (seen_rate)."),
    ood_score: OodScore = typer.Option(OodScore(_TRAIN["ood_score"]), help="Seen/unseen score fed to ε: max softmax probability (msp) or energy."),
    energy_norm: EnergyNorm = typer.Option(EnergyNorm(_TRAIN["energy_norm"]), help="With --ood-score energy: map energies to [0, 1] by the teacher's 1st..99th percentile (quantile), or raw (none)."),
    g_od_real: bool = typer.Option(_TRAIN["g_od_real"], "--g-od-real/--no-g-od-real", help="G's L_od batch includes the iteration's real seen features (the paper's batch)."),
    seed: int = typer.Option(_TRAIN["seed"]),
    attribute_names: Optional[Path] = typer.Option(None, help="Text file with one attribute name per line (xlsa17 has none)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    device: str = typer.Option("auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps."),
    threads: Optional[int] = typer.Option(None, min=0, help="CPU threads for torch. Training uses this many (default 2: the count changes the result's bits, see README \"Reproducibility\"; 0 = torch's default); feature extraction uses torch's default unless given."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Train in N processes on this machine (torchrun; one GPU each on CUDA, gloo on the CPU): one global batch of --batch-size, split between them; the result equals one process's up to float rounding. Several machines: torchrun's rendezvous flags, see README."),
) -> None:
    """Train a method (D3GZSL, DKGZSL, MSDN or MSDN++) on feature files or photo folders and write a bundle."""
    from .devices import parse_device
    from .models.atomic import check_writable_folder
    from .progress import TrainProgress

    if dataset is not None and (features is not None or images is not None or root is None or finetune_backbone or from_):
        _fail("--dataset NAME takes --root DIR instead of --features or --images (and no --finetune-backbone or --from yet).", 2)
    if (features is None) == (images is None) and dataset is None:
        _fail("give either --features DIR or --images DIR (with --attributes CSV).", 2)
    if finetune_backbone and images is None:
        _fail("--finetune-backbone trains the image backbone on photos: give --images DIR with --attributes CSV "
              "(feature files hold no photos).", 2)
    if images is not None and attributes is None:
        _fail("--images needs --attributes CSV: the class table of every class, seen and unseen.", 2)
    if image_size is not None and features is not None:
        _fail("--image-size resizes photos for the backbone: give --images or --dataset (feature files are extracted already).", 2)
    if features is not None and not features.exists():
        _fail(f"{features}: no such folder. Give a folder with att_splits.mat + res101.mat "
              "(xlsa17) or features.safetensors + classes.csv (dkgzsl format).")
    cfg = TrainConfig(ablation=ablation.value, epochs=epochs, teacher_epochs=teacher_epochs,
                      batch_size=batch_size or _recommended(method.value).get("batch_size", _TRAIN["batch_size"]), lr=lr, student_lr=student_lr, critic_steps=critic_steps,
                      hidden_dim=hidden_dim, critic_hidden_dim=hidden_dim, embed_dim=embed_dim,
                      gen_per_unseen=gen_per_unseen, d3_weight=d3_weight, cls_weight=cls_weight,
                      tau_kl=tau_kl, tau_be=tau_be, tau_od=tau_od, od_target=od_target.value,
                      select=select.value, seed=seed, final_length=final_length.value,
                      final_gamma=final_gamma.value, ood_score=ood_score.value, energy_norm=energy_norm.value,
                      g_od_real=g_od_real, method=method.value, fde=fde, ara=ara, ktn=ktn,
                      fde_mask=fde_mask.value, fde_topk=fde_topk, ara_weight=ara_weight, ktn_weight=ktn_weight,
                      sovr_lr=sovr_lr, finetune_backbone=finetune_backbone, backbone_lr=backbone_lr,
                      generator=generator.value, ce_ins_weight=ce_weight, ce_cls_weight=ce_weight,
                      attr_embeddings=str(attribute_embeddings or ""), mlp_precision=mlp_precision.value)
    try:
        cfg.validate()
    except ValueError as e:
        _fail(str(e), 2)
    names = None
    if attribute_names is not None:
        try:
            text = attribute_names.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"{attribute_names}: cannot read the attribute names ({getattr(e, 'strerror', None) or e}).")
        names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    init_dir = kind = None
    if from_ is not None:
        init_dir, cfg, backbone, kind = _finetune_source(ctx, from_, offline, cfg, backbone, images is not None)
    dev = parse_device(device)
    check_writable_folder(out, "run folder (--out)")  # before minutes of work, not after
    from .train_launch import join, launch, leave

    if nproc > 1:
        raise typer.Exit(launch(ctx, nproc))
    main_rank, dev = join(dev)  # under torchrun: this rank's device; rank 0 alone prints and writes

    import torch

    from .trainer.data import load_features
    from .trainer.cegzsl import check_generator
    from .trainer.methods import feature_kind, notes
    from .trainer.train import TRAIN_THREADS, train_bundle

    check_generator(cfg)  # before any photo is read
    import time

    started = time.monotonic()  # the card's wall time: feature extraction + training

    if threads:
        torch.set_num_threads(threads)
    bb_config = photo_set = bb_weights = None
    if dataset is not None:
        from .reproduce import dataset_features

        fs, bb_config = dataset_features(dataset, root, partial, backbone, dev, feature_kind(cfg), cfg.seed, _warn,
                                         _extraction_progress, image_size=image_size)
    elif images is not None:
        fs, bb_config, photo_set, bb_weights = _images_feature_set(
            images, attributes, backbone, dev, workers=2, kind=kind or feature_kind(cfg),
            finetune=cfg.finetune_backbone, source=init_dir, image_size=image_size)
    else:
        fs = load_features(features, warn=_warn) if names is None else _load_named(features, names)
    for note in notes(cfg, fs.kind) if main_rank else ():
        _warn(note)
    with TrainProgress(enabled=not as_json and main_rank) as bar:
        outcome = train_bundle(fs, cfg, out, resume=resume, on_epoch=bar.on_epoch, progress=bar.advance,
                               device=dev, backbone=bb_config,
                               threads=TRAIN_THREADS if threads is None else threads, init_from=init_dir,
                               init_source=from_, photos=photo_set, backbone_weights=bb_weights)
    leave()  # torchrun: every rank is done before any exits
    if not main_rank:
        return
    from .card import command_line, training_record, write_card

    try:  # the model card (README.md) with what this run knows beyond config.json; the bundle is complete without it
        write_card(outcome.bundle_dir, training=training_record(command_line(ctx), time.monotonic() - started, dev, outcome))
    except Exception as e:  # noqa: BLE001  (a card problem must not lose a finished training)
        _warn(f"{outcome.bundle_dir}: the model card was not refreshed ({e}); `dkgzsl push` writes one.")
    result = {"bundle": str(outcome.bundle_dir), "selected_epoch": outcome.best_epoch,
              "calibration": outcome.calibration}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"bundle written to {outcome.bundle_dir} (epochs {outcome.best_epoch}, "
                   f"calibration γ = {outcome.calibration:.4g})")


def _finetune_source(ctx, source: str, offline: bool, cfg: TrainConfig, backbone: str, photos: bool):
    """``--from``: (the source bundle's folder; ``cfg`` with its method, widths and DKGZSL switches, where an
    option given on the command line that differs is refused; the backbone to extract photos with, its own;
    the feature kind it consumes). Checked before any photo is read."""
    from .models.bundle import load_config
    from .models.errors import DataError, UsageError
    from .sources import resolve_source
    from .trainer.finetune import adopt_settings

    folder = resolve_source(source, offline)
    config = load_config(folder)
    given = {n for n in ctx.params  # typer vendors click: compare the source's name, not click's enum
             if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}
    if "hidden_dim" in given:  # --hidden-dim sets both widths
        given.add("critic_hidden_dim")
    cfg = adopt_settings(cfg, config, given, where=source)
    if photos:
        if config.backbone is None:
            raise DataError(f"{source} was trained on precomputed features (it records no backbone), so it cannot "
                            "continue on photos; fine-tune it with --features from the same extractor.")
        if "backbone" in given and backbone != config.backbone.name:
            raise UsageError(f"--backbone {backbone}, but {source} was trained on {config.backbone.name} features; "
                             "drop --backbone (a fine-tuned model keeps its source's backbone).")
        backbone = config.backbone.name
    return folder, cfg, backbone, config.feature_kind


def _images_feature_set(images: Path, attributes: Path, backbone_name: str, device: str, workers: int,
                        kind: str = "pooled", finetune: bool = False, source: Optional[Path] = None,
                        image_size: Optional[int] = None):
    """Backbone features (``kind``: pooled or regions) of a photo folder, through the feature cache, as a
    FeatureSet; (it, the backbone's config, with ``finetune`` the photos as a PhotoSet, the weights of a
    ``source`` bundle's fine-tuned backbone, which extract the photos and carry over to the new bundle)."""
    from .cache import FeatureCache
    from .image_data import feature_set_from_images, finetune_set_from_images
    from .locations import feature_cache_file
    from .models.backbone import OFFLINE, create_backbone, is_finetuned, with_image_size
    from .models.bundle import load_bundle, load_config
    from .models.errors import UsageError

    weights = None
    if source is not None:  # --from: the source's input size (its backbone's)
        size = list(load_config(source).backbone.input_size[-2:])
        if image_size is not None and [image_size, image_size] != size:
            raise UsageError(f"--image-size {image_size}, but {source} was trained on {size[0]} px photos; drop "
                             "--image-size (a fine-tuned model keeps its source's input size).")
        image_size = size
    if source is not None and is_finetuned(load_config(source).backbone):
        from .classify import bundle_backbone

        bundle = load_bundle(source)
        bb, weights = bundle_backbone(bundle), bundle.backbone_state
    else:
        bb = create_backbone(backbone_name, weights="offline" if backbone_name in OFFLINE else "hub")
        bb = bb if image_size is None else with_image_size(bb, image_size)
    if finetune:
        fs, photos = finetune_set_from_images(images, attributes, bb, device, workers, warn=_warn,
                                              progress=_extraction_progress, kind=kind)
        return fs, bb.config, photos, weights
    fs = feature_set_from_images(images, attributes, bb, device, FeatureCache(feature_cache_file(), warn=_warn),
                                 workers=workers, warn=_warn, progress=_extraction_progress, kind=kind)
    return fs, bb.config, None, weights


def _extraction_progress(total: int):
    from .trainer.distributed import is_main

    return photo_progress(total if is_main() else 0, "extracting features", min_total=16)  # rank 0's bar only


def _load_named(features: Path, names: list[str]):
    from .trainer.data import load_xlsa17

    return load_xlsa17(features, attribute_names=names, warn=_warn)


@app.command()
def evaluate(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Bundle: hf-hub:ORG/NAME[@REV], local-dir:PATH, a folder, or a bundled model name."),
    features: Optional[Path] = typer.Option(None, "--features", help="Feature folder whose test split to score."),
    images: Optional[Path] = typer.Option(None, "--images", help="Instead: labelled test photos (sub-folder per class, or <class>__*.jpg)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Instead: a benchmark in its official layout (cub, awa2 or sun; with --root), split as xlsa17 proposes."),
    root: Optional[Path] = typer.Option(None, "--root", help="With --dataset: the download's folder (e.g. CUB_200_2011)."),
    partial: bool = typer.Option(False, "--partial", help="With --dataset: use the photos of a partial download (a seeded 20%% of each seen class as test photos, not the proposed split)."),
    offline: bool = typer.Option(False, "--offline", help="Use only the local Hub cache."),
    calibration: Optional[float] = typer.Option(None, callback=_finite, help="Override the bundle's calibration γ."),
    plot: Optional[Path] = typer.Option(None, help="Write the seen-unseen accuracy curve to this PNG."),
    device: str = typer.Option("auto", help="With --images: where the backbone runs (auto, cpu, cuda, cuda:N or mps)."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="With --images: " + _PRECISION_HELP + " Default fp32: the reference figures (model cards) on every machine."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Score a bundle on the test split: S, U, H, CZSL and AUSUC."""
    from .models.atomic import check_writable_file
    from .models.bundle import load_bundle
    from .trainer.data import load_features
    from .trainer.evaluate import evaluate_bundle

    if dataset is not None and (features is not None or images is not None or root is None):
        _fail("--dataset NAME takes --root DIR instead of --features or --images.", 2)
    if (features is None) == (images is None) and dataset is None:
        _fail("give either --features DIR or --images DIR.", 2)
    if plot is not None:
        check_writable_file(plot, "plot (--plot)", example="curve.png")
    bundle = load_bundle(_bundle_dir(model, offline))
    if images is not None or dataset is not None:
        from .cache import FeatureCache
        from .classify import load as load_classifier
        from .image_data import test_set_from_images
        from .locations import feature_cache_file
        from .reproduce import dataset_test_set

        clf = load_classifier(model, device, offline, precision.value)
        bundle = clf.bundle  # with the model's user classes, as classify sees it
        fs = dataset_test_set(dataset, root, partial, clf, _warn, _extraction_progress) if dataset is not None else \
            test_set_from_images(images, clf.bundle, clf.backbone, clf.device, FeatureCache(feature_cache_file(), warn=_warn),
                                  warn=_warn, progress=_extraction_progress, precision=clf.precision,
                                  kind=clf.bundle.config.feature_kind)
        bundle.model.cpu()  # the backbone ran on --device; scoring the features is CPU work
    else:
        fs = load_features(features, warn=_warn)
    metrics = evaluate_bundle(bundle, fs, calibration, plot)
    if images is not None or dataset is not None:
        metrics["precision"] = clf.precision  # the backbone's, for the record (--json)
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{bundle.config.method}: {fs.source}")
    for col in ("", "U", "S", "H", "CZSL", "AUSUC"):
        t.add_column(col, justify="right")
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    t.add_row(f"γ = {metrics['gamma']:.3g}", pct(metrics["U"]), pct(metrics["S"]), pct(metrics["H"]),
              pct(metrics["CZSL"]), pct(metrics["AUSUC"]))
    t.add_row("γ = 0", pct(metrics["U_uncalibrated"]), pct(metrics["S_uncalibrated"]),
              pct(metrics["H_uncalibrated"]), "", "")
    o = metrics.get("open_set")
    if o:  # the bundle flags photos "unknown" in classify: what that costs on photos of its own classes
        t.add_row(f"γ = {metrics['gamma']:.3g}, unknown = wrong", pct(o["U"]), pct(o["S"]), pct(o["H"]), "", "")
        t.caption = (f"flagged unknown ({o['score']} < {o['threshold']:.3g}): {pct(o['flagged_unseen'])}% of the "
                     f"unseen-class photos, {pct(o['flagged_seen'])}% of the seen-class photos")
    Console().print(t)


@app.command()
def reproduce(
    dataset: str = typer.Argument(..., help="cub, awa2 or sun, in its official layout under --root."),
    root: Path = typer.Option(..., "--root", help="The download's folder (CUB_200_2011, Animals_with_Attributes2, or the SUN folder with images/ and SUNAttributeDB/)."),
    method: Method = typer.Option(Method("dkgzsl"), help="The method whose paper to reproduce (its settings: datasets/presets.json)."),
    backbone: Optional[str] = typer.Option(None, help="resnet101 or vit_base_patch16_224 (the papers'; default: the method's preset), or any timm name."),
    backbone_weights: str = typer.Option("auto", help="auto: ImageNet weights (packaged, else the Hugging Face Hub); none: random (smoke tests only)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", show_default=False, help="Resize photos to N px (default: the preset's, 448 for msdn and msdnpp as in their papers; else the backbone's stock size, 224)."),
    out: Path = typer.Option(..., "--out", help="Folder for results.md, results.json and the run (OUT/run/bundle)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="FIELD=VALUE: override a training setting of the preset (repeatable), e.g. --set epochs=10."),
    partial: bool = typer.Option(False, "--partial", help="Use the photos of a partial download (not the proposed split: the table says so)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted reproduce run in --out (same options)."),
    device: str = typer.Option("auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Reproduce a paper's table row: extract features (cached), train with its settings, select on validation
    classes, evaluate on the proposed test split; writes OUT/results.md beside the published row."""
    import shlex

    from .devices import parse_device
    from .models.atomic import check_writable_folder
    from .progress import TrainProgress
    from .reproduce import make_plan, parse_overrides, run

    if backbone_weights not in ("auto", "none"):
        _fail(f"--backbone-weights {backbone_weights}: auto or none.", 2)
    plan = make_plan(dataset.lower(), method.value, backbone, parse_overrides(set_ or []), image_size)
    dev = parse_device(device)
    check_writable_folder(out, "output folder (--out)")
    from .cache import FeatureCache
    from .locations import feature_cache_file

    words = ["dkgzsl", "reproduce", dataset, "--root", str(root), "--method", method.value]  # as typed, for results.md
    words += (["--backbone", backbone] if backbone else []) + [w for item in set_ or [] for w in ("--set", item)]
    words += ["--image-size", str(image_size)] if image_size is not None else []
    words += (["--backbone-weights", backbone_weights] if backbone_weights != "auto" else []) + \
        (["--partial"] if partial else []) + (["--device", device] if device != "auto" else []) + ["--out", str(out)]
    words += ["--resume"] if resume else []
    with TrainProgress(enabled=not as_json) as bar:
        result = run(plan, root, out, dev, backbone_weights, partial, shlex.join(words), warn=_warn,
                     progress=_extraction_progress, on_epoch=bar.on_epoch, train_progress=bar.advance,
                     cache=FeatureCache(feature_cache_file(), warn=_warn), resume=resume)
    if as_json:
        typer.echo(json.dumps(result))
        return
    m = result["metrics"]
    typer.echo(f"{plan.method} on {result['dataset']}: U {100 * m['U']:.1f}  S {100 * m['S']:.1f}  H {100 * m['H']:.1f}  "
               f"CZSL {100 * m['CZSL']:.1f}  AUSUC {100 * m['AUSUC']:.1f}; table in {out / 'results.md'}, "
               f"bundle {result['bundle']}")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


EXIT_SOME_FAILED, EXIT_NO_IMAGES = 3, 4


@app.command()
def classify(
    paths: Optional[list[str]] = typer.Argument(None, help="Photos, folders or glob patterns (and/or --files-from)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Bundle: hf-hub:ORG/NAME[@REV], local-dir:PATH, a folder, or a bundled model name."),
    offline: bool = typer.Option(False, "--offline", help="Use only the local Hub cache (no network)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Classes to report per photo."),
    fmt: Optional[Format] = typer.Option(None, "--format", "-f", help="table, csv, json or jsonl (default: the --output file's suffix, else table)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout (csv and jsonl: row by row as photos finish)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(32, min=1, help="Photos per forward pass (halved automatically on GPU out-of-memory)."),
    workers: int = typer.Option(2, min=0, help="DataLoader processes decoding photos."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    calibration: Optional[float] = typer.Option(None, callback=_finite, help="γ subtracted from seen-class scores (default: the bundle's)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the feature cache."),
    tui: bool = typer.Option(False, "--tui", help="Classify inside the terminal UI (see dkgzsl browse); --output gets the final results."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help=_PRECISION_HELP + " JSON/JSONL rows record it."),
    files_from: Optional[str] = typer.Option(None, "--files-from", help="Also the photos listed in this file: one path per line, or a CSV with a 'path' column; - reads stdin."),
    resume: bool = typer.Option(False, "--resume", help="Carry on an interrupted -o FILE (csv/jsonl): photos already in it are skipped; the model and settings must match."),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: only the K-th of N equal parts of the photo list (job arrays); join the parts with dkgzsl merge."),
    chunk_size: int = typer.Option(256, "--chunk-size", min=1, help="Photos per chunk: rows are written and flushed (and resumable) per chunk."),
    no_reject: bool = typer.Option(False, "--no-reject", help="Never flag a photo `unknown` (like none of the classes), even when the model has an open-set threshold."),
) -> None:
    """Classify photos into seen, unseen and user-added classes.

    Exit codes: 0 all photos classified; 3 some files could not be read or do not exist (each has an
    error row); 4 no photos found; 1 the model or options are unusable; 2 a bad command line (unknown
    option, bad value).
    """
    from .classify import Prediction
    from .images import collect_images
    from .models.atomic import check_writable_file
    from .stream import parse_shard, read_file_list

    fmt = fmt or next((f for f in Format if output is not None and output.suffix == f".{f.value}"), Format.table)
    shard_kn = parse_shard(shard)
    if resume and (output is None or fmt.value not in ("csv", "jsonl")):
        _fail("--resume carries on an output file: give -o FILE with --format csv or jsonl.", 2)
    if output is not None:
        check_writable_file(output, "output file (-o)", example=f"results.{'txt' if fmt == Format.table else fmt.value}")
    paths = list(paths or []) + (read_file_list(files_from) if files_from else [])
    if not paths:
        _fail("no photos given: name photos, folders or glob patterns, or a list with --files-from LIST.", 2)
    found = collect_images(paths, recursive)
    for w in found.warnings:
        _warn(w)
    if not found.images:
        _fail("no photos to classify.", EXIT_NO_IMAGES)
    missing = [Prediction(str(p), error="no such file or folder") for p in found.missing]
    if tui:
        from .devices import parse_device
        from .tui import EngineOptions

        parse_device(device)  # a bad --device is a usage error here, not inside the TUI
        opts = EngineOptions(model=model, device=device, offline=offline, top_k=top_k, calibration=calibration,
                             batch_size=batch_size, workers=workers, use_cache=not no_cache,
                             precision=precision.value, reject=not no_reject)
        preds = _run_tui(None, [str(p) for p in found.images], opts)
        if output is not None:
            _write_predictions(preds + missing, fmt, output)
        return
    from .classify import load
    from .stream import classify_photos, distributed

    dist = distributed(output, fmt.value, shard_kn)  # under torchrun: this rank's shard, part file, device
    if dist is not None:
        device, output, shard_kn = dist.device(device), dist.part, dist.shard
    clf = load(model, device, offline, precision.value)
    clf.reject = not no_reject
    cache = None
    if not no_cache:
        from .cache import FeatureCache
        from .locations import feature_cache_file

        cache = FeatureCache(feature_cache_file(), warn=_warn)
    table = []  # the table is drawn whole at the end; csv, json and jsonl are written as chunks finish
    summary = classify_photos(clf, [str(p) for p in found.images], missing, fmt.value, output, model=model,
                              top_k=top_k, calibration=calibration, batch_size=batch_size, workers=workers,
                              cache=cache, chunk=chunk_size, resume=resume, shard=shard_kn, warn=_warn,
                              keep=table if fmt == Format.table else None, progress=not (dist and dist.rank),
                              peers=dist.peers(len(found.images) + len(missing)) if dist else None)
    if fmt == Format.table:
        _write_predictions(table, fmt, output)
    if dist is not None:
        summary = dist.finish(summary)  # rank 0 merges the parts into -o; the others are done
        if dist.rank:
            return
    if summary.failed or output is not None:
        typer.secho(summary.line(), fg="yellow" if summary.failed else None, err=True)
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def merge(
    output: Path = typer.Argument(..., help="The merged results file."),
    shards: list[Path] = typer.Argument(..., help="Every shard's file (classify --shard K/N -o FILE), any order."),
) -> None:
    """Join the files of classify --shard 1/N … N/N runs into one: the file one unsharded run writes.

    Each shard must be complete and made by the same model and settings (their run records are checked)."""
    from .models.atomic import check_writable_file
    from .stream import merge as merge_shards

    check_writable_file(output, "merged file", example="results.jsonl")
    run = merge_shards(output, shards)
    typer.secho(f"{run['rows']} photo(s) from {len(shards)} shard(s): {run['rows'] - run['failed']} classified, "
                f"{run['failed']} failed → {output}", err=True)


def _write_predictions(preds, fmt: "Format", output: Optional[Path]) -> None:
    from .output import print_table, render

    if fmt == Format.table:
        import io

        from rich.console import Console

        if output is None:
            print_table(preds, Console())
            return
        buf = io.StringIO()
        print_table(preds, Console(file=buf, width=160, color_system=None))
        text = buf.getvalue()
    else:
        text = render(preds, fmt.value)
    if output is None:
        typer.echo(text, nl=False)
    else:
        from .models.atomic import atomic_write_bytes

        atomic_write_bytes(output, text.encode("utf-8"))


@app.command()
def demo(
    folder: Path = typer.Argument(..., help="Where to write the photos."),
    per_class: int = typer.Option(3, min=1, help="Photos per class."),
    seed: int = typer.Option(1, help="Rendering seed (the demo training set uses 0)."),
    training: bool = typer.Option(False, "--training", help="Write a training folder instead: one sub-folder per seen class + classes.csv."),
    scenes: bool = typer.Option(False, "--scenes", help="The harder set: a smaller object among distractors on a busy background."),
) -> None:
    """Write rendered demo photos of every class, seen and unseen, the true class in each file name.

    --scenes renders the same classes harder: a smaller object at a random place among distractors in the
    colours and patterns of other classes, on a busy background."""
    from .models.atomic import check_writable_folder
    from .trainer.render import demo_classes, write_test_photos, write_training_folder

    check_writable_folder(folder, "demo folder")
    style, label = ("scenes", "scenes ") if scenes else ("plain", "")
    if training:
        write_training_folder(folder, per_class, seed, style=style)
        typer.echo(f"{folder}: {per_class} {label}photos for each seen class, and classes.csv")
        return
    paths = write_test_photos(folder, per_class, seed, style=style)
    unseen = sum(1 for c in demo_classes() if not c.seen)
    typer.echo(f"{folder}: {len(paths)} {label}photos of {len(demo_classes())} classes ({unseen} unseen)")


@app.command()
def browse(
    inputs: list[str] = typer.Argument(None, help="A results file written by classify (.jsonl, .json, .csv), or photos, folders and globs to classify."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Bundle for classifying, explaining and editing classes."),
    offline: bool = typer.Option(False, "--offline", help="Use only the local Hub cache (no network)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Classes to keep per photo."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(32, min=1, help="Photos per forward pass."),
    workers: int = typer.Option(2, min=0, help="DataLoader processes decoding photos."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Keep backbone features in memory only."),
    no_images: bool = typer.Option(False, "--no-images", help="Do not draw the photos in the terminal."),
    no_model: bool = typer.Option(False, "--no-model", help="With a results file: load no model (no explanations or class editor; starts at once)."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help=_PRECISION_HELP),
) -> None:
    """Browse predictions in the terminal UI: sort, filter, look at photos, correct, export, edit classes.

    Corrections autosave beside the results file (<name>.corrections.json), or for photos classified here
    in a run folder under the user data folder.
    """
    from .tui import EngineOptions

    opts = EngineOptions(model=None if no_model else model, device=device, offline=offline, top_k=top_k,
                         batch_size=batch_size, workers=workers, use_cache=not no_cache, precision=precision.value)
    inputs = inputs or []
    results = [Path(i) for i in inputs if Path(i).is_file() and Path(i).suffix.lower() in (".jsonl", ".json", ".csv")]
    if results and len(inputs) > 1:
        _fail("give one results file, or photos and folders, not both.", 2)
    if results:
        _run_tui(results[0], None, opts, show_images=not no_images)
        return
    if no_model:
        _fail("--no-model needs a results file: classifying photos needs a model.", 2)
    from .devices import parse_device
    from .images import collect_images

    parse_device(device)  # a bad --device is a usage error here, not inside the TUI
    found = collect_images(inputs or ["."], recursive)
    for w in found.warnings:
        _warn(w)
    if not found.images:
        _fail("no photos to classify (give photos, folders, or a results file).", EXIT_NO_IMAGES)
    _run_tui(None, [str(p) for p in found.images], opts, show_images=not no_images)


def _run_tui(results_file: Optional[Path], paths: Optional[list[str]], opts, show_images: bool = True) -> list:
    """Run the browser; returns the predictions it holds when the user quits."""
    from .tui import create_app

    tui_app = create_app(results_file, paths, opts, show_images=show_images)
    tui_app.run()
    typer.echo(f"corrections and results: {tui_app.store.folder}", err=True)
    return tui_app.predictions()


@app.command("sort")
def sort_cmd(
    results: Optional[Path] = typer.Argument(None, help="A results file written by classify (.jsonl, .json, .csv)."),
    into: Optional[Path] = typer.Option(None, "--into", help="The folder to file the photos in (one sub-folder per class)."),
    copy: bool = typer.Option(False, "--copy", help="Copy the photos (the default)."),
    link: bool = typer.Option(False, "--link", help="Hard-link the photos (symbolic links across file systems)."),
    move: bool = typer.Option(False, "--move", help="Move the photos."),
    min_confidence: float = typer.Option(0.5, "--min-confidence", help="Photos whose top probability is below this go to _low_confidence (0: none do)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say where each photo would go; touch nothing."),
    undo: Optional[Path] = typer.Option(None, "--undo", help="Reverse the sort of this manifest (DIR/dkgzsl-sort.json, or DIR)."),
) -> None:
    """File photos into one folder per class, corrections applied; never overwrites; --undo reverses it.

    Corrected photos go to their corrected class; unreadable photos to _unreadable, photos marked unknown to
    _unknown, low-confidence ones to _low_confidence. Name clashes get -2, -3, … suffixes. The manifest
    DIR/dkgzsl-sort.json records every file; an interrupted sort is finished by running it again."""
    from . import sort as sorting

    if undo is not None:
        if results is not None or into is not None or copy or link or move or dry_run:
            _fail("--undo takes only the manifest.", 2)
        total = len(sorting.load_manifest(undo / sorting.MANIFEST if undo.is_dir() else undo)["entries"])
        with photo_progress(total, "restoring") as tick:
            res = sorting.undo_sort(undo, tick)
        typer.echo(f"restored {res.restored} photos" + (f" ({res.already} already)" if res.already else ""))
        for why in res.kept:
            _warn(why)
        if res.kept:
            raise typer.Exit(EXIT_SOME_FAILED)
        return
    if results is None or into is None:
        _fail("give a results file and --into DIR (or --undo MANIFEST).", 2)
    if copy + link + move > 1:
        _fail("give one of --copy, --link, --move.", 2)
    mode = "link" if link else "move" if move else "copy"
    res = sorting.sort_photos(results, into, mode, min_confidence, dry_run=True)  # the plan (and the bar's total)
    if dry_run:
        for e in res.entries:
            typer.echo(f"{e.source} -> {into / e.dest}")
    else:
        with photo_progress(len(res.entries), "filing") as tick:
            res = sorting.sort_photos(results, into, mode, min_confidence, on_file=tick)
    counts = ", ".join(f"{k} {v}" for k, v in res.counts.items()) or "nothing new"
    verb = "would file" if dry_run else {"copy": "copied", "link": "linked", "move": "moved"}[mode]
    done = len(res.entries) if dry_run else res.filed
    typer.echo(f"{verb} {done} photos into {into}: {counts}" + (f"; {res.already} filed before" if res.already else ""))
    if not dry_run:
        typer.echo(f"manifest: {res.manifest} (undo: dkgzsl sort --undo {res.manifest})")
    for m in res.missing:
        _warn(f"{m}: not found, not filed")
    if res.missing:
        raise typer.Exit(EXIT_SOME_FAILED)


models_app = typer.Typer(help="Model bundles: in the Hub cache, on the Hub, on disk.", no_args_is_help=True)
app.add_typer(models_app, name="models")
register_class_commands(app)  # add-class, classes list|show|export|remove|rename
register_openset_commands(app)  # calibrate-openset


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """dkgzsl bundles in the local Hub cache."""
    from .hub import cached_bundles

    rows = cached_bundles()
    if as_json:
        typer.echo(json.dumps([{"model": f"hf-hub:{b.repo_id}", "commit": b.commit, "refs": b.refs,
                                "method": b.method, "classes": b.classes, "path": str(b.path),
                                "size_bytes": b.size_bytes} for b in rows]))
        return
    if not rows:
        typer.echo("no bundles in the local Hub cache (dkgzsl models download hf-hub:ORG/NAME)")
    for b in rows:
        refs = ",".join(b.refs) or "-"
        typer.echo(f"hf-hub:{b.repo_id}  {b.commit[:12]} ({refs})  {b.method}  {b.classes} classes  "
                   f"{b.size_bytes / 1e6:.1f} MB")


@models_app.command("download")
def models_download(model: str, offline: bool = typer.Option(False, "--offline")) -> None:
    """Fetch a Hub bundle into the cache, verify it, and print its folder."""
    _show_bundle(model, offline, path_only=True)


@models_app.command("path")
def models_path(model: str, offline: bool = typer.Option(False, "--offline")) -> None:
    """Print the local folder of a bundle (downloading it unless --offline)."""
    _show_bundle(model, offline, path_only=True)


@models_app.command("info")
def models_info(model: str, offline: bool = typer.Option(False, "--offline"),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """What a bundle is: method, backbone, classes, calibration, provenance."""
    _show_bundle(model, offline, path_only=False, as_json=as_json)


@models_app.command("slim")
def models_slim(model: str = typer.Argument(..., help="The bundle: a folder, local-dir:PATH, hf-hub:ORG/NAME or a bundled model name."),
                out: Path = typer.Argument(..., help="A new (or empty) folder for the slim bundle."),
                offline: bool = typer.Option(False, "--offline"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Write a bundle for inference only: without the critic, teacher and other parts only training reads.

    It classifies, evaluates, scores open-set photos and adds classes exactly as the full bundle does;
    fine-tuning (train --from) needs the full one."""
    from .models.atomic import check_writable_folder
    from .slim import write_slim

    folder = _bundle_dir(model, offline)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        _fail(f"{out}: give a new or empty folder for the slim bundle (it is {'not a folder' if not out.is_dir() else 'not empty'}).", 2)
    check_writable_folder(out, "slim bundle folder (OUT)")
    info = write_slim(folder, out)
    if info.get("card_warning"):
        _warn(info["card_warning"])
    if as_json:
        typer.echo(json.dumps(info))
        return
    size = info["weights_bytes"]
    left = ", ".join(info["omitted_parts"]) or "nothing (its inference reads every tensor)"
    typer.echo(f"slim bundle written to {out}: model.safetensors {size['before'] / 1e6:.1f} MB -> "
               f"{size['after'] / 1e6:.1f} MB; left out: {left}")


def _show_bundle(model: str, offline: bool, path_only: bool, as_json: bool = False) -> None:
    from .models.bundle import load_bundle

    folder = _bundle_dir(model, offline)
    bundle = load_bundle(folder)  # verifies hash, names and shapes
    if path_only:
        typer.echo(str(folder))
        return
    cfg = bundle.config
    info = {"model": model, "path": str(folder), "method": cfg.method, "format_version": cfg.format_version,
            "backbone": cfg.backbone.name if cfg.backbone else None, "feature_dim": cfg.feature_dim,
            "attributes": cfg.attr_dim, "classes": cfg.num_classes,
            "origins": {o: bundle.origins.count(o) for o in ("seen", "unseen", "user")},
            "calibration": cfg.calibration, "provenance": {k: v for k, v in cfg.provenance.items() if k != "train_config"},
            **({"omitted_parts": cfg.omitted_parts} if cfg.omitted_parts else {})}  # a slim bundle (models slim)
    from .hub import hub_origin

    origin = hub_origin(folder)  # a Hub download: the commit its revision resolved to
    info.update(commit=origin[1] if origin else None, weights_sha256=cfg.weights_sha256)
    if as_json:
        typer.echo(json.dumps(info))
        return
    for k, v in info.items():
        typer.echo(f"{k:>14}: {v}")


@models_app.command("search")
def models_search(query: Optional[str] = typer.Argument(None, help="Words in the model's id."),
                  limit: int = typer.Option(50, min=1, help="At most this many results."),
                  offline: bool = typer.Option(False, "--offline"), as_json: bool = typer.Option(False, "--json")) -> None:
    """dkgzsl bundles on the Hugging Face Hub (library dkgzsl), most downloaded first."""
    from .hub import search_bundles

    rows = search_bundles(query, limit, offline)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no dkgzsl bundles on the Hub" + (f" match {query!r}" if query else ""))
    for r in rows:
        typer.echo(f"{r['model']}  {r['downloads'] or 0} downloads  {(r['last_modified'] or '-')[:10]}  "
                   f"{r['method'] or '-'}  {r['backbone'] or '-'}  {r['dataset'] or '-'}")


@app.command()
def push(
    bundle: str = typer.Argument(..., help="The bundle: a folder (e.g. RUN/bundle), local-dir:PATH or a bundled model name."),
    repo_id: str = typer.Argument(..., help="The Hub repository: ORG/NAME (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    revision: str = typer.Option("main", "--revision", help="Branch to commit to (created from main if missing)."),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", help="Default: method, classes, weights digest."),
    with_user_classes: bool = typer.Option(False, "--with-user-classes", help="Push a new bundle whose classes include your added ones (origin user)."),
    full: bool = typer.Option(False, "--full", help="Push every tensor, the training-only parts (critic, teacher ...) too: what fine-tuning (train --from) needs. Default: a slim bundle (as `models slim` writes)."),
    license: Optional[str] = typer.Option(None, "--license", help="The card's license (default: the bundle card's, else apache-2.0)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Publish a bundle on the Hugging Face Hub: its four files and a refreshed model card, in one commit.

    The token comes from HF_TOKEN or `hf auth login` and is never printed."""
    from .publish import push_bundle

    result, summary = push_bundle(_bundle_dir(bundle), repo_id, private=private, revision=revision,
                                  message=commit_message, with_user_classes=with_user_classes, license=license, full=full,
                                  say=lambda m: typer.echo(m, err=True))
    line = f"dkgzsl classify --model hf-hub:{result.repo_id}@{result.commit} PHOTOS..."
    if as_json:
        typer.echo(json.dumps({"model": f"hf-hub:{result.repo_id}", "revision": result.revision,
                               "commit": result.commit, "url": result.url, "created": result.created,
                               "classify": line, **summary}))
        return
    typer.echo(f"pushed to hf-hub:{result.repo_id} ({result.revision}{', new repository' if result.created else ''}): "
               f"commit {result.commit}\n  {result.url}\n  {line}")


def main() -> None:
    """The ``dkgzsl`` entry point; library errors end in ``DkgzslGroup.invoke`` (cli_util)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
