"""Which parts of a bundle's model inference reads, slim bundles that hold only those, and building the model
on the meta device so that loading assigns the file's tensors instead of initialising at random and then
overwriting.

What inference reads, per method (classify, ``evaluate``, add-class, open-set scoring and
``calibrate-openset``, the TUI's explanations; checked against every call site in dkgzsl_app):

==========================  =================================================  ===============================
method                      read at inference                                  training only (slim omits it)
==========================  =================================================  ===============================
d3gzsl                      student (E_s, C_s); generator G (add-class rows,   critic, teacher, ood_head,
                            the ``prototype`` open-set score, the ridge         epsilon
                            explanation); buffers class_attributes,
                            feature_min, feature_scale
dkgzsl                      the same, G with KTN/MFU, and SOVR (FDE, ARA:      critic, teacher, ood_head,
                            v, attribute scores, the ARA explanation)          epsilon
ce-gzsl generator (either   the same plus CE-GZSL's embedding E               + contrastive.project,
of the two above)           (``contrastive.embed``: the student reads h)      contrastive.compare1/compare2
msdn, msdnpp                every tensor (attr_embed, W₁…W₄, buffers)          nothing
==========================  =================================================  ===============================

A method names its training-only sub-modules with ``training_only_parts()`` (models/networks.py's ZSLModel);
a method without it has none. A slim bundle's config.json lists the ones its model.safetensors leaves out
(``omitted_parts``; absent = every part, the files of before); the loader builds the model without them, so
its tensor check (names, shapes, the weights' SHA-256) is as strict as for a full bundle. Bundles do not
store optimiser state (run checkpoints do), so there is nothing else to leave out.
"""
from __future__ import annotations

from .errors import BundleError


def training_only(model) -> tuple[str, ...]:
    """The sub-module names (dotted) of ``model`` that inference never reads; () for a method without any."""
    fn = getattr(model, "training_only_parts", None)
    return tuple(fn()) if callable(fn) else ()


def check_omitted(config, model, where: str) -> list[str]:
    """The parts ``config.omitted_parts`` leaves out ([] for a full bundle); BundleError when it is malformed
    or names a part inference reads (or one the method does not have)."""
    omitted = config.omitted_parts
    if omitted is None:
        return []
    if not isinstance(omitted, list) or not all(isinstance(p, str) for p in omitted):
        raise BundleError(f"{where}: omitted_parts must be a list of part names, not {omitted!r}.")
    allowed = training_only(model)
    bad = [p for p in omitted if p not in allowed]
    if bad:
        raise BundleError(f"{where}: omitted_parts names {', '.join(map(repr, bad))}, which a {config.method} bundle "
                          f"cannot leave out (inference reads it, or the model has no such part); it may leave out "
                          f"{', '.join(allowed) or 'nothing'}. The bundle was edited by hand or is corrupt.")
    if len(set(omitted)) != len(omitted):
        raise BundleError(f"{where}: omitted_parts names a part twice ({omitted}).")
    return list(omitted)


def drop_parts(model, parts) -> None:
    """Remove the sub-modules ``parts`` (dotted names) from ``model`` in place: they become None, so their
    tensors leave ``state_dict()`` and nothing can run them."""
    for name in parts:
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, None)


def build(config, where: str, meta: bool = False):
    """The model of ``config`` without the parts it omits. ``meta``: built on the meta device (no memory, no
    random draws: the tensors come from the file, ``assign``); else initialised at random on the CPU, as
    before. BundleError when the method's options do not fit or ``omitted_parts`` is wrong."""
    import torch

    from .methods import build_model

    try:
        if meta:
            with torch.device("meta"):
                model = build_model(config)
        else:
            model = build_model(config)
    except (TypeError, ValueError) as e:  # options the method does not know, or values it cannot take
        raise BundleError(f"{where}: {config.method} options do not fit ({e}).") from None
    drop_parts(model, check_omitted(config, model, where))
    return model


def meta_leftovers(model) -> list[str]:
    """Names of tensors still on the meta device: parameters, buffers (a non-persistent buffer is not in the
    file) and plain tensor attributes of every sub-module."""
    import torch

    left = []
    for prefix, module in model.named_modules():
        for table in ("_parameters", "_buffers"):
            left += [f"{prefix}.{n}".lstrip(".") for n, t in module.__dict__[table].items()
                     if t is not None and t.is_meta]
        left += [f"{prefix}.{n}".lstrip(".") for n, t in vars(module).items()
                 if isinstance(t, torch.Tensor) and t.is_meta]
    return left


def assign(model, tensors: dict) -> bool:
    """Put the file's ``tensors`` (every name of ``model.state_dict()``, shapes checked by the caller) into
    ``model`` built on the meta device. Each becomes one tensor of its own in torch's allocator, in the
    model's dtype: the same memory and values the old path's ``copy_`` into freshly initialised tensors made,
    so every result is the same bit for bit. False when a tensor not stored in the file is left on the meta
    device (a non-persistent buffer, a tensor computed at init): the caller then builds the model the old way."""
    own = {}
    for name, ref in model.state_dict().items():
        t = tensors[name]
        own[name] = t.to(ref.dtype) if t.dtype != ref.dtype else t.clone()
    model.load_state_dict(own, strict=True, assign=True)
    return not meta_leftovers(model)


def slim_config_and_model(bundle):
    """Strip ``bundle.model``'s training-only parts in place. Returns (a copy of its config saying which parts
    the bundle omits, weights_sha256 cleared for save_bundle; the parts newly left out, [] when it was slim
    already or its method has nothing to leave out)."""
    import dataclasses

    had = list(bundle.config.omitted_parts or [])
    parts = training_only(bundle.model)
    new = [p for p in parts if p not in had]
    drop_parts(bundle.model, new)
    omitted = [p for p in parts if p in had or p in new]
    config = dataclasses.replace(bundle.config, omitted_parts=omitted or None, weights_sha256="")
    return config, new
