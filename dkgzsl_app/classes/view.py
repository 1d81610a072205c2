"""The classifier's view of a bundle with its user classes: built-in tensors shared, user rows appended."""
from __future__ import annotations

import dataclasses

from ..sources import source_for_folder
from .model import bundle_key, head_width
from .registry import RegistryError, read_registry, registry_dir


def _shallow(module):
    """A copy of an nn.Module that shares its parameters and children but not its attribute tables."""
    import copy

    new = copy.copy(module)
    for table in ("_modules", "_buffers", "_parameters"):
        new.__dict__[table] = dict(module.__dict__[table])
    return new


def with_user_classes(bundle, device: str = "cpu"):
    """``bundle`` plus the user classes of its registry, as a new Bundle sharing every built-in tensor;
    ``bundle`` itself when the registry is empty. Raises RegistryError for a tampered registry."""
    key = bundle_key(bundle)
    if key is None:
        return bundle
    cfg = bundle.config
    model_name = source_for_folder(bundle.path) if bundle.path is not None else "MODEL"
    width = head_width(cfg)
    reg = read_registry(registry_dir(key), list(cfg.attribute_names), width, with_head=True, model=model_name)
    if not reg.names:
        return bundle
    clash = sorted(set(reg.names) & set(cfg.class_names))
    if clash:
        where = "" if model_name is None else f" --model {model_name}"
        raise RegistryError(f"{registry_dir(key)}: user class {clash[0]!r} clashes with a built-in class. "
                            f"Remove it with `dkgzsl classes remove {clash[0]}{where}`.")
    import torch

    from ..models.bundle import Bundle
    from .refit import AppendedHead

    base = bundle.model
    model = _shallow(base)
    if width:  # generative: the fitted rows extend the student head; else class_scores reads the attribute rows
        model.student = _shallow(base.student)
        model.student.head = AppendedHead(base.student.head, torch.from_numpy(reg.weight), torch.from_numpy(reg.bias))
    attrs = torch.from_numpy(reg.values).to(base.class_attributes.device)
    model.class_attributes = torch.cat([base.class_attributes, attrs])  # (C + n, A)
    config = dataclasses.replace(cfg, class_names=list(cfg.class_names) + list(reg.names),
                                 seen=list(cfg.seen) + [False] * len(reg))
    return Bundle(config=config, model=model.to(device), origins=list(bundle.origins) + ["user"] * len(reg),
                  path=bundle.path)
