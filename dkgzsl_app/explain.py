"""Why a photo got its class: the attributes the model sees in it against the class's attribute vector.

Works for every method through the plug-in interface (``models/methods``): a photo's raw backbone features
(pooled (D,) or a region map (R, C)) go through ``model.visual`` or ``model.attribute_scores``; nothing
here knows which method it is. Three read-outs, named by ``AttributeExplainer.source``:

* ``"ara"`` — the model has an attribute read-out of its own (DKGZSL's ARA: one attention query per
  attribute over the photo's regions). Its scores are on their own scale, so each attribute's score is
  mapped onto the class-attribute scale by a 1-D least-squares fit (value ≈ α_a·score_a + β_a) on a
  reference: for each class, generated features G(z, a_k) in v-space, turned back into raw features and
  given to the model as a region map whose every region is that feature (for such a map FDE keeps every
  region alike and every ARA query attends to that one feature, so its scores are ARA's read-out of
  the generated class feature). Real photos attend to some regions more than others, so their scores
  can be more extreme than the reference's: the mapped values may leave the classes' range, but their
  direction per attribute is what the fit says. The map is fitted once per region-map shape, at the first
  photo of that shape (8 features per class; 2.3 s for a random-weight 48-class, 49×1280, attn 128 model on
  a busy 2-core CPU, later photos ~1 ms). Per-attribute z-scores of ARA's scores against the same
  reference were the alternative. On a tiny trained DKGZSL (``make_region_set``, the tests' widths,
  attn 32, lr and sovr_lr 1e-3, 40 warm-up + 20 epochs), attribute accuracy (value > 0.5) on its test
  photos, seen / unseen:
  this fit 0.96 / 0.76 (MAE 0.22 / 0.39), z-scores 0.96 / 0.74 (MAE 0.30 / 0.39), ridge on v 0.72 / 0.62,
  the best constant per attribute 0.62 / 0.73; a fit on the test photos themselves, 0.98 / 0.85.
* ``"ridge"`` — no read-out of its own (D3GZSL, or DKGZSL without ARA): closed-form ridge regression
  from the feature v the model classifies (``model.visual``) to class attribute vectors, fitted on
  features the bundle's own generator G synthesises for every class. That is the mapping the generator
  learned (attributes → features) read backwards, not a claim about what a human sees; it takes well under
  a second.
* ``"posterior"`` — a model without a generator (MSDN, MSDN++: its own attribute scores have no reference to
  be mapped onto the class scale with): the class attribute vectors weighted by the model's class
  probabilities for the photo, i.e. the attributes of the classes the model believes it shows. Circular
  by design (it follows the prediction), so it says which attributes drove the choice, not what was seen.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

PROBE_REGIONS = 1024  # regions of the dummy map that asks a region model whether it reads attributes
# how the TUI names each read-out
SOURCES = {"ara": "ARA attention", "ridge": "ridge read-out", "posterior": "class-posterior read-out"}


@dataclass
class Evidence:
    """One attribute: what the photo shows (``observed``) against what the class says (``expected``).

    ``agreement`` is the product of both values standardised over the bundle's classes: positive when
    the photo and the class depart from the typical class in the same direction, negative when not.
    ``source`` is the read-out that gave ``observed`` ("ara" or "ridge"; see the module docstring).
    """

    attribute: str
    observed: float
    expected: float
    agreement: float
    source: str = "ridge"


def _solve_ridge(x, y, ridge: float):
    """Closed-form ridge regression of y (N, A) on x (N, D), float64 tensors → (weights (D, A), bias (A,))."""
    import torch

    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    # the smaller of the primal (D×D) and dual (N×N) systems; λ relative to the data's scale
    if n < d:
        gram = xc @ xc.T  # (N, N)
        lam = ridge * float(gram.trace()) / n
        w = xc.T @ torch.linalg.solve(gram + lam * torch.eye(n, dtype=gram.dtype), yc)  # (D, A)
    else:
        cov = xc.T @ xc  # (D, D)
        lam = ridge * float(cov.trace()) / d
        w = torch.linalg.solve(cov + lam * torch.eye(d, dtype=cov.dtype), xc.T @ yc)  # (D, A)
    return w, y_mean - x_mean @ w


class AttributeExplainer:
    """Attribute values (B, A) read out of raw backbone features, on the class-attribute scale.

    Built by ``fit``; ``source`` says which read-out (``"ara"`` or ``"ridge"``).
    """

    def __init__(self, model, attribute_names: list[str], class_attributes: np.ndarray, source: str,
                 weights: np.ndarray | None = None, bias: np.ndarray | None = None,
                 reference: tuple | None = None):
        if source not in SOURCES:
            raise ValueError(f"unknown attribute read-out {source!r}: use {' or '.join(SOURCES)}")
        self.model, self.source = model, source
        self.weights, self.bias = weights, bias  # ridge: (D, A), (A,) in v-space
        self.reference = reference  # ara: (generated v (N, D) float32 tensor, their class values (N, A))
        self.attribute_names = list(attribute_names)
        self.class_values = class_attributes  # (K, A): the posterior read-out's rows
        self.mean = class_attributes.mean(axis=0)  # (A,)
        self.spread = np.maximum(class_attributes.std(axis=0), 1e-6)  # (A,)
        self._calibration: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # feature shape → (α (A,), β (A,))
        self._lock = threading.Lock()

    @classmethod
    def fit(cls, model, attribute_names: list[str], attribute_norm: str = "l2", per_class: int = 32,
            ridge: float = 1e-2, seed: int = 0, reference_per_class: int = 8) -> "AttributeExplainer":
        """Fit on features G generates for every class of ``model`` (a method's model, see models/methods):
        ``per_class`` each for the ridge, or ``reference_per_class`` each for the ARA reference."""
        import torch

        gen = torch.Generator().manual_seed(seed)
        targets = model.class_attributes.detach().cpu().double()  # (K, A), as in classes.csv
        if getattr(model, "generator", None) is None:  # nothing to generate a reference or a ridge from
            return cls(model, attribute_names, targets.numpy(), "posterior")
        cond = model.normalized_attributes(attribute_norm).detach().cpu()  # (K, A), as G consumes them
        g = model.generator
        if next(g.parameters()).device.type != "cpu":  # sample on the CPU (seeded), never moving the model's G
            import copy

            g = copy.deepcopy(g).cpu()
        has_own = _has_attribute_readout(model)
        k = reference_per_class if has_own else per_class
        with torch.inference_mode():
            x = g.sample(cond.repeat_interleave(k, 0), generator=gen)  # (N, D) in v-space
        y = targets.repeat_interleave(k, 0)  # (N, A)
        if has_own:
            return cls(model, attribute_names, targets.numpy(), "ara", reference=(x, y.numpy()))
        w, b = _solve_ridge(x.double(), y, ridge)
        return cls(model, attribute_names, targets.numpy(), "ridge", w.numpy(), b.numpy())

    # ---- read-outs -----------------------------------------------------------------------------------------
    def predict_scaled(self, x: np.ndarray) -> np.ndarray:
        """The ridge read-out (B, A) of features already in the model's v-space (B, D)."""
        if self.weights is None:
            raise ValueError("this explainer reads attributes with the model's own read-out (ARA), not a ridge "
                             "on v: use predict() on raw features")
        return np.asarray(x, dtype=np.float64) @ self.weights + self.bias

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Attribute values (B, A) for raw backbone features: pooled (B, D) or region maps (B, R, C)."""
        raw = np.asarray(raw)
        if self.source == "posterior":
            return self._run(self.model.class_scores, raw) @ self.class_values  # (B, K) @ (K, A)
        if self.source == "ridge":
            return self.predict_scaled(self._run(self.model.visual, raw))
        alpha, beta = self._calibrate(raw.shape[1:])
        return self._run(self.model.attribute_scores, raw) * alpha + beta

    def _run(self, fn, raw: np.ndarray) -> np.ndarray:
        """``fn`` (a model method) on raw features, in the model's dtype and on its device → float64 numpy."""
        import torch

        ref = self.model.feature_min  # every model has it; says where the model lives and its dtype
        with torch.inference_mode():
            out = fn(torch.as_tensor(raw).to(ref.device, ref.dtype))
        return out.double().cpu().numpy()

    def _calibrate(self, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) (A,) mapping the model's attribute scores for features of ``shape`` onto the class scale."""
        with self._lock:
            if shape not in self._calibration:
                self._calibration[shape] = self._fit_calibration(shape)
            return self._calibration[shape]

    def _fit_calibration(self, shape: tuple, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
        import torch

        v, y = self.reference  # (N, D) generated, (N, A) their classes' values
        m = self.model
        lo, scale = m.feature_min.detach().cpu(), m.feature_scale.detach().cpu()
        raw = torch.where(scale > 0, v / scale.clamp_min(1e-12) + lo, lo)  # (N, C): scale_features(raw) = v
        if len(shape) == 2:  # region maps (R, C): every region the generated feature
            raw = raw.unsqueeze(1).expand(-1, shape[0], -1)  # (N, R, C)
        scores = np.concatenate([self._run(m.attribute_scores, raw[i:i + chunk].numpy())
                                 for i in range(0, len(raw), chunk)])  # (N, A)
        s = scores - scores.mean(0)
        var = (s * s).sum(0)  # (A,)
        alpha = np.where(var > 1e-12, (s * (y - y.mean(0))).sum(0) / np.maximum(var, 1e-12), 0.0)
        return alpha, y.mean(0) - alpha * scores.mean(0)

    # ---- the explanation -----------------------------------------------------------------------------------
    def explain(self, raw: np.ndarray, expected: np.ndarray) -> list[Evidence]:
        """Every attribute for one photo's raw features ((D,) or (R, C)) against a class vector (A,):
        agreements first (strongest first), then disagreements (strongest first)."""
        observed = self.predict(np.asarray(raw)[None])[0]
        expected = np.asarray(expected, dtype=np.float64)
        agree = ((observed - self.mean) / self.spread) * ((expected - self.mean) / self.spread)
        items = [Evidence(a, float(o), float(e), float(s), self.source)
                 for a, o, e, s in zip(self.attribute_names, observed, expected, agree)]
        pos = sorted((i for i in items if i.agreement > 0), key=lambda i: -i.agreement)
        neg = sorted((i for i in items if i.agreement <= 0), key=lambda i: i.agreement)
        return pos + neg


def _has_attribute_readout(model) -> bool:
    """Whether ``model`` reads attributes itself (``attribute_scores`` not None), asked on one dummy input.

    Dummy input: the model's feature minimum, pooled (1, D), or for a method that consumes regions (its
    ``feature_kind``) a map of PROBE_REGIONS such regions (1, R, C): more than any top-k mask keeps."""
    import torch

    x = model.feature_min.detach().unsqueeze(0)  # (1, D)
    if getattr(model, "feature_kind", "pooled") == "regions":
        x = x.unsqueeze(1).expand(-1, PROBE_REGIONS, -1)  # (1, R, C)
    with torch.inference_mode():
        return model.attribute_scores(x) is not None
