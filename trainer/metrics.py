"""Generalized zero-shot evaluation: per-class accuracy, calibrated stacking, the seen-unseen curve.

NumPy only; callers convert tensors (``t.detach().cpu().numpy()``). Everywhere below ``scores`` is an
(N, C) array of class scores (probabilities or logits) over all classes, ``labels`` (N,) 0-based class
indices and ``seen`` a (C,) bool mask. Accuracies are per-class means of top-1 accuracy (METHODS.md).

Calibration (Chao et al. 2016) predicts ``argmax(scores - gamma * seen)``: per image its best seen class
``ps`` (score ``bs``) wins while gamma < d = bs - bu, then its best unseen class ``pu`` (score ``bu``).
Ties follow ``np.argmax`` (lowest index): at gamma == d the image predicts ``min(ps, pu)``. Exactly at a
gap float rounding of ``scores - gamma`` can decide, so the curve and default grid use gammas between gaps.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..models.atomic import atomic_write_bytes

_TIE_TOL = 1e-12  # H values this close count as equal when choosing gamma


def _check(scores, labels, seen) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    n, c = scores.shape
    seen = np.asarray(seen).astype(bool)
    if seen.shape != (c,):
        raise ValueError(f"seen must be a ({c},) bool mask, got shape {seen.shape}")
    if labels.shape != (n,) or n and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must be ({n},) ints in [0, {c}), got {labels.shape} {labels.dtype}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, labels.astype(np.int64), seen


def per_class_accuracy(pred, labels, classes=None) -> float:
    """Mean over classes of top-1 accuracy, so rare classes weigh as much as frequent ones.

    Args:
        pred: (N,) predicted class indices.
        labels: (N,) true class indices.
        classes: optional class indices; only images of these classes count, and classes without
            images are skipped. Default: every class present in ``labels``.

    Returns:
        The mean of per-class accuracies, or nan if no class has images.
    """
    pred, labels = np.asarray(pred).ravel(), np.asarray(labels).ravel().astype(np.int64)
    if labels.size == 0:
        return math.nan
    size = labels.max() + 1
    counts = np.bincount(labels, minlength=size)
    hits = np.bincount(labels, weights=(pred == labels), minlength=size)
    use = counts > 0
    if classes is not None:
        use &= np.isin(np.arange(size), np.asarray(classes, dtype=np.int64))
    return float(np.mean(hits[use] / counts[use])) if use.any() else math.nan


def calibrated_predictions(scores, seen, gamma: float) -> np.ndarray:
    """(N,) predictions of calibrated stacking, ``argmax(scores - gamma * seen)``, ties to the lowest index.

    A positive gamma penalises seen classes; a negative one favours them.
    """
    scores, seen = np.asarray(scores), np.asarray(seen).astype(bool)
    return np.argmax(scores - gamma * seen, axis=1).astype(np.int64)  # (N,)


@dataclass
class GZSLResult:
    """GZSL numbers at one calibration ``gamma``; AUSUC is gamma-free (None when not computed)."""

    seen_acc: float
    unseen_acc: float
    harmonic: float
    czsl: float
    gamma: float
    ausuc: float | None = None

    def as_dict(self) -> dict:
        """Plain-float dict for JSON; nan (a side without images) becomes None."""
        return {k: None if v is None or math.isnan(v) else float(v) for k, v in asdict(self).items()}


def _harmonic(s: np.ndarray, u: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        h = 2.0 * s * u / (s + u)
    return np.where(np.isfinite(h) & (s + u > 0), h, 0.0)


def harmonic_mean(s, u) -> float:
    """``2su / (s + u)``; 0 when both are 0 or either is nan (a side without images)."""
    return float(_harmonic(np.float64(s), np.float64(u)))


def gzsl_accuracy(scores, labels, seen, gamma=0.0) -> tuple[float, float, float]:
    """Seen accuracy S, unseen accuracy U and their harmonic mean H, predicting over all classes.

    Args:
        scores, labels, seen: (N, C) scores, (N,) true classes, (C,) seen mask.
        gamma: calibration penalty on seen classes.

    Returns:
        (S, U, H); S or U is nan when no test image belongs to that side, and then H is 0.
    """
    scores, labels, seen = _check(scores, labels, seen)
    pred = calibrated_predictions(scores, seen, gamma)
    s = per_class_accuracy(pred, labels, np.flatnonzero(seen))
    u = per_class_accuracy(pred, labels, np.flatnonzero(~seen))
    return s, u, harmonic_mean(s, u)


def czsl_accuracy(scores, labels, seen) -> float:
    """Conventional ZSL: unseen-class images, argmax over unseen classes only; nan if there are none."""
    scores, labels, seen = _check(scores, labels, seen)
    unseen_idx = np.flatnonzero(~seen)
    rows = ~seen[labels]
    if unseen_idx.size == 0 or not rows.any():
        return math.nan
    pred = unseen_idx[np.argmax(scores[rows][:, unseen_idx], axis=1)]
    return per_class_accuracy(pred, labels[rows])


def _gaps(scores: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: gap ``d = bs - bu`` (float64), best seen class ``ps``, best unseen class ``pu``."""
    n, rows = scores.shape[0], np.arange(scores.shape[0])

    def best(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if idx.size == 0:  # dummy class; the gap below keeps such images on the other side
            return np.zeros(n, dtype=np.int64), np.zeros(n)
        sub = scores[:, idx]  # (N, |idx|)
        arg = np.argmax(sub, axis=1)
        return idx[arg], sub[rows, arg].astype(np.float64)

    ps, bs = best(np.flatnonzero(seen))
    pu, bu = best(np.flatnonzero(~seen))
    with np.errstate(invalid="ignore"):
        d = bs - bu
    # inf - inf: both sides tie at every gamma, so the lower index always wins
    d = np.where(np.isnan(d), np.where(ps < pu, np.inf, -np.inf), d)
    if seen.all() or not seen.any():  # one side has no classes: nothing ever switches
        d = np.full(n, np.inf if seen.all() else -np.inf)
    return d, ps, pu


def _accuracy_at(d, ps, pu, labels, seen, gammas) -> tuple[np.ndarray, np.ndarray]:
    """Exact S(gamma), U(gamma) for many gammas at once from prefix sums over the sorted gaps.

    S and U are weighted sums of per-image correctness (weight 1 / (images of its class * classes on
    its side)); sorted by gap, the images on the unseen side form a prefix, ties a middle block.
    """
    gammas = np.atleast_1d(np.asarray(gammas, dtype=np.float64))
    out = np.full((2, gammas.size), np.nan)
    order = np.argsort(d, kind="stable")
    counts = np.bincount(labels, minlength=seen.size).astype(np.float64)
    lo, hi = (np.searchsorted(d[order], gammas, side=side) for side in ("left", "right"))
    c_s, c_u = (ps == labels), (pu == labels)
    c_t = np.where(ps < pu, c_s, c_u)  # correctness when tied
    for side, mask in enumerate((seen, ~seen)):
        k = np.count_nonzero(mask & (counts > 0))
        if k == 0:
            continue
        w = np.where(mask[labels], 1.0 / (counts[labels] * k), 0.0)[order]  # (N,)
        cum = [np.concatenate(([0.0], np.cumsum(w * c[order]))) for c in (c_u, c_t, c_s)]
        val = cum[0][lo] + (cum[1][hi] - cum[1][lo]) + (cum[2][-1] - cum[2][hi])
        out[side] = np.clip(val, 0.0, 1.0)
    return out[0], out[1]


def _curve_gammas(d: np.ndarray) -> np.ndarray:
    """One gamma per prediction state: below all gaps, midpoints between distinct gaps, above all."""
    g = np.unique(d[np.isfinite(d)])
    if g.size == 0:
        return np.zeros(1)
    margin = max(1.0, abs(g[0]), abs(g[-1]))
    mids = g[:-1] + (g[1:] - g[:-1]) / 2.0
    return np.concatenate(([g[0] - margin], mids, [g[-1] + margin]))


def seen_unseen_curve(scores, labels, seen) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact seen-unseen accuracy curve of calibrated stacking.

    Predictions are piecewise constant in gamma and change only at per-image gaps ``bs - bu``; the
    curve has one point per distinct prediction state, evaluated at a gamma strictly between gaps.

    Returns:
        (gammas, S, U), gammas ascending: from everything predicted seen (U = 0 unless some image has
        no finite seen score) to everything predicted unseen (S = 0). S or U is all-nan for a side
        without test images.
    """
    scores, labels, seen = _check(scores, labels, seen)
    d, ps, pu = _gaps(scores, seen)
    gammas = _curve_gammas(d)
    return (gammas, *_accuracy_at(d, ps, pu, labels, seen, gammas))


def choose_gamma(scores, labels, seen, grid=None) -> tuple[float, float]:
    """(gamma, H at gamma) for the gamma that maximises H; ties go to the smallest ``|gamma|``.

    Choose on a validation split, never on test (METHODS.md).

    Args:
        scores, labels, seen: as in ``gzsl_accuracy``.
        grid: candidate gammas. Default: 0 plus one gamma per distinct prediction state (see
            ``seen_unseen_curve``), which is data-driven and exact whatever the score scale.
    """
    scores, labels, seen = _check(scores, labels, seen)
    d, ps, pu = _gaps(scores, seen)
    if grid is None:
        grid = np.append(_curve_gammas(d), 0.0)
    grid = np.asarray(grid, dtype=np.float64).ravel()
    if grid.size == 0 or not np.isfinite(grid).all():
        raise ValueError("grid must hold at least one gamma, all finite")
    h = _harmonic(*_accuracy_at(d, ps, pu, labels, seen, grid))
    best = np.flatnonzero(h >= h.max() - _TIE_TOL)
    i = best[np.argmin(np.abs(grid[best]))]
    return float(grid[i]), float(h[i])


def seen_side_rate(scores, seen, gamma: float) -> float:
    """Share of images whose calibrated prediction (``argmax(scores - gamma * seen)``) is a seen class."""
    scores, seen = np.asarray(scores), np.asarray(seen).astype(bool)
    if scores.shape[0] == 0:
        return math.nan
    return float(seen[calibrated_predictions(scores, seen, gamma)].mean())


def gamma_for_seen_rate(scores, seen, rate: float) -> float:
    """The largest gamma at which at least ``rate`` of the images are still predicted as seen classes.

    For images of seen classes (held out of training) this transfers an operating point between models
    whose score scales differ. The gamma lies midway between two images' gaps ``d = bs - bu`` (an image
    is predicted seen while gamma < d), so rounding cannot flip an image.
    """
    scores, seen = np.asarray(scores), np.asarray(seen).astype(bool)
    d = np.sort(_gaps(scores, seen)[0])
    if d.size == 0 or not np.isfinite(d).any():
        return 0.0
    d = np.clip(d, np.min(d[np.isfinite(d)]) - 1.0, np.max(d[np.isfinite(d)]) + 1.0)
    keep = min(d.size, max(0, math.ceil(float(rate) * d.size - 1e-9)))  # images that must stay seen
    cut = d.size - keep  # d[cut:] stay seen, d[:cut] may go unseen
    if cut == 0:
        return float(d[0] - max(1e-6, (d[1] - d[0]) / 2 if d.size > 1 else 1e-6))
    if cut == d.size:
        return float(d[-1] + 1e-6)
    return float(d[cut - 1] + (d[cut] - d[cut - 1]) / 2)


def _closed(s: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(([0.0], u, [u[-1]])), np.concatenate(([s[0]], s, [0.0]))


def _area(s: np.ndarray, u: np.ndarray) -> float:
    """Trapezoid area under S over U, the curve closed at the axes: (0, S_max) ... (U_max, 0)."""
    if s.size == 0 or np.isnan(s).any() or np.isnan(u).any():
        return math.nan
    x, y = _closed(s, u)
    return float(np.clip(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0), 0.0, 1.0))


def ausuc(scores, labels, seen) -> float:
    """Area under the seen-unseen accuracy curve (x = U, y = S), in [0, 1]; nan if a side has no images."""
    _, s, u = seen_unseen_curve(scores, labels, seen)
    return _area(s, u)


def evaluate_gzsl(scores, labels, seen, gamma=0.0, with_ausuc=True) -> GZSLResult:
    """S, U, H at ``gamma``, CZSL accuracy and (optionally) AUSUC in one result."""
    s, u, h = gzsl_accuracy(scores, labels, seen, gamma)
    area = ausuc(scores, labels, seen) if with_ausuc else None
    return GZSLResult(s, u, h, czsl_accuracy(scores, labels, seen), float(gamma), area)


def thin_curve(gammas, s, u, points: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ``points`` points of a seen-unseen curve, enough to draw it: the first, the last, and the
    points where the polyline's length in (U, S) crosses equal steps, so its corners survive. A curve
    with nan (a side without images) is returned whole when short, else ``points`` evenly spaced points.
    (The area is the full curve's: ``ausuc``; a thinned curve only draws it.)"""
    g, s, u = (np.asarray(a, dtype=np.float64).ravel() for a in (gammas, s, u))
    if s.size <= points:
        return g, s, u
    if np.isnan(s).any() or np.isnan(u).any():
        keep = np.unique(np.linspace(0, s.size - 1, points).round().astype(np.int64))
    else:
        arc = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(u), np.diff(s)))))
        keep = np.searchsorted(arc, np.linspace(0.0, arc[-1], points - 1), side="left")
        keep = np.unique(np.append(np.minimum(keep, s.size - 1), [0, s.size - 1]))
    return g[keep], s[keep], u[keep]


def plot_seen_unseen_curve(gammas, s, u, path, title="", mark=None, area=None, mark_label="") -> None:
    """Write the seen-unseen curve as a PNG (PIL only), atomically.

    Args:
        gammas, s, u: the (K,) arrays from ``seen_unseen_curve`` (or ``thin_curve``).
        path: output .png path; the parent folder is created.
        title: text before the AUSUC in the title line.
        mark: optional (U, S) point to mark, e.g. the chosen gamma's operating point.
        area: the AUSUC to print (default: the area under ``s``, ``u``; give the full curve's for a thinned one).
        mark_label: text written beside ``mark`` (e.g. "γ = 0.57").
    """
    from PIL import Image, ImageDraw, ImageFont

    s, u = np.asarray(s, dtype=np.float64).ravel(), np.asarray(u, dtype=np.float64).ravel()
    if not (len(gammas) == s.size == u.size):
        raise ValueError(f"gammas, s, u must have equal lengths, got {len(gammas)}, {s.size}, {u.size}")
    size, left, right, top, bottom = 520, 64, 24, 44, 56
    w, h = size - left - right, size - top - bottom
    img = Image.new("RGB", (size, size), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()

    def px(x: float, y: float) -> tuple[float, float]:
        return left + x * w, top + (1.0 - y) * h

    for t in np.linspace(0.0, 1.0, 6):  # grid lines that overshoot the axes double as ticks
        gx, gy = px(t, t)
        draw.line([(gx, top), (gx, top + h + 5)], fill=(200, 200, 200))
        draw.line([(left - 5, gy), (left + w, gy)], fill=(200, 200, 200))
        draw.text((gx - 8, top + h + 8), f"{t:.1f}", fill="black", font=font)
        draw.text((left - 30, gy - 6), f"{t:.1f}", fill="black", font=font)
    draw.rectangle([left, top, left + w, top + h], outline="black")
    draw.text((left + w / 2 - 50, size - 22), "U (unseen accuracy)", fill="black", font=font)
    draw.text((4, top - 18), "S (seen accuracy)", fill="black", font=font)
    area = _area(s, u) if area is None else float(area)
    if s.size and not (np.isnan(s).any() or np.isnan(u).any()):
        draw.line([px(x, y) for x, y in zip(*_closed(s, u))], fill=(31, 119, 180), width=2)
    if mark is not None and all(math.isfinite(v) for v in mark):
        mx, my = px(float(mark[0]), float(mark[1]))
        draw.ellipse([mx - 5, my - 5, mx + 5, my + 5], outline=(214, 39, 40), width=2)
        if mark_label:  # beside the point, on the side with room
            tx = mx + 9 if mx < left + w - 110 else mx - 9 - draw.textlength(mark_label, font=font)
            draw.text((tx, my - 14 if my > top + 20 else my + 6), mark_label, fill=(214, 39, 40), font=font)
    label = "AUSUC n/a" if math.isnan(area) else f"AUSUC {area:.4f}"
    draw.text((left, 12), f"{title}  {label}".strip(), fill="black", font=font)

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())  # creates the folder; OutputError if it cannot be written
