"""Methods as plug-ins: one module per method, one small interface, chosen by a bundle's ``method``.

A method module (``d3gzsl.py``, ``dkgzsl.py``, ``msdn.py``, ``msdnpp.py``) defines a model class (a torch ``nn.Module``) that the rest
of dkgzsl uses without knowing which method it is:

* ``from_config(config)`` builds it from a bundle's ModelConfig (``config.options`` holds the method's own
  settings, checked by the method's ``Options`` dataclass);
* ``feature_kind``: what it consumes, ``"pooled"`` (B, D) or ``"regions"`` (B, R, C) backbone features
  (also written as ``config.feature_kind``, so the app knows what to extract before loading weights);
* ``class_scores(raw, tau)`` → probabilities over all classes (B, C); ``visual(raw)`` → the feature v
  (B, D) that generation and classification work in; ``attribute_scores(raw)`` → (B, A) or None when the
  method has no attribute read-out of its own;
* ``scores_with_open_set(raw, tau, attribute_norm)`` → (``class_scores``, ``open_set_scores``) in one pass
* ``open_set_scores(raw, tau, attribute_norm)`` → {score name: (B,)}, higher = more like the model's classes
  (msp, max_logit, energy for every method; ``prototype`` for generative ones, ``attribute_cosine`` for
  MSDN), and ``open_set_default``, the score ``train`` fits the rejection threshold for; the confidence and
  the threshold themselves are method-independent (``models/openset.py``);
* adding a class from an attribute vector, one of two ways, said by the class attribute
  ``classes_from_attributes``:
  - True (embedding methods: MSDN, MSDN++): ``class_scores`` compares features with every row of the
    ``class_attributes`` buffer (C, A), so the app's class registry adds a class by appending its row
    there: nothing is fitted or generated, and the built-in classes' logits do not change;
  - False or absent (generative methods): the model exposes ``generator`` (``generator(z, a)`` and
    ``generator.sample(a)`` in v-space) and the unified classifier ``student`` (E_s, C_s), which the
    registry extends with new rows fitted on generated features (``dkgzsl_app/classes/refit.py``);
    ``student_features(v)`` maps v-space features, real or generated, to what ``student`` reads: v itself,
    or h = E(v) when the generator is CE-GZSL's (``config.generator.kind``, models/cegzsl.py).
* optionally ``training_only_parts()`` → the dotted names of sub-modules inference never reads (a slim
  bundle leaves them out and the loader builds the model without them, models/parts.py); none when absent.

The training side mirrors this in ``trainer/methods.py``. This module stays torch-free: the names are
checked when a config is read; the classes are imported only to build a model.
"""
from __future__ import annotations

import importlib

from ..errors import BundleError

IMPLEMENTED = ("d3gzsl", "dkgzsl", "msdn", "msdnpp")
# Names that are not methods: CE-GZSL is a generator under a generative method (config.generator.kind, models/cegzsl.py)
GENERATOR_NAMES = ("ce-gzsl",)
# Bundles written before methods were plug-ins labelled D3GZSL's baseline ablation (generator + the unified
# classifier trained with L_cls only) "f-clswgan"; its networks are exactly D3GZSL's, so it loads as that.
LEGACY = {"f-clswgan": "d3gzsl"}
FEATURE_KINDS = ("pooled", "regions")


def canonical_method(name: str, where: str = "") -> str:
    """The implemented method ``name`` stands for, or BundleError saying why it cannot be used."""
    name = LEGACY.get(name, name)
    if name in IMPLEMENTED:
        return name
    prefix = f"{where}: " if where else ""
    if name in GENERATOR_NAMES:
        raise BundleError(f"{prefix}{name!r} is not implemented as a method: it is a generator. A CE-GZSL bundle "
                          f"names its method (d3gzsl or dkgzsl) and says generator.kind {name!r}; train one with "
                          f"`dkgzsl train --method d3gzsl --generator {name}`.")
    raise BundleError(f"{prefix}unknown method {name!r}; dkgzsl knows {', '.join(IMPLEMENTED)} (a bundle from a "
                      "newer dkgzsl may need an upgrade).")


def model_class(name: str):
    """The model class of method ``name`` (imports torch)."""
    module = importlib.import_module(f".{canonical_method(name)}", __name__)
    return module.MODEL


def build_model(config):
    """A freshly initialised model for a ModelConfig (weights are loaded by the bundle reader)."""
    return model_class(config.method).from_config(config)
