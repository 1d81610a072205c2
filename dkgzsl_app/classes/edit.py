"""Changing the class registry of a model: add, remove, rename, repair; and reading it as a class table.

Each change takes the registry's writer lock, reads the current state, and commits a new one (refitting the
user rows when the set of classes changes). Importing this module does not import torch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..models.classcsv import ClassTable
from ..models.errors import DataError
from .model import ModelInfo, head_width, open_model, read
from .registry import Registry, locked, salvage, set_aside, write_registry
from .validate import (Candidate, candidate_from_mapping, candidates_from_csv, check_count, check_name, check_range,
                       screen, suggest)

Progress = Callable[[str, int, int], None]  # (phase, done, total), as refit.fit_user_rows calls it


class UserClassWarning(UserWarning):
    """Something worth knowing about an added class that does not stop it being added."""


def all_classes(source: str, offline: bool = False, user_only: bool = False) -> ClassTable:
    """Every class of the model as classify sees it: built-in (seen, unseen) then user classes."""
    info = open_model(source, offline)
    reg = read(info)
    base = info.table
    if user_only:
        return ClassTable(list(reg.names), ["user"] * len(reg), list(base.attribute_names), reg.values)
    return ClassTable(base.names + reg.names, list(base.origins) + ["user"] * len(reg), list(base.attribute_names),
                      np.concatenate([base.values, reg.values]))


def list_user_classes(source: str, offline: bool = False) -> list[str]:
    """Names of the user classes of ``source``, in the order they were added."""
    return list(read(open_model(source, offline)).names)


# ---- changing the registry --------------------------------------------------------------------------------
def _default_warn(message: str) -> None:
    warnings.warn(message, UserClassWarning, stacklevel=3)


def _commit(info: ModelInfo, names: list[str], values: np.ndarray, warn: Callable[[str], None],
            progress: Progress | None = None) -> Registry:
    """Fit the head rows for exactly these user classes and make them the registry's state (lock held).

    A model that scores classes from their attribute vectors (``classes_from_attributes``) needs no rows:
    the registry stores empty (n, 0) ones and the classifier appends the attribute rows (view.py)."""
    reg = Registry(names=list(names), values=np.asarray(values, np.float32).reshape(len(names), info.config.attr_dim))
    if names and head_width(info.config) == 0:
        reg.weight, reg.bias = np.zeros((len(names), 0), np.float32), np.zeros(len(names), np.float32)
        reg.refit = {"method": "attribute-rows"}
    elif names:
        from ..models.bundle import load_bundle
        from .refit import fit_user_rows

        bundle = load_bundle(info.folder)
        reg.weight, reg.bias, reg.refit = fit_user_rows(bundle.model, info.config, reg.values, info.sha256,
                                                            progress=progress)
        for name, t in zip(names, reg.refit["taken"]):
            if t["share"] >= reg.refit["settings"]["steal_warning"]:
                warn(f"{name!r} takes {t['share']:.0%} of the generated features of {t['from']!r}: its attributes "
                     f"may be too close to {t['from']!r}, and photos of {t['from']!r} may now be called {name!r}.")
    write_registry(info.registry, reg, list(info.config.attribute_names), info.sha256)
    return reg


def _add(info: ModelInfo, cands: list[Candidate], warn: Callable[[str], None] | None,
         progress: Progress | None) -> list[str]:
    warn = warn or _default_warn
    check_range(cands, info.table.values, list(info.config.attribute_names))
    with locked(info.registry):
        reg = read(info)  # the state now, after any add-class that held the lock before us
        users = set(reg.names)
        check_count(len(reg), len({c.name for c in cands if c.name not in users and c.origin == "user"}))
        new = screen(cands, info, reg, warn)
        if not new:
            return []
        _commit(info, reg.names + [c.name for c in new], np.concatenate([reg.values, [c.values for c in new]]), warn,
                progress)
    return [c.name for c in new]


def add_classes(source: str, classes: dict[str, dict[str, float]], offline: bool = False,
                warn: Callable[[str], None] | None = None, progress: Progress | None = None) -> list[str]:
    """Add user classes ``{name: {attribute: value}}`` to the model ``source``; returns the names added.

    Raises DataError (a DkgzslError) naming the class and attribute at fault. ``warn`` receives non-fatal
    notes (identical vectors, repeats skipped); by default they are issued as UserClassWarning.
    ``progress(phase, done, total)`` follows the refit ("generate", then "fit"), which can take minutes
    for hundreds of classes; more than MAX_USER_CLASSES user classes are refused before any work.
    """
    info = open_model(source, offline)
    if not classes:
        raise DataError("no classes to add: give at least one class with its attribute values.")
    attrs = list(info.config.attribute_names)
    return _add(info, [candidate_from_mapping(n, v, attrs) for n, v in classes.items()], warn, progress)


def add_classes_from_csv(source: str, path, offline: bool = False, warn: Callable[[str], None] | None = None,
                         progress: Progress | None = None) -> list[str]:
    """Add the classes of a CSV file (``dkgzsl add-class --attributes``); errors name file, row and column."""
    info = open_model(source, offline)
    path = Path(path)
    cands = candidates_from_csv(path, list(info.config.attribute_names))
    for c in cands:
        check_name(c.name, f"{c.where}, column 'name'")
    return _add(info, cands, warn, progress)


def derive_class(source: str, base: str, settings: dict[str, str], offline: bool = False) -> dict[str, float]:
    """The attribute values of class ``base`` (built-in or user) with ``settings`` {attribute: value} applied."""
    table = all_classes(source, offline)
    if base not in table.names:
        raise DataError(f"--from-class {base!r}: no such class{suggest(base, table.names)}. "
                        "List them with `dkgzsl classes list`.")
    values = dict(zip(table.attribute_names, (float(v) for v in table.values[table.names.index(base)])))
    for attr, value in settings.items():
        if attr not in values:
            raise DataError(f"--set {attr}={value}: unknown attribute {attr!r}{suggest(attr, table.attribute_names)}.")
        values[attr] = value
    return values


def remove_classes(source: str, names: list[str], offline: bool = False,
                   warn: Callable[[str], None] | None = None, progress: Progress | None = None) -> list[str]:
    """Remove user classes; the others are refit. With none left, classify uses the bundle exactly.

    A damaged registry raises RegistryError naming ``dkgzsl classes repair`` (repair_classes)."""
    info = open_model(source, offline)
    with locked(info.registry):
        reg = read(info)
        for n in names:
            if n in info.table.names:
                raise DataError(f"{n!r} is a built-in class of this model; only user classes can be removed.")
            if n not in reg.names:
                raise DataError(f"{n!r} is not a user class of this model{suggest(n, reg.names)}. "
                                "List them with `dkgzsl classes list --user`.")
        keep = [i for i, n in enumerate(reg.names) if n not in set(names)]
        _commit(info, [reg.names[i] for i in keep], reg.values[keep], warn or _default_warn, progress)
    return list(dict.fromkeys(names))


def rename_class(source: str, old: str, new: str, offline: bool = False) -> None:
    """Rename a user class. Its head row stays as it is: the fit depends on the values, not the names."""
    info = open_model(source, offline)
    check_name(new, f"new name {new!r}")
    with locked(info.registry):
        reg = read(info, with_head=True)
        if old not in reg.names:
            what = "a built-in class; only user classes can be renamed" if old in info.table.names else \
                f"not a user class of this model{suggest(old, reg.names)}"
            raise DataError(f"{old!r} is {what}.")
        if new in info.table.names or new in reg.names:
            raise DataError(f"cannot rename {old!r} to {new!r}: a class of that name exists already.")
        reg.names = [new if n == old else n for n in reg.names]
        write_registry(info.registry, reg, list(info.config.attribute_names), info.sha256)


@dataclass
class Repair:
    """What ``repair_classes`` did: the classes kept and lost, and where the damaged files went."""

    kept: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # entries that did not verify (their rows are in set_aside)
    set_aside: Path | None = None  # None: the registry verified, nothing was moved
    problem: str = ""


def repair_classes(source: str, offline: bool = False, warn: Callable[[str], None] | None = None,
                   progress: Progress | None = None) -> Repair:
    """Make a damaged registry usable again (``dkgzsl classes repair``).

    The damaged files (and a copy of the manifest) are moved into a ``set-aside-<time>`` folder of the
    registry, never deleted; the user classes whose entries still verify against the manifest (name and
    values) are kept and their rows refit. A registry that verifies is left alone.
    """
    info = open_model(source, offline)
    with locked(info.registry):
        found = salvage(info.registry, list(info.config.attribute_names), head_width(info.config))
        if found is None:
            return Repair(kept=list(read(info).names))
        dest = set_aside(info.registry, found.damaged)
        _commit(info, found.names, found.values, warn or _default_warn, progress)
    return Repair(found.names, found.lost, dest, found.problem)
