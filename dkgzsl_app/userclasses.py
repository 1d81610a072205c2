"""User classes: classes without photos, added to a model from their attribute values.

    >>> from dkgzsl_app.userclasses import add_classes, list_user_classes
    >>> add_classes("demo-shapes", {"purple_circle": {"shape:circle": 1, ...}})
    ['purple_circle']

The bundle is never modified: the class registry (registry.py) keeps the user classes of each model in the
user data folder, with the student-head rows fitted for them (refit.py). ``dkgzsl_app.load`` adds them to
the classifier; an empty registry gives the bundle exactly. Every check says where the problem is (file,
row, column, or class and attribute) and what to do. Importing this module does not import torch.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .models.classcsv import DECIMAL_COMMA, ClassTable, column_letter, read_class_csv
from .models.errors import DataError
from .registry import Registry, RegistryError, locked, read_registry, registry_dir, write_registry

__all__ = ["add_classes", "add_classes_from_csv", "all_classes", "derive_class", "list_user_classes",
           "remove_classes", "rename_class", "with_user_classes", "RANGE_SLACK", "UserClassWarning"]

RANGE_SLACK = 0.1  # values may exceed the span of the model's attribute matrix by this share of it


class UserClassWarning(UserWarning):
    """Something worth knowing about an added class that does not stop it being added."""


@dataclass
class ModelInfo:
    """What registry operations need from a model source, without loading its weights."""

    source: str
    folder: Path
    config: "object"  # ModelConfig
    sha256: str
    table: ClassTable  # the bundle's own classes (classes.csv)

    @property
    def registry(self) -> Path:
        return registry_dir(self.sha256)


@dataclass
class Candidate:
    """A class to add, and where it came from (for messages)."""

    name: str
    values: np.ndarray  # (A,) float32
    where: str  # "FILE: row 3" or "class 'x'"
    cells: list[str] | None = None  # (A,) where each value sits, e.g. "column 'hot' (C)"
    origin: str = "user"  # a CSV's origin column (an export of the whole model has seen/unseen rows)


def open_model(source: str, offline: bool = False) -> ModelInfo:
    """Resolve ``source`` and read the bundle's config and class table (torch-free)."""
    from .classify import resolve_source
    from .models.bundle import CLASSES_FILE, load_config

    folder = resolve_source(source, offline)
    config = load_config(folder)
    sha = weights_key(folder, config)
    table = read_class_csv(folder / CLASSES_FILE, attribute_names=list(config.attribute_names), require_origin=True)
    return ModelInfo(source, folder, config, sha, table)


def _registry(info: ModelInfo, with_head: bool = False) -> Registry:
    return read_registry(info.registry, list(info.config.attribute_names), info.config.head.embed_dim, with_head)


def all_classes(source: str, offline: bool = False, user_only: bool = False) -> ClassTable:
    """Every class of the model as classify sees it: built-in (seen, unseen) then user classes."""
    info = open_model(source, offline)
    reg = _registry(info)
    base = info.table
    if user_only:
        return ClassTable(list(reg.names), ["user"] * len(reg), list(base.attribute_names), reg.values)
    return ClassTable(base.names + reg.names, list(base.origins) + ["user"] * len(reg), list(base.attribute_names),
                      np.concatenate([base.values, reg.values]))


def list_user_classes(source: str, offline: bool = False) -> list[str]:
    """Names of the user classes of ``source``, in the order they were added."""
    return list(_registry(open_model(source, offline)).names)


# ---- validation -------------------------------------------------------------------------------------------
def check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip() or any(ord(ch) < 32 for ch in name):
        raise DataError(f"{where}: class name {name!r} is not usable: give a non-empty name without leading or "
                        "trailing spaces, line breaks or tabs.")
    return name


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def candidate_from_mapping(name: str, mapping: dict, attribute_names: list[str], where: str | None = None) -> Candidate:
    """Check one class given as {attribute: value}: every attribute, nothing else, finite numbers."""
    where = where or f"class {name!r}"
    check_name(name, where)
    if not isinstance(mapping, dict):
        raise DataError(f"{where}: attribute values must be a mapping of attribute name to number.")
    unknown = [a for a in mapping if a not in set(attribute_names)]
    if unknown:
        a = unknown[0]
        raise DataError(f"{where}: unknown attribute {a!r}{_suggest(str(a), attribute_names)}. The model's "
                        f"attributes are: {', '.join(attribute_names[:20])}{' ...' if len(attribute_names) > 20 else ''}.")
    missing = [a for a in attribute_names if a not in mapping]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{where}: no value for attribute(s) {', '.join(repr(m) for m in missing[:5])}{more}. "
                        "Give a number for every attribute (0 when it does not apply); this model has no "
                        "attributes that may be left unknown.")
    values = []
    for a in attribute_names:
        v = mapping[a]
        try:
            if isinstance(v, bool) or v is None:
                raise ValueError
            f = float(v.replace(",", ".") if isinstance(v, str) and DECIMAL_COMMA.fullmatch(v) else v)
        except (TypeError, ValueError):
            raise DataError(f"{where}, attribute {a!r}: {v!r} is not a number.") from None
        if not math.isfinite(f) or not math.isfinite(np.float32(f)):
            raise DataError(f"{where}, attribute {a!r}: {v!r} is not a finite number. Use a finite value.")
        values.append(f)
    return Candidate(name, np.asarray(values, np.float32), where)


def candidates_from_csv(path: Path, attribute_names: list[str]) -> list[Candidate]:
    """Classes of a CSV (name, optional origin, one column per attribute); structural errors name the cell."""
    table = read_class_csv(path, attribute_names=list(attribute_names), require_origin=False, semicolons=True)
    out = []
    for i, name in enumerate(table.names):
        cells = [f"column '{a}' ({column_letter(j)})" for a, j in zip(table.attribute_names, table.columns)]
        out.append(Candidate(name, table.values[i], f"{path}: row {table.rows[i]}", cells,
                             table.origins[i] if table.origins else "user"))
    return out


def value_range(builtin: np.ndarray) -> tuple[float, float, float, float]:
    """(lo, hi) the model's attribute matrix spans, and the accepted range with RANGE_SLACK on both sides."""
    lo, hi = float(builtin.min()), float(builtin.max())
    slack = RANGE_SLACK * ((hi - lo) or max(abs(hi), 1.0))
    return lo, hi, lo - slack, hi + slack


def check_range(cands: list[Candidate], builtin: np.ndarray, attribute_names: list[str]) -> None:
    lo, hi, a, b = value_range(builtin)
    for c in cands:
        bad = np.flatnonzero((c.values < a) | (c.values > b))
        if len(bad):
            j = int(bad[0])
            cell = c.cells[j] if c.cells else f"attribute {attribute_names[j]!r}"
            raise DataError(
                f"{c.where}, {cell}: {float(c.values[j]):g} is out of range. The model's class attributes span "
                f"{lo:g} to {hi:g}; values from {a:g} to {b:g} are accepted ({RANGE_SLACK:.0%} slack on each side). "
                "Rescale the value to the model's range.")


def screen(cands: list[Candidate], info: ModelInfo, reg: Registry, warn: Callable[[str], None]) -> list[Candidate]:
    """Name clashes (errors), exact repeats of existing classes (skipped), identical vectors (warnings)."""
    builtin = dict(zip(info.table.names, range(len(info.table.names))))
    users = dict(zip(reg.names, range(len(reg.names))))
    taken: dict[str, str] = {}
    keep = []
    for c in cands:
        origin = c.origin
        if c.name in builtin:
            i = builtin[c.name]
            same = np.array_equal(info.table.values[i], c.values) and origin == info.table.origins[i]
            if origin in ("seen", "unseen") and same:
                continue  # an export of the whole model read back: the built-in row is already there
            raise DataError(f"{c.where}: {c.name!r} is a built-in ({info.table.origins[i]}) class of this model. "
                            "Choose another name for the new class.")
        if origin != "user":
            raise DataError(f"{c.where}: origin {origin!r}, but {c.name!r} is not one of this model's {origin} "
                            "classes; add-class adds user classes only (origin 'user', or no origin column).")
        if c.name in users:
            if np.array_equal(reg.values[users[c.name]], c.values):
                warn(f"{c.where}: {c.name!r} is already a user class with the same values; skipped.")
                continue
            raise DataError(f"{c.where}: {c.name!r} is already a user class (with other values). Remove it first "
                            f"(dkgzsl classes remove {c.name}) or choose another name.")
        if c.name in taken:
            raise DataError(f"{c.where}: class name {c.name!r} is used twice ({taken[c.name]}); names must be unique.")
        taken[c.name] = c.where
        keep.append(c)
    existing = list(zip(info.table.names, info.table.values)) + list(zip(reg.names, reg.values))
    for c in keep:
        twin = next((n for n, v in existing if np.array_equal(v, c.values)), None)
        if twin is not None:
            warn(f"{c.where}: {c.name!r} has the same attribute values as {twin!r}; the model cannot tell them "
                 "apart, and photos will be split between them.")
        existing.append((c.name, c.values))
    return keep


# ---- changing the registry --------------------------------------------------------------------------------
def _default_warn(message: str) -> None:
    warnings.warn(message, UserClassWarning, stacklevel=3)


def _commit(info: ModelInfo, names: list[str], values: np.ndarray, warn: Callable[[str], None]) -> Registry:
    """Fit the head rows for exactly these user classes and make them the registry's state (lock held)."""
    reg = Registry(names=list(names), values=np.asarray(values, np.float32).reshape(len(names), info.config.attr_dim))
    if names:
        from .models.bundle import load_bundle
        from .refit import fit_user_rows

        bundle = load_bundle(info.folder)
        reg.weight, reg.bias, reg.refit = fit_user_rows(bundle.model, info.config, reg.values, info.sha256)
        for name, t in zip(names, reg.refit["taken"]):
            if t["share"] >= reg.refit["settings"]["steal_warning"]:
                warn(f"{name!r} takes {t['share']:.0%} of the generated features of {t['from']!r}: its attributes "
                     f"may be too close to {t['from']!r}, and photos of {t['from']!r} may now be called {name!r}.")
    write_registry(info.registry, reg, list(info.config.attribute_names), info.sha256)
    return reg


def _add(info: ModelInfo, cands: list[Candidate], warn: Callable[[str], None] | None) -> list[str]:
    warn = warn or _default_warn
    check_range(cands, info.table.values, list(info.config.attribute_names))
    with locked(info.registry):
        reg = _registry(info)  # the state now, after any add-class that held the lock before us
        new = screen(cands, info, reg, warn)
        if not new:
            return []
        _commit(info, reg.names + [c.name for c in new], np.concatenate([reg.values, [c.values for c in new]]), warn)
    return [c.name for c in new]


def add_classes(source: str, classes: dict[str, dict[str, float]], offline: bool = False,
                warn: Callable[[str], None] | None = None) -> list[str]:
    """Add user classes ``{name: {attribute: value}}`` to the model ``source``; returns the names added.

    Raises DataError (a DkgzslError) naming the class and attribute at fault. ``warn`` receives non-fatal
    notes (identical vectors, repeats skipped); by default they are issued as UserClassWarning.
    """
    info = open_model(source, offline)
    if not classes:
        raise DataError("no classes to add: give at least one class with its attribute values.")
    attrs = list(info.config.attribute_names)
    return _add(info, [candidate_from_mapping(n, v, attrs) for n, v in classes.items()], warn)


def add_classes_from_csv(source: str, path, offline: bool = False,
                         warn: Callable[[str], None] | None = None) -> list[str]:
    """Add the classes of a CSV file (``dkgzsl add-class --attributes``); errors name file, row and column."""
    info = open_model(source, offline)
    path = Path(path)
    cands = candidates_from_csv(path, list(info.config.attribute_names))
    for c in cands:
        check_name(c.name, f"{c.where}, column 'name'")
    return _add(info, cands, warn)


def derive_class(source: str, base: str, settings: dict[str, str], offline: bool = False) -> dict[str, float]:
    """The attribute values of class ``base`` (built-in or user) with ``settings`` {attribute: value} applied."""
    table = all_classes(source, offline)
    if base not in table.names:
        raise DataError(f"--from-class {base!r}: no such class{_suggest(base, table.names)}. "
                        "List them with `dkgzsl classes list`.")
    values = dict(zip(table.attribute_names, (float(v) for v in table.values[table.names.index(base)])))
    for attr, value in settings.items():
        if attr not in values:
            raise DataError(f"--set {attr}={value}: unknown attribute {attr!r}{_suggest(attr, table.attribute_names)}.")
        values[attr] = value
    return values


def remove_classes(source: str, names: list[str], offline: bool = False) -> list[str]:
    """Remove user classes; the others are refit. With none left, classify uses the bundle exactly."""
    info = open_model(source, offline)
    with locked(info.registry):
        reg = _registry(info)
        for n in names:
            if n in info.table.names:
                raise DataError(f"{n!r} is a built-in class of this model; only user classes can be removed.")
            if n not in reg.names:
                raise DataError(f"{n!r} is not a user class of this model{_suggest(n, reg.names)}. "
                                "List them with `dkgzsl classes list --user`.")
        keep = [i for i, n in enumerate(reg.names) if n not in set(names)]
        _commit(info, [reg.names[i] for i in keep], reg.values[keep], _default_warn)
    return list(dict.fromkeys(names))


def rename_class(source: str, old: str, new: str, offline: bool = False) -> None:
    """Rename a user class. Its head row stays as it is: the fit depends on the values, not the names."""
    info = open_model(source, offline)
    check_name(new, f"new name {new!r}")
    with locked(info.registry):
        reg = _registry(info, with_head=True)
        if old not in reg.names:
            what = "a built-in class; only user classes can be renamed" if old in info.table.names else \
                f"not a user class of this model{_suggest(old, reg.names)}"
            raise DataError(f"{old!r} is {what}.")
        if new in info.table.names or new in reg.names:
            raise DataError(f"cannot rename {old!r} to {new!r}: a class of that name exists already.")
        reg.names = [new if n == old else n for n in reg.names]
        write_registry(info.registry, reg, list(info.config.attribute_names), info.sha256)


# ---- the classifier's view --------------------------------------------------------------------------------
def weights_key(folder, config) -> str:
    """A model's registry key: its weights hash (config.json's, else hashed from model.safetensors)."""
    if config.weights_sha256:
        return config.weights_sha256
    from .models.bundle import WEIGHTS_FILE, sha256_bytes

    path = Path(folder) / WEIGHTS_FILE
    try:
        return sha256_bytes(path.read_bytes())
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e}).") from None


def bundle_key(bundle) -> str | None:
    """The registry key of a loaded bundle (None for one built in memory, without weights on disk)."""
    if not bundle.config.weights_sha256 and bundle.path is None:
        return None
    return weights_key(bundle.path, bundle.config)


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
    reg = read_registry(registry_dir(key), list(cfg.attribute_names), cfg.head.embed_dim, with_head=True)
    if not reg.names:
        return bundle
    clash = sorted(set(reg.names) & set(cfg.class_names))
    if clash:
        raise RegistryError(f"{registry_dir(key)}: user class {clash[0]!r} clashes with a built-in class. "
                            f"Remove it with `dkgzsl classes remove {clash[0]}`.")
    import torch

    from .models.bundle import Bundle
    from .refit import AppendedHead

    base = bundle.model
    model = _shallow(base)
    model.student = _shallow(base.student)
    model.student.head = AppendedHead(base.student.head, torch.from_numpy(reg.weight), torch.from_numpy(reg.bias))
    attrs = torch.from_numpy(reg.values).to(base.class_attributes.device)
    model.class_attributes = torch.cat([base.class_attributes, attrs])  # (C + n, A)
    config = dataclasses.replace(cfg, class_names=list(cfg.class_names) + list(reg.names),
                                 seen=list(cfg.seen) + [False] * len(reg))
    return Bundle(config=config, model=model.to(device), origins=list(bundle.origins) + ["user"] * len(reg),
                  path=bundle.path)
