"""The class registry: user-added classes of one model, stored beside (never inside) the bundle.

One folder per model, keyed by the bundle's weights hash, under the user data folder::

    <data_dir>/classes/<weights_sha256>/
        manifest.json                 the commit point: names the two files below and their sha256
        classes-<sha256[:16]>.csv     name, origin (= user), one column per attribute (classes.csv format)
        head-<sha256[:16]>.safetensors  the refit student-head rows of the user classes: weight (n, E), bias (n,)
        lock                          writers hold an exclusive lock on it (flock; msvcrt or O_EXCL elsewhere)

Content files are written first (temp file + fsync + os.replace) under content-addressed names, then the
manifest is replaced the same way, then files no manifest points at are deleted. A writer killed at any
moment leaves the old manifest with its files intact, or the new one: readers see old or new, never a mix.
Readers take no lock; if a writer deletes the files of the manifest a reader just read, the reader reads
the manifest again. This module is torch-free (the head comes back as numpy arrays).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .locations import data_dir
from .models.atomic import atomic_write_bytes
from .models.bundle import sha256_bytes
from .models.classcsv import ClassTable, class_csv_bytes, read_class_csv
from .models.errors import DataError, DkgzslError

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = "lock"


class RegistryError(DkgzslError):
    """The class registry of a model is unreadable, tampered with, or belongs to another model."""


@dataclass
class Registry:
    """What a registry folder holds: the user classes in order and the head rows fitted for them."""

    names: list[str] = field(default_factory=list)
    values: np.ndarray | None = None  # (n, A) float32 raw attribute values, as the user gave them
    weight: np.ndarray | None = None  # (n, E) float32 student-head rows of the user classes
    bias: np.ndarray | None = None  # (n,) float32
    refit: dict = field(default_factory=dict)  # how the rows were fitted (settings, diagnostics)

    def __len__(self) -> int:
        return len(self.names)


def registry_dir(weights_sha256: str) -> Path:
    return data_dir() / "classes" / weights_sha256


def _fix_hint(folder: Path) -> str:
    return (f"Remove the affected classes with `dkgzsl classes remove NAME...`, or delete the folder {folder} "
            "(this deletes every user class of this model; `dkgzsl classes export --user-only` saves them first "
            "when the class table is still readable).")


def read_registry(folder: Path, attribute_names: list[str], embed_dim: int | None = None,
                  with_head: bool = True) -> Registry:
    """The registry in ``folder`` (empty when there is none), verified against the manifest's hashes.

    Args:
        folder: registry_dir(...) of the model.
        attribute_names: the model's attributes; the class table must have exactly these.
        embed_dim: the student embedding width E, to check the head's shape (None: do not check).
        with_head: read and verify the head file too (False for listing, exporting and removing).

    Raises:
        RegistryError: naming the broken file and how to fix it.
    """
    for attempt in range(5):
        try:
            return _read_once(folder, attribute_names, embed_dim, with_head)
        except FileNotFoundError:
            # a writer replaced the manifest and deleted the files of the one we read: read it again
            time.sleep(0.05 * (attempt + 1))
    return _read_once(folder, attribute_names, embed_dim, with_head)


def _read_once(folder: Path, attribute_names: list[str], embed_dim: int | None, with_head: bool) -> Registry:
    mpath = folder / MANIFEST
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        return Registry(values=np.zeros((0, len(attribute_names)), np.float32))
    except OSError as e:
        raise RegistryError(f"{mpath}: cannot be read ({e}).") from None
    try:
        man = json.loads(raw.decode("utf-8"))
        if not isinstance(man, dict) or man.get("format") != FORMAT:
            raise ValueError(f"format {man.get('format') if isinstance(man, dict) else None!r}, expected {FORMAT}")
        names = list(man["names"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"{mpath} is not a valid class-registry manifest ({e}). " + _fix_hint(folder)) from None
    if man.get("bundle_sha256") != folder.name:
        raise RegistryError(f"{mpath} belongs to the bundle with weights {man.get('bundle_sha256')!r}, not to "
                            f"{folder.name!r} (the folder was copied or renamed). " + _fix_hint(folder))
    if man.get("attribute_names") != list(attribute_names):
        raise RegistryError(f"{mpath}: its attribute names differ from the model's; the registry belongs to "
                            "another model. " + _fix_hint(folder))
    if not names:
        return Registry(values=np.zeros((0, len(attribute_names)), np.float32), refit=man.get("refit", {}))
    cpath = folder / man["classes"]
    _verified(cpath, man["classes_sha256"], folder)
    try:
        table = read_class_csv(cpath, attribute_names=list(attribute_names), require_origin=True)
    except DataError as e:
        if not cpath.exists():
            raise FileNotFoundError(cpath) from None  # deleted by a writer since we verified it: retry
        raise RegistryError(f"{e} " + _fix_hint(folder)) from None
    if table.names != names:
        raise RegistryError(f"{cpath}: class names differ from {mpath}. " + _fix_hint(folder))
    reg = Registry(names=names, values=table.values, refit=man.get("refit", {}))
    if with_head:
        hpath = folder / man["head"]
        blob = _verified(hpath, man["head_sha256"], folder)
        from safetensors.numpy import load as st_load

        try:
            tensors = st_load(blob)
            reg.weight, reg.bias = tensors["weight"], tensors["bias"]
        except Exception as e:  # safetensors raises several types on bad headers
            raise RegistryError(f"{hpath} is not a readable head file ({e}). " + _fix_hint(folder)) from None
        n = len(names)
        if reg.weight.shape[0] != n or reg.bias.shape != (n,) or (embed_dim and reg.weight.shape != (n, embed_dim)):
            raise RegistryError(f"{hpath}: head shape {reg.weight.shape} does not fit {n} classes with embedding "
                                f"width {embed_dim}. " + _fix_hint(folder))
        if not (np.isfinite(reg.weight).all() and np.isfinite(reg.bias).all()):
            raise RegistryError(f"{hpath} holds NaN or inf values. " + _fix_hint(folder))
    return reg


def _verified(path: Path, expected: str, folder: Path) -> bytes:
    blob = path.read_bytes()  # FileNotFoundError: see read_registry
    if sha256_bytes(blob) != expected:
        raise RegistryError(f"{path} does not match the sha256 recorded in {folder / MANIFEST}: the file was "
                            "modified or is corrupt. " + _fix_hint(folder))
    return blob


def write_registry(folder: Path, reg: Registry, attribute_names: list[str], bundle_sha256: str) -> None:
    """Commit ``reg`` as the registry's new state (call with the lock held)."""
    folder.mkdir(parents=True, exist_ok=True)
    man = {"format": FORMAT, "bundle_sha256": bundle_sha256, "attribute_names": list(attribute_names),
           "names": list(reg.names), "refit": reg.refit}
    if reg.names:
        from safetensors.numpy import save as st_save

        table = ClassTable(list(reg.names), ["user"] * len(reg.names), list(attribute_names),
                           np.asarray(reg.values, np.float32))
        csv_blob = class_csv_bytes(table, folder / "classes.csv")
        head_blob = st_save({"weight": np.ascontiguousarray(reg.weight, np.float32),
                             "bias": np.ascontiguousarray(reg.bias, np.float32)}, metadata={"format": "np"})
        man["classes_sha256"], man["head_sha256"] = sha256_bytes(csv_blob), sha256_bytes(head_blob)
        man["classes"] = f"classes-{man['classes_sha256'][:16]}.csv"
        man["head"] = f"head-{man['head_sha256'][:16]}.safetensors"
        for name, blob in ((man["classes"], csv_blob), (man["head"], head_blob)):
            if not (folder / name).is_file() or (folder / name).read_bytes() != blob:
                atomic_write_bytes(folder / name, blob)
    atomic_write_bytes(folder / MANIFEST, json.dumps(man, indent=2, ensure_ascii=False).encode("utf-8"))
    _collect_garbage(folder, {MANIFEST, LOCK, man.get("classes"), man.get("head")})


def _collect_garbage(folder: Path, keep: set) -> None:
    """Delete files no manifest points at: older states and temp files of writers that were killed."""
    for p in folder.iterdir():
        if p.name not in keep and p.is_file() and (p.name.startswith((".", "classes-", "head-"))):
            with contextlib.suppress(OSError):
                p.unlink()


@contextlib.contextmanager
def locked(folder: Path, timeout: float = 600.0):
    """Hold the registry's writer lock: concurrent add-class/remove/rename calls run one after another."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    if fcntl is not None:
        with open(path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the process dies, even by SIGKILL
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return
    with _windows_lock(path, timeout):
        yield


@contextlib.contextmanager
def _windows_lock(path: Path, timeout: float):
    try:
        import msvcrt
    except ImportError:
        msvcrt = None
    deadline = time.monotonic() + timeout
    if msvcrt is not None:
        with open(path, "a+b") as fh:
            while True:
                try:
                    fh.seek(0)
                    msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RegistryError(f"{path}: another dkgzsl process holds the class registry lock.")
                    time.sleep(0.1)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    excl = path.with_suffix(".excl")  # last resort: a lock file created with O_EXCL
    while True:
        try:
            os.close(os.open(excl, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise RegistryError(f"{excl} exists: another dkgzsl process is editing the class registry, or one "
                                    "was killed while doing so; delete the file if no dkgzsl is running.") from None
            time.sleep(0.1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            excl.unlink()
