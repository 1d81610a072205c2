"""Why a photo got its class: the attributes the model sees in it against the class's attribute vector.

The model has no attribute regressor of its own, so we fit a small, honest one at load time: closed-form
ridge regression from (scaled) features to class attribute vectors, trained on features the bundle's own
generator G synthesises for every class. That is the mapping the generator learned (attributes →
features) read backwards, not a claim about what a human sees; it takes well under a second.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Evidence:
    """One attribute: what the photo shows (``observed``) against what the class says (``expected``).

    ``agreement`` is the product of both values standardised over the bundle's classes: positive when
    the photo and the class depart from the typical class in the same direction, negative when not.
    """

    attribute: str
    observed: float
    expected: float
    agreement: float


class AttributeExplainer:
    """Ridge regression features (scaled as the head sees them) → attribute values."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, attribute_names: list[str],
                 class_attributes: np.ndarray, feature_min: np.ndarray, feature_scale: np.ndarray):
        self.weights, self.bias = weights, bias  # (D, A), (A,)
        self.attribute_names = list(attribute_names)
        self.feature_min, self.feature_scale = feature_min, feature_scale  # (D,), (D,)
        self.mean = class_attributes.mean(axis=0)  # (A,)
        self.spread = np.maximum(class_attributes.std(axis=0), 1e-6)  # (A,)

    @classmethod
    def fit(cls, model, attribute_names: list[str], attribute_norm: str = "l2", per_class: int = 32,
            ridge: float = 1e-2, seed: int = 0) -> "AttributeExplainer":
        """Fit on ``per_class`` generated features per class of ``model`` (a ZSLModel)."""
        import torch

        gen = torch.Generator().manual_seed(seed)
        targets = model.class_attributes.detach().cpu().double()  # (C, A), as in classes.csv
        cond = model.normalized_attributes(attribute_norm).detach().cpu()  # (C, A), as G consumes them
        g = model.generator
        if next(g.parameters()).device.type != "cpu":  # sample on the CPU (seeded), never moving the model's G
            import copy

            g = copy.deepcopy(g).cpu()
        with torch.inference_mode():
            x = g.sample(cond.repeat_interleave(per_class, 0), generator=gen).double()  # (N, D)
        y = targets.repeat_interleave(per_class, 0)  # (N, A)
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
        b = y_mean - x_mean @ w  # (A,)
        return cls(w.numpy(), b.numpy(), attribute_names, targets.numpy(),
                   model.feature_min.detach().cpu().double().numpy(),
                   model.feature_scale.detach().cpu().double().numpy())

    def predict_scaled(self, x: np.ndarray) -> np.ndarray:
        """Attribute values (B, A) for features already in the head's space (B, D)."""
        return np.asarray(x, dtype=np.float64) @ self.weights + self.bias

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Attribute values (B, A) for raw backbone features (B, D)."""
        x = (np.asarray(raw, dtype=np.float64) - self.feature_min) * self.feature_scale
        return self.predict_scaled(x)

    def explain(self, raw: np.ndarray, expected: np.ndarray) -> list[Evidence]:
        """Every attribute for one photo's raw features (D,) against a class vector (A,): agreements
        first (strongest first), then disagreements (strongest first)."""
        observed = self.predict(np.asarray(raw)[None])[0]
        expected = np.asarray(expected, dtype=np.float64)
        agree = ((observed - self.mean) / self.spread) * ((expected - self.mean) / self.spread)
        items = [Evidence(a, float(o), float(e), float(s))
                 for a, o, e, s in zip(self.attribute_names, observed, expected, agree)]
        pos = sorted((i for i in items if i.agreement > 0), key=lambda i: -i.agreement)
        neg = sorted((i for i in items if i.agreement <= 0), key=lambda i: i.agreement)
        return pos + neg
