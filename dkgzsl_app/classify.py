"""The Python API behind ``dkgzsl classify``: ``load(source).classify(images)``.

    >>> import dkgzsl_app
    >>> clf = dkgzsl_app.load("local-dir:runs/demo/bundle")
    >>> for p in clf.classify(["photos/zebra.jpg"]): print(p.path, p.top[0].name, p.top[0].score)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .models.errors import BundleError, UsageError
from .sources import resolve_source


@dataclass
class Guess:
    name: str
    origin: str  # seen | unseen | user
    score: float  # calibrated: probability minus γ for seen classes
    probability: float
    confidence: float | None = None  # softmax((probability − γ·seen) / T) over all classes: in [0, 1], sums to 1
    #   (models/openset.py); None in results files written before it


@dataclass
class Prediction:
    path: str
    top: list[Guess] = field(default_factory=list)
    error: str = ""  # why the file could not be classified ("" when it was)
    precision: str = ""  # the backbone's precision that made the features (fp32 | bf16 | fp16); "" if unknown
    unknown: bool | None = None  # open-set rejection: looks like none of the model's classes (top[0] is the best
    #   guess); None when not checked (the bundle has no threshold, or --no-reject)
    open_set_score: float | None = None  # the bundle's open-set score (config.open_set), when it has a threshold
    calibration: float | None = None  # γ subtracted from seen classes' probabilities (score = probability − γ)
    temperature: float | None = None  # T of the confidence softmax
    model: str = ""  # the model that scored it: hf-hub:ORG/NAME, else the --model value (hub.model_record)
    model_commit: str = ""  # the Hub commit its weights came from; "" for a local bundle


def pick_device(name: str = "auto") -> str:
    """The torch device for ``name`` (auto, cpu, cuda, cuda:N or mps); see ``devices.parse_device``."""
    from .devices import parse_device

    return parse_device(name)


class Classifier:
    """A bundle with its backbone, ready to classify photos; with the model's user classes unless
    ``user_classes`` is False (``bundle`` stays as loaded; ``self.bundle`` is the view in use).
    ``precision`` (auto | fp32 | bf16) is resolved for this device and backbone: ``self.precision`` is the
    one the backbone runs in (fp32, bf16 or fp16 on CUDA; see ``precision.py``)."""

    model_id = model_commit = ""  # set by load(): what results files record (Prediction.model, .model_commit)
    reject = True  # flag photos `unknown` when the bundle has an open-set threshold (classify --no-reject: False)

    def __init__(self, bundle, backbone, device: str = "cpu", user_classes: bool = True, precision: str = "auto"):
        from .precision import resolve_precision

        self.base_bundle, self.backbone, self.device = bundle, backbone, device
        from .models.backbone import is_finetuned

        # auto's bf16 holds for a backbone's checked weights (precision.BF16_BACKBONES), not a fine-tuned copy
        checked = backbone.config.name if backbone and not is_finetuned(backbone.config) else None
        self.precision = resolve_precision(precision, device, checked)
        self.bundle, self.model = bundle, bundle.model.to(device).eval()
        if user_classes:
            self.reload_classes()

    def reload_classes(self) -> None:
        """Re-read the class registry (user classes added, removed or renamed since): swaps the class list
        and the head only; the backbone and the built-in weights stay. An empty registry gives the bundle."""
        from .classes import with_user_classes

        self.bundle = with_user_classes(self.base_bundle, self.device)
        self.model = self.bundle.model.eval()

    @property
    def class_names(self) -> list[str]:
        return self.bundle.config.class_names

    def features(self, images: list, batch_size: int = 32, workers: int = 2, cache=None,
                 on_batch: Callable[[int], None] | None = None):
        """Backbone features for ``images`` (pooled or regions: what the bundle's method consumes); with a
        FeatureCache, photos seen before skip the backbone."""
        from .extract import extract_cached

        return extract_cached(self.backbone, list(images), self.device, batch_size, workers, cache, on_batch,
                              self.precision, kind=self.bundle.config.feature_kind)

    def classify(self, images: list, top_k: int = 5, calibration: float | None = None, batch_size: int = 32,
                 workers: int = 2, on_batch: Callable[[int], None] | None = None, cache=None,
                 reject: bool | None = None, extracted=None) -> list[Prediction]:
        """Predictions for paths or PIL images, in input order; unreadable files get ``error`` set.
        ``reject`` (default ``self.reject``): flag photos below the bundle's open-set threshold ``unknown``.
        ``extracted``: ``self.features(images, ...)`` computed already (stream.classify_chunks extracts the next
        chunk while this one is scored)."""
        import math

        import torch

        from .extract import stream_threads

        cfg = self.bundle.config
        gamma = cfg.calibration if calibration is None else float(calibration)
        if not math.isfinite(gamma):
            raise UsageError(f"calibration {gamma}: γ must be a finite number (it is subtracted from seen-class "
                             "scores; the bundle's own value is used when none is given).")
        got = self.features(images, batch_size, workers, cache, on_batch) if extracted is None else extracted
        seen = torch.tensor(cfg.seen, dtype=torch.float32)
        names = [str(getattr(im, "filename", "") or f"<image {i}>") if not isinstance(im, (str, Path)) else str(im)
                 for i, im in enumerate(images)]
        preds = [Prediction(path=n, model=self.model_id, model_commit=self.model_commit) for n in names]
        for i, reason in got.errors.items():
            preds[i].error = reason
        order = sorted(got.features)
        if order:
            feats = torch.stack([got.features[i] for i in order]).to(self.device)  # (N, D)
            with stream_threads(self.device):  # small operators: fewer threads are faster on the CPU
                probs, open_set = self._scores(feats, reject)  # (N, C), (N,) | None: one forward pass of the head
            scores = probs - gamma * seen
            conf, temperature = self._confidence(probs, seen, gamma)
            k = max(1, min(top_k, len(cfg.class_names)))
            top = scores.topk(k, dim=1)
            for row, i in enumerate(order):
                preds[i].precision, preds[i].calibration, preds[i].temperature = self.precision, gamma, temperature
                preds[i].top = [Guess(cfg.class_names[c], self.bundle.origins[c], float(s), float(probs[row, c]),
                                      float(conf[row, c]))
                                for s, c in zip(top.values[row].tolist(), top.indices[row].tolist())]
                if open_set is not None:
                    preds[i].open_set_score = float(open_set[row])
                    preds[i].unknown = bool(open_set[row] < cfg.open_set["threshold"])
        return preds

    def _confidence(self, probs, seen, gamma: float):
        """The readable confidence (N, C), softmax((p − γ·seen) / T), and T: the bundle's, else the default
        (models/openset.py)."""
        from .models.openset import DEFAULT_TEMPERATURE, confidence

        t = float((self.bundle.config.confidence or {}).get("temperature") or DEFAULT_TEMPERATURE)
        return confidence(probs, seen, gamma, t), t

    def _scores(self, feats, reject: bool | None):
        """Class probabilities (N, C) and, when the bundle has an open-set threshold and rejection is on, its
        open-set score (N,) (else None), from one forward pass of the head."""
        import torch

        cfg = self.bundle.config
        with torch.inference_mode():
            if not cfg.open_set or not (self.reject if reject is None else reject):
                return self.model.class_scores(feats, cfg.head.tau_student).float().cpu(), None
            probs, got = self.model.scores_with_open_set(feats, cfg.head.tau_student, cfg.attribute_norm)
        name = cfg.open_set["score"]
        if name not in got:
            raise BundleError(f"{self.bundle.path}: open_set.score {name!r} is not one {cfg.method} computes "
                              f"({', '.join(got)}); re-fit it (dkgzsl calibrate-openset).")
        return probs.float().cpu(), got[name].float().cpu()


def load(source: str, device: str = "auto", offline: bool = False, precision: str = "auto") -> Classifier:
    """Load a bundle (hf-hub:, local-dir: or a folder) and its backbone for classifying photos;
    ``precision``: auto, fp32 or bf16 for the backbone (see ``precision.py``)."""
    from .models.bundle import load_bundle
    from .precision import parse_precision

    parse_precision(precision)  # a bad value is a usage error before any loading
    dev = pick_device(device)
    with one_thread():
        bundle = load_bundle(resolve_source(source, offline))
        bb = bundle.config.backbone
        if bb is None:
            raise BundleError(f"{bundle.path}: this bundle was trained on precomputed features and has no image "
                              "backbone; it can score feature files (dkgzsl evaluate) but not photos.")
        backbone = bundle_backbone(bundle)
    if bundle.config.feature_dim != backbone.model.num_features:
        raise BundleError(f"{bundle.path}: feature_dim {bundle.config.feature_dim} does not match "
                          f"{bb.name}'s {backbone.model.num_features} features.")
    clf = Classifier(bundle, backbone, dev, precision=precision)
    from .hub import model_record

    record = model_record(source, bundle.path)
    clf.model_id, clf.model_commit = record["model"], record["model_commit"] or ""
    return clf


def one_thread():
    """torch on one thread (in this thread) while a model loads: its many small operators (a bundle's finite
    checks and copies, ~300 tensors) each wait for a whole thread team, which stalls whenever another process
    holds a core (``dkgzsl_app.load`` at load ~2 on 2 cores: 0.2 s of isfinite on 2 threads); one thread's
    results are the same bit for bit."""
    from .extract import torch_threads

    return torch_threads(1)


def bundle_backbone(bundle):
    """The backbone a bundle's features come from: its own fine-tuned weights (``train --finetune-backbone``;
    their config, whose tag keys the feature cache apart from the stock weights'), else the stock weights
    (packaged offline, or from the Hub), checked against what the bundle was trained on."""
    from .models.backbone import OFFLINE, backbone_from_state, create_backbone, is_finetuned, with_image_size

    bb = bundle.config.backbone
    if is_finetuned(bb):
        return backbone_from_state(bb, bundle.backbone_state)
    backbone = create_backbone(bb.name, weights="offline" if bb.name in OFFLINE else "hub")
    backbone = with_image_size(backbone, bb.input_size[-2:])  # the size it was trained at (train --image-size)
    if backbone.config.pretrained_tag != bb.pretrained_tag or backbone.config.input_size != bb.input_size:
        raise BundleError(f"{bundle.path}: the bundle was trained on {bb.name} [{bb.pretrained_tag}] features, "
                          f"but the available weights are [{backbone.config.pretrained_tag}].")
    return backbone
