"""The class registry: user-added classes of one model, stored beside (never inside) the bundle.

One folder per model, keyed by the bundle's weights hash, under the user data folder::

    <data_dir>/classes/<weights_sha256>/
        manifest.json                 the commit point: names the two files below and their sha256
        classes-<sha256[:16]>.csv     name, origin (= user), one column per attribute (classes.csv format)
        head-<sha256[:16]>.safetensors  the refit student-head rows of the user classes: weight (n, E), bias (n,)
        lock                          writers hold an exclusive lock on it (filelock: flock on POSIX, msvcrt on
                                      Windows; released when the process dies, even by SIGKILL)
        set-aside-<time>/             files `dkgzsl classes repair` moved out of the way (never deleted)

Content files are written first (temp file + fsync + os.replace) under content-addressed names, then the
manifest is replaced the same way, then files no manifest points at are deleted. A writer killed at any
moment leaves the old manifest with its files intact, or the new one: readers see old or new, never a mix.
Readers take no lock; if a writer deletes the files of the manifest a reader just read, the reader reads
the manifest again. The manifest also records a sha256 per class (name and values), so that a repair can
keep the classes of a hand-edited table whose rows are unchanged. This module is torch-free (the head
comes back as numpy arrays).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..locations import data_dir
from ..models.atomic import atomic_write_bytes
from ..models.bundle import sha256_bytes
from ..models.classcsv import ClassTable, class_csv_bytes, read_class_csv
from ..models.errors import DataError, DkgzslError
from ..sources import DEFAULT_MODEL

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = "lock"
LOCK_TIMEOUT = 600.0  # seconds a writer waits for another one (an add of many classes can take minutes)
SET_ASIDE = "set-aside-"


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


def repair_command(model: str | None) -> str:
    """The ``dkgzsl classes repair`` command line for the model ``model`` (None: the default model)."""
    if model is None or model == DEFAULT_MODEL:
        return "dkgzsl classes repair"
    return f"dkgzsl classes repair --model {shlex.quote(model)}"


def _fix_hint(folder: Path, model: str | None) -> str:
    return (f"Run `{repair_command(model)}`: it moves the damaged files into {folder / (SET_ASIDE + '...')} "
            "(nothing is deleted) and keeps every user class whose entry still verifies.")


def class_digest(name: str, values: np.ndarray) -> str:
    """sha256 of one class entry: its name and its float32 attribute values (A,)."""
    return sha256_bytes(name.encode("utf-8") + b"\0" + np.ascontiguousarray(values, np.float32).tobytes())


def read_registry(folder: Path, attribute_names: list[str], embed_dim: int | None = None,
                  with_head: bool = True, model: str | None = None) -> Registry:
    """The registry in ``folder`` (empty when there is none), verified against the manifest's hashes.

    Args:
        folder: registry_dir(...) of the model.
        attribute_names: the model's attributes; the class table must have exactly these.
        embed_dim: the head rows' width, to check their shape (model.head_width: E, or 0 for a model that
            scores attribute vectors itself; None: do not check).
        with_head: read and verify the head file too (False for listing, exporting and removing).
        model: the --model the user names this model by, for the repair command in error messages.

    Raises:
        RegistryError: naming the broken file and how to fix it.
    """
    for attempt in range(5):
        try:
            return _read_once(folder, attribute_names, embed_dim, with_head, model)
        except FileNotFoundError:
            # a writer replaced the manifest and deleted the files of the one we read: read it again
            time.sleep(0.05 * (attempt + 1))
    return _read_once(folder, attribute_names, embed_dim, with_head, model)


def _read_once(folder: Path, attribute_names: list[str], embed_dim: int | None, with_head: bool,
               model: str | None) -> Registry:
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
        raise RegistryError(f"{mpath} is not a valid class-registry manifest ({e}). " + _fix_hint(folder, model)) from None
    if man.get("bundle_sha256") != folder.name:
        raise RegistryError(f"{mpath} belongs to the bundle with weights {man.get('bundle_sha256')!r}, not to "
                            f"{folder.name!r} (the folder was copied or renamed). " + _fix_hint(folder, model))
    if man.get("attribute_names") != list(attribute_names):
        raise RegistryError(f"{mpath}: its attribute names differ from the model's; the registry belongs to "
                            "another model. " + _fix_hint(folder, model))
    if not names:
        return Registry(values=np.zeros((0, len(attribute_names)), np.float32), refit=man.get("refit", {}))
    cpath = folder / man["classes"]
    _verified(cpath, man["classes_sha256"], folder, model)
    try:
        table = read_class_csv(cpath, attribute_names=list(attribute_names), require_origin=True)
    except DataError as e:
        if not cpath.exists():
            raise FileNotFoundError(cpath) from None  # deleted by a writer since we verified it: retry
        raise RegistryError(f"{e} " + _fix_hint(folder, model)) from None
    if table.names != names:
        raise RegistryError(f"{cpath}: class names differ from {mpath}. " + _fix_hint(folder, model))
    reg = Registry(names=names, values=table.values, refit=man.get("refit", {}))
    if with_head:
        hpath = folder / man["head"]
        blob = _verified(hpath, man["head_sha256"], folder, model)
        from safetensors.numpy import load as st_load

        try:
            tensors = st_load(blob)
            reg.weight, reg.bias = tensors["weight"], tensors["bias"]
        except Exception as e:  # safetensors raises several types on bad headers
            raise RegistryError(f"{hpath} is not a readable head file ({e}). " + _fix_hint(folder, model)) from None
        n = len(names)
        wrong_width = embed_dim is not None and reg.weight.shape != (n, embed_dim)
        if reg.weight.shape[0] != n or reg.bias.shape != (n,) or wrong_width:
            raise RegistryError(f"{hpath}: head shape {reg.weight.shape} does not fit {n} classes with embedding "
                                f"width {embed_dim}. " + _fix_hint(folder, model))
        if not (np.isfinite(reg.weight).all() and np.isfinite(reg.bias).all()):
            raise RegistryError(f"{hpath} holds NaN or inf values. " + _fix_hint(folder, model))
    return reg


def _verified(path: Path, expected: str, folder: Path, model: str | None) -> bytes:
    blob = path.read_bytes()  # FileNotFoundError: see read_registry
    if sha256_bytes(blob) != expected:
        raise RegistryError(f"{path} does not match the sha256 recorded in {folder / MANIFEST}: the file was "
                            "modified or is corrupt. " + _fix_hint(folder, model))
    return blob


def write_registry(folder: Path, reg: Registry, attribute_names: list[str], bundle_sha256: str) -> None:
    """Commit ``reg`` as the registry's new state (call with the lock held)."""
    folder.mkdir(parents=True, exist_ok=True)
    man = {"format": FORMAT, "bundle_sha256": bundle_sha256, "attribute_names": list(attribute_names),
           "names": list(reg.names), "refit": reg.refit}
    if reg.names:
        man["class_sha256"] = [class_digest(n, v) for n, v in zip(reg.names, reg.values)]
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
def locked(folder: Path, timeout: float | None = None):
    """Hold the registry's writer lock: concurrent add-class/remove/rename/repair calls run one after another.

    Raises:
        RegistryError: when another process holds the lock for longer than ``timeout`` (LOCK_TIMEOUT).
    """
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    lock = FileLock(folder / LOCK, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise RegistryError(f"another dkgzsl is editing classes for this model (it has held {folder / LOCK} for "
                            f"more than {timeout:g} s); wait for it to finish, or stop it, and try again.") from None
    try:
        yield
    finally:
        lock.release()


# ---- repair -----------------------------------------------------------------------------------------------
@dataclass
class Salvage:
    """What survives of a damaged registry: the classes whose entries still verify, and the files to set aside."""

    names: list[str]
    values: np.ndarray  # (n, A) float32
    lost: list[str]  # names in the manifest whose entries do not verify
    damaged: list[Path]  # files to move aside (the manifest last)
    problem: str  # what was wrong, in a sentence


def salvage(folder: Path, attribute_names: list[str], embed_dim: int | None) -> Salvage | None:
    """Inspect a registry for ``dkgzsl classes repair``: None when it reads and verifies completely."""
    try:
        read_registry(folder, attribute_names, embed_dim, with_head=True)
        return None
    except RegistryError as e:
        problem = str(e).split(" Run `")[0]
    empty = np.zeros((0, len(attribute_names)), np.float32)
    mpath = folder / MANIFEST
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(("classes-", "head-")))
    try:
        man = json.loads(mpath.read_bytes().decode("utf-8"))
        names, ok = list(man["names"]), (man.get("format") == FORMAT and man.get("bundle_sha256") == folder.name
                                         and man.get("attribute_names") == list(attribute_names))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        names, ok = [], False
    if not ok:  # nothing can be verified against a manifest that is broken or belongs elsewhere
        return Salvage([], empty, names, files + [mpath], problem)
    cpath = folder / str(man.get("classes"))
    rows = _lenient_rows(cpath, attribute_names)
    digests = man.get("class_sha256") or []
    if not digests and cpath.is_file() and sha256_bytes(cpath.read_bytes()) == man.get("classes_sha256"):
        digests = [class_digest(n, rows[n]) if n in rows else "" for n in names]  # older manifest, table intact
    keep = [(n, rows[n]) for n, d in zip(names, digests) if n in rows and class_digest(n, rows[n]) == d]
    kept = [n for n, _ in keep]
    return Salvage(kept, np.asarray([v for _, v in keep], np.float32).reshape(len(keep), len(attribute_names)),
                   [n for n in names if n not in set(kept)], files + [mpath], problem)


def _lenient_rows(path: Path, attribute_names: list[str]) -> dict[str, np.ndarray]:
    """{name: values (A,)} of the rows of a class table that still parse (the rest are skipped)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
        table = list(csv.reader(io.StringIO(text)))
        header = [h.strip() for h in table[0]]
        cols = [header.index(a) for a in attribute_names]
        at = header.index("name")
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return {}
    out = {}
    for row in table[1:]:
        try:
            out.setdefault(row[at], np.asarray([float(row[j]) for j in cols], np.float32))
        except (IndexError, ValueError):
            continue
    return out


def set_aside(folder: Path, files: list[Path]) -> Path:
    """Move ``files`` into a new ``set-aside-<UTC time>`` folder of ``folder`` (never deletes them). The
    manifest is copied, not moved: readers keep seeing the old state until the caller commits a new one."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = folder / f"{SET_ASIDE}{stamp}"
    i = 1
    while dest.exists():
        i += 1
        dest = folder / f"{SET_ASIDE}{stamp}-{i}"
    dest.mkdir()
    for p in files:
        if p.name == MANIFEST and p.exists():
            shutil.copy2(p, dest / p.name)
        elif p.exists():
            p.replace(dest / p.name)
    return dest
