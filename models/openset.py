"""A readable confidence and "none of these" (open-set rejection), for every method.

**Confidence.** The app's GZSL calibration is calibrated stacking: a photo's class is
``argmax_k (p_k − γ·seen_k)``, with p the unified classifier's probabilities. Those calibrated scores are
not probabilities (a right seen prediction can read 0.3, a wrong one 0.001). The confidence is a softmax
over the same scores, with γ as the seen classes' offset before the softmax and a temperature T:

    confidence_k = softmax_k((p_k − γ·seen_k) / T)

so it lies in [0, 1], sums to 1 over the classes, ranks the classes exactly as the calibrated scores do
(the predicted class and every accuracy stay as they were), and T is fitted (temperature scaling, Guo et al.
2017: the T of least negative log-likelihood) on labelled held-out photos so that a confidence of 0.9 is
right about 90% of the time. A bundle records T in ``config.confidence`` (``fit_temperature``); one without
it uses ``DEFAULT_TEMPERATURE``.

**Open-set rejection.** Each method's ``open_set_scores(raw, tau, attribute_norm)`` gives, per photo, scores
that are higher the more the photo looks like the model's classes:

* ``msp``: the largest class probability (Hendrycks & Gimpel 2017);
* ``max_logit``: the largest class logit (Hendrycks et al. 2022);
* ``energy``: the negative free energy τ·logsumexp(logits / τ) (Liu et al. 2020);
* ``prototype`` (generative methods): the cosine of the photo's feature v to the nearest class prototype,
  the mean of generated features of that class (``generated_prototypes``; every class, seen, unseen and
  user-added, has one, since the generator makes features from attributes alone);
* ``attribute_cosine`` (embedding methods, MSDN): the cosine of the photo's attribute scores to the nearest
  class attribute vector.

A bundle's ``config.open_set`` names one score and its threshold, fitted on photos of seen classes only
(``fit_threshold``: the score that keeps ``keep`` of them, 95% by default); a photo scoring below it is
``unknown``. A bundle without it rejects nothing.
"""
from __future__ import annotations

import math

DEFAULT_TEMPERATURE = 0.05  # T for bundles without a fitted one (the demo model's fitted T is 0.077)
DEFAULT_KEEP = 0.95  # share of in-domain (seen-class) validation photos the threshold keeps
PROTOTYPE_SAMPLES = 16  # generated features averaged per class prototype
PROTOTYPE_SEED = 0
SCORES = ("msp", "max_logit", "energy", "prototype", "attribute_cosine")


def logit_scores(logits, tau: float = 1.0) -> dict:
    """msp, max_logit and energy (B,) of class logits (B, C) (before the 1/τ of the softmax)."""
    import torch

    z = logits.float() / tau
    return {"msp": torch.softmax(z, dim=1).max(1).values, "max_logit": z.max(1).values,
            "energy": tau * torch.logsumexp(z, dim=1)}


def generated_prototypes(model, attribute_norm: str = "l2", samples: int = PROTOTYPE_SAMPLES,
                         seed: int = PROTOTYPE_SEED):
    """One prototype per class (C, D) in v-space: the mean of ``samples`` generated features of its attribute
    vector, from a fixed seed (the same prototypes every time). Cached on the model until its class attribute
    buffer changes (user classes added or removed give a new buffer)."""
    import torch

    buf = model.class_attributes
    key = (buf.data_ptr(), buf._version, tuple(buf.shape), attribute_norm, samples, seed, str(buf.device))
    cached = getattr(model, "_open_set_prototypes", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    with torch.no_grad():
        a = model.normalized_attributes(attribute_norm).float()  # (C, A)
        g = torch.Generator(device="cpu").manual_seed(seed)
        rows = []
        for i in range(0, len(a), 64):  # bounded memory for many user classes
            part = a[i:i + 64]
            z = torch.randn(len(part) * samples, model.generator.noise_dim, generator=g).to(a.device)
            x = model.generator(z, part.repeat_interleave(samples, dim=0))  # (c·samples, D)
            rows.append(x.reshape(len(part), samples, -1).mean(1))
        protos = torch.cat(rows) if rows else a.new_zeros(0, 0)
    model._open_set_prototypes = (key, protos)
    return protos


def nearest_cosine(x, rows):
    """Largest cosine (B,) between each row of x (B, D) and any row of ``rows`` (K, D)."""
    import torch.nn.functional as F

    return (F.normalize(x.float(), dim=1) @ F.normalize(rows.float(), dim=1).t()).max(1).values


def confidence(probs, seen, gamma: float, temperature: float | None):
    """softmax((p − γ·seen) / T) (B, C) for probabilities (B, C) and a seen mask (C,) (float 0/1)."""
    import torch

    t = temperature if temperature and temperature > 0 else DEFAULT_TEMPERATURE
    return torch.softmax((probs.float() - gamma * seen.float()) / t, dim=1)


def fit_temperature(probs, labels, seen, gamma: float) -> float:
    """The T of least mean negative log-likelihood of ``labels`` (N,) under ``confidence`` (a grid over
    log T from 1e-3 to 10, then a finer one around the best); ValueError without photos."""
    import torch

    if len(labels) == 0:
        raise ValueError("fitting a temperature needs labelled photos")
    s = probs.float() - gamma * torch.as_tensor(seen).float()
    y = torch.as_tensor(labels).long()

    def nll(t: float) -> float:
        return float(-torch.log_softmax(s / t, dim=1).gather(1, y[:, None]).mean())

    grid = [10 ** (-3 + 4 * i / 80) for i in range(81)]
    best = min(grid, key=nll)
    fine = [best * 10 ** (0.05 * (i - 10) / 10) for i in range(21)]
    return float(round(min(fine, key=nll), 6))


def fit_threshold(scores, keep: float = DEFAULT_KEEP) -> float:
    """The threshold that keeps at least ``keep`` of ``scores`` (photos of known classes): a photo is
    ``unknown`` when its score is below it. Midway between two neighbouring scores, so float rounding
    cannot flip a photo."""
    import numpy as np

    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError("fitting a threshold needs finite scores of at least one photo")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], not {keep}")
    drop = int(math.floor((1.0 - keep) * s.size + 1e-9))  # photos allowed below the threshold
    if drop == 0:
        return float(s[0] - max(1e-6, 1e-6 * abs(s[0])))
    return float((s[drop - 1] + s[drop]) / 2)


def open_set_record(score: str, threshold: float, keep: float, photos: int, fitted_on: str) -> dict:
    """What ``config.open_set`` holds."""
    if score not in SCORES:
        raise ValueError(f"unknown open-set score {score!r}: use one of {', '.join(SCORES)}")
    return {"score": score, "threshold": float(threshold), "keep": float(keep), "photos": int(photos),
            "fitted_on": fitted_on}


def expected_calibration_error(conf, correct, bins: int = 15) -> tuple[float, list[dict]]:
    """ECE of top-1 confidences (N,) against 0/1 correctness (N,) over ``bins`` equal-width bins, and the
    reliability diagram's bins (lower edge, upper edge, photos, mean confidence, accuracy)."""
    import numpy as np

    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, table = 0.0, []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (conf > lo) & (conf <= hi) if i else (conf >= lo) & (conf <= hi)
        n = int(sel.sum())
        if n:
            ece += n / len(conf) * abs(correct[sel].mean() - conf[sel].mean())
        table.append({"lo": float(lo), "hi": float(hi), "photos": n,
                      "confidence": float(conf[sel].mean()) if n else None,
                      "accuracy": float(correct[sel].mean()) if n else None})
    return float(ece), table


def check_records(config) -> list[str]:
    """What is wrong with a config's ``confidence`` and ``open_set`` records (empty when nothing, or absent)."""
    problems = []
    conf, rec = config.confidence, config.open_set
    if conf is not None:
        t = conf.get("temperature") if isinstance(conf, dict) else None
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            problems.append(f"confidence needs a positive finite 'temperature', not {conf!r}")
    if rec is not None:
        ok = isinstance(rec, dict) and rec.get("score") in SCORES and isinstance(rec.get("threshold"), (int, float))
        if not ok or not math.isfinite(rec["threshold"]):
            problems.append(f"open_set needs a 'score' (one of {', '.join(SCORES)}) and a finite 'threshold', "
                            f"not {rec!r}")
    return problems


def score_photos(model, config, raw, batch: int = 256) -> tuple:
    """Class probabilities (N, C) and every open-set score {name: (N,)} of raw features (N, D) or regions
    (N, R, C), in batches on the model's device (returned on the CPU)."""
    import torch

    model.eval()
    dev = next(model.parameters()).device
    tau = config.head.tau_student
    probs, scores = [], {}
    with torch.no_grad():
        for i in range(0, len(raw), batch):
            p, got = model.scores_with_open_set(raw[i:i + batch].to(dev), tau, config.attribute_norm)  # one pass
            probs.append(p.float().cpu())
            for name, s in got.items():
                scores.setdefault(name, []).append(s.float().cpu())
    n = len(config.class_names)
    return (torch.cat(probs) if probs else torch.zeros(0, n)), {k: torch.cat(v) for k, v in scores.items()}


def fit_records(model, config, raw, labels=None, keep: float = DEFAULT_KEEP, score: str | None = None,
                fitted_on: str = "") -> tuple[dict, dict | None]:
    """(``config.open_set``, ``config.confidence`` or None) fitted on photos of SEEN classes: their raw
    features (N, ...) and, when known, their class indices ``labels`` (N,) in the config's class list (the
    temperature needs them). ``score``: the open-set score (default: the method's ``open_set_default``).
    ValueError for an unseen-class label, a score the method does not compute, or no photos."""
    import torch

    if len(raw) == 0:
        raise ValueError("fitting the open-set threshold needs photos of seen classes")
    if labels is not None:
        labels = torch.as_tensor(labels).long()
        bad = sorted({config.class_names[i] for i in labels.tolist() if not config.seen[i]})
        if bad:
            raise ValueError(f"photos of unseen classes ({', '.join(bad[:3])}): the threshold is fitted on photos "
                             "of seen classes only")
    name = score or getattr(model, "open_set_default", "max_logit")
    probs, scores = score_photos(model, config, raw)
    if name not in scores:
        raise ValueError(f"{config.method} has no open-set score {name!r}; it computes {', '.join(scores)}")
    record = open_set_record(name, fit_threshold(scores[name].numpy(), keep), keep, len(raw), fitted_on)
    conf = None
    if labels is not None:
        seen = torch.tensor(config.seen, dtype=torch.float32)
        conf = {"temperature": fit_temperature(probs, labels, seen, config.calibration), "photos": int(len(labels)),
                "fitted_on": fitted_on}
    return record, conf
