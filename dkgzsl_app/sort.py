"""File photos into one folder per class (``dkgzsl sort``), and put them back (``dkgzsl sort --undo``).

A sort is planned whole before any file is touched: every photo gets its folder (its class with the
user's corrections applied, or ``_low_confidence``, ``_unknown``, ``_unreadable``) and a file name that
clashes with nothing (``name-2.jpg``, ``name-3.jpg``, …). The plan is written first as the manifest
``DIR/dkgzsl-sort.json`` (atomically, models/atomic.py), every entry ``pending``; entries turn ``done`` as
files are filed, and the manifest is rewritten every few files and at the end. Each single step is atomic
(a copy goes to a temp name and is renamed; a link and a same-disk move are one call), so after an
interruption at any moment every pending entry is in one of two states, told apart by looking at the disk:
filed or not. Re-running the same command finishes the job; ``--undo`` reverses exactly what was done.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .models.atomic import atomic_write_bytes, fsync_dir
from .models.errors import DataError, UsageError

MANIFEST = "dkgzsl-sort.json"
FORMAT = "dkgzsl-sort/1"
MODES = ("copy", "link", "move")
LOW, UNKNOWN_DIR, ERRORS = "_low_confidence", "_unknown", "_unreadable"
UNKNOWN = "(unknown)"  # the correction that marks a photo as none of the classes (the browser's "mark unknown")
DEFAULT_MIN_CONFIDENCE = 0.5  # the browser's "low confidence" (tui.results.LOW_CONFIDENCE)
SAVE_EVERY = 64  # manifest rewrites: every this many files (and at the end): linear, not quadratic, in files


@dataclass
class Entry:
    source: str  # absolute path the photo had before sorting
    dest: str  # path relative to the sort folder
    folder: str  # the class folder (or _low_confidence, _unknown, _unreadable)
    mode: str  # copy | link | move
    status: str = "pending"  # pending | done | undone | missing | kept
    size: int = -1
    sha256: str = ""  # of a copy, so --undo removes only a copy nobody changed
    symlink: bool = False  # a --link across file systems is a symbolic link


@dataclass
class SortResult:
    manifest: Path
    entries: list[Entry]
    counts: dict[str, int] = field(default_factory=dict)  # folder → photos
    filed: int = 0  # files copied/linked/moved by this call
    already: int = 0  # filed by an earlier (interrupted or finished) run
    missing: list[str] = field(default_factory=list)  # sources that are gone


def folder_for(pred, correction: str | None, min_confidence: float) -> str:
    """The folder a prediction goes to. A correction wins (a person looked at the photo); then unreadable,
    unknown (open-set rejection, the ``unknown`` field), low confidence (top-1 probability below the
    threshold), else the predicted class."""
    if correction == UNKNOWN:
        return UNKNOWN_DIR
    if correction:
        return safe_name(correction)
    if pred.error or not pred.top:
        return ERRORS
    if getattr(pred, "unknown", False):
        return UNKNOWN_DIR
    if pred.top[0].probability < min_confidence:
        return LOW
    return safe_name(pred.top[0].name)


def safe_name(name: str) -> str:
    """A class name as one folder name (no separators, not hidden, not . or ..)."""
    out = "".join("_" if c in '/\\:\0' else c for c in name).strip().lstrip(".")
    return out or "_unnamed"


def candidates(path: str, results_file: Path) -> list[Path]:
    """Where a results file's photo may be: as written if absolute, else relative to the current folder,
    then to the results file's folder."""
    p = Path(path)
    if p.is_absolute():
        return [p]
    return [(Path.cwd() / p).absolute(), (results_file.parent / p).absolute()]


def resolve_source(path: str, results_file: Path) -> Path:
    """The first of ``candidates`` that exists (else the first)."""
    found = candidates(path, results_file)
    return next((c for c in found if c.exists()), found[0])


def _unique(folder: Path, name: str, taken: set[str]) -> str:
    """``folder/name`` relative path that neither exists nor is planned: name, name-2, name-3, …"""
    stem, suffix = os.path.splitext(name)
    n = 1
    while True:
        cand = f"{folder.name}/{name if n == 1 else f'{stem}-{n}{suffix}'}"
        if cand not in taken and not os.path.lexists(folder.parent / cand):
            taken.add(cand)
            return cand
        n += 1


# ------------------------------------------------------------------------------------------ manifest
def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no sort manifest there (dkgzsl sort writes {MANIFEST} in the --into folder).") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the sort manifest ({e}).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not a dkgzsl sort manifest (expected format {FORMAT}).")
    data["entries"] = [Entry(**e) for e in data.get("entries", [])]
    return data


def save_manifest(path: Path, data: dict) -> None:
    out = {**data, "entries": [asdict(e) for e in data["entries"]]}
    atomic_write_bytes(path, (json.dumps(out, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


class _Saver:
    """Rewrite the manifest every SAVE_EVERY changes and on flush."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data, self.dirty = path, data, 0

    def changed(self) -> None:
        self.dirty += 1
        if self.dirty >= SAVE_EVERY:
            self.flush()

    def flush(self) -> None:
        save_manifest(self.path, self.data)
        self.dirty = 0


# --------------------------------------------------------------------------------------------- sort
def plan(preds: list, corrections: dict[str, str], into: Path, mode: str, min_confidence: float,
         results_file: Path, manifest: dict | None = None) -> list[Entry]:
    """New entries for the photos of ``preds`` that the manifest does not hold yet (none when re-running)."""
    have = {e.source for e in (manifest or {}).get("entries", []) if e.status != "undone"}
    taken = {e.dest for e in (manifest or {}).get("entries", []) if e.status != "undone"}
    out = []
    for p in preds:
        if any(str(c) in have for c in candidates(p.path, results_file)):
            continue  # filed before (after a --move its source is gone, so look under every name it may have)
        src = resolve_source(p.path, results_file)
        have.add(str(src))
        folder = folder_for(p, corrections.get(p.path), min_confidence)
        out.append(Entry(str(src), _unique(into / folder, src.name, taken), folder, mode))
    return out


def _copy(src: Path, dest: Path) -> str:
    """Copy through a temp name in the destination folder, then rename: the destination is whole or absent.
    Returns the copy's sha256."""
    tmp = dest.parent / f".{dest.name}.dkgzsl-tmp"
    h = hashlib.sha256()
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        while chunk := fi.read(1 << 20):
            h.update(chunk)
            fo.write(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    shutil.copystat(src, tmp)
    os.replace(tmp, dest)
    return h.hexdigest()


def file_one(e: Entry, into: Path) -> str:
    """Do (or finish) one entry; returns its new status: done or missing."""
    src, dest = Path(e.source), into / e.dest
    if os.path.lexists(dest):  # filed before an interruption; a cross-disk move may still hold its source
        if e.mode == "move" and src.is_file() and dest.is_file() and not os.path.samefile(src, dest) \
                and dest.stat().st_size == src.stat().st_size:
            src.unlink()  # the copy is whole (it was renamed into place), so the source may go
        return "done"
    if not src.is_file():
        return "missing"
    dest.parent.mkdir(parents=True, exist_ok=True)
    e.size = src.stat().st_size
    if e.mode == "copy":
        e.sha256 = _copy(src, dest)
    elif e.mode == "link":
        try:
            os.link(src, dest)
        except OSError:  # another file system (or no hard links there): a symbolic link instead
            os.symlink(src, dest)
            e.symlink = True
    else:
        try:
            os.rename(src, dest)
        except OSError:  # another file system: copy (whole or nothing), then remove the source
            e.sha256 = _copy(src, dest)
            src.unlink()
    return "done"


def sort_photos(results_file: Path, into: Path, mode: str = "copy", min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                dry_run: bool = False, preds: list | None = None, corrections: dict[str, str] | None = None,
                on_file: Callable[[int], None] | None = None) -> SortResult:
    """File the photos of ``results_file`` (or ``preds`` + ``corrections``, the browser's current state) into
    ``into``. Re-running finishes an interrupted sort and files only photos not filed yet."""
    from .output import read_predictions

    if mode not in MODES:
        raise UsageError(f"unknown sort mode {mode!r}: use one of {', '.join(MODES)}.")
    if not 0.0 <= min_confidence <= 1.0:
        raise UsageError(f"--min-confidence {min_confidence}: give a probability between 0 and 1.")
    results_file, into = Path(results_file), Path(into)
    if preds is None:
        preds, from_file = read_predictions(results_file)
        corrections = {**from_file, **_autosaved_corrections(results_file), **(corrections or {})}
    corrections = corrections or {}
    manifest_path = into / MANIFEST
    data = None
    if manifest_path.exists():
        data = load_manifest(manifest_path)
        if all(e.status == "undone" for e in data["entries"]):
            data = None  # undone completely: start afresh
    data = data or {"format": FORMAT, "results": str(results_file.absolute()), "created": time.time(),
                    "entries": []}
    new = plan(preds, corrections, into, mode, min_confidence, results_file, data)
    res = SortResult(manifest_path, [])
    if dry_run:
        res.entries = [e for e in data["entries"] if e.status == "pending"] + new
        res.already = sum(e.status == "done" for e in data["entries"])
        res.counts = _counts(res.entries)
        return res
    from .models.atomic import check_writable_folder

    check_writable_folder(into, "sort folder")
    data["entries"].extend(new)
    data["complete"] = False
    saver = _Saver(manifest_path, data)
    saver.flush()  # the whole plan is on disk before the first file moves
    todo = [e for e in data["entries"] if e.status in ("pending", "missing")]
    res.already = sum(e.status == "done" for e in data["entries"])
    try:
        for e in todo:
            try:
                e.status = file_one(e, into)
            except OSError as exc:
                raise DataError(f"{e.source}: cannot {e.mode} it to {into / e.dest} ({exc.strerror or exc}); "
                                f"{res.filed} photos filed so far. Fix it and run the same command again.") from None
            if e.status == "done":
                res.filed += 1
            else:
                res.missing.append(e.source)
            saver.changed()
            if on_file:
                on_file(1)
        data["complete"] = True
    finally:
        saver.flush()
        fsync_dir(into)
    res.entries = todo
    res.counts = _counts(todo)
    return res


def _autosaved_corrections(results_file: Path) -> dict[str, str]:
    """The browser's autosave beside the results file (newer than the file's own correction column)."""
    from .tui.results import RunStore

    return RunStore.beside(results_file).load_corrections()


def _counts(entries: Iterable[Entry]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        out[e.folder] = out.get(e.folder, 0) + 1
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------------------------- undo
@dataclass
class UndoResult:
    restored: int = 0
    already: int = 0
    kept: list[str] = field(default_factory=list)  # "path: why" of files left where they are


def _same_copy(dest: Path, e: Entry) -> bool:
    if dest.is_symlink() or not dest.is_file():
        return False
    if not e.sha256:  # copied just before an interruption, before the manifest recorded it: compare bytes
        import filecmp

        return Path(e.source).is_file() and filecmp.cmp(e.source, dest, shallow=False)
    if dest.stat().st_size != e.size:
        return False
    from .models.bundle import sha256_file

    return sha256_file(dest) == e.sha256


def undo_one(e: Entry, into: Path) -> tuple[str, str]:
    """Reverse one done entry: (new status, why it was kept if it was)."""
    src, dest = Path(e.source), into / e.dest
    if not os.path.lexists(dest):
        if e.mode == "move" and not src.exists():
            return "kept", f"{dest}: gone, and {src} is not there either"
        return "undone", ""  # undone before an interruption
    if e.mode == "move":
        if os.path.lexists(src):
            return "kept", f"{dest}: not moved back, {src} exists again"
        src.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(dest, src)
        except OSError:
            shutil.move(str(dest), str(src))
        return "undone", ""
    if e.mode == "link":
        ok = (os.readlink(dest) == e.source) if e.symlink else (src.exists() and os.path.samefile(src, dest))
    else:
        ok = _same_copy(dest, e)
    if not ok:
        return "kept", f"{dest}: changed since sorting, kept"
    dest.unlink()
    return "undone", ""


def undo_sort(manifest_path: Path, on_file: Callable[[int], None] | None = None) -> UndoResult:
    """Reverse a sort: copies and links removed, moved photos back where they were, the folders the sort
    made removed when empty. Interrupted, it is finished by running it again."""
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / MANIFEST
    data = load_manifest(manifest_path)
    into = manifest_path.parent
    saver = _Saver(manifest_path, data)
    res = UndoResult()
    try:
        for e in reversed(data["entries"]):
            if e.status in ("undone", "pending", "missing"):
                if e.status == "pending" and os.path.lexists(into / e.dest):
                    e.status = "done"  # filed just before an interruption, not yet recorded
                else:
                    res.already += e.status == "undone"
                    e.status = "undone"
                    continue
            status, why = undo_one(e, into)
            e.status = status
            if why:
                res.kept.append(why)
            else:
                res.restored += 1
            saver.changed()
            if on_file:
                on_file(1)
    finally:
        saver.flush()
    for folder in sorted({Path(e.dest).parts[0] for e in data["entries"]}):
        try:
            (into / folder).rmdir()  # only when empty
        except OSError:
            pass
    return res
