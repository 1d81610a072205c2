"""Atomic file writes: readers (and a crash at any moment) see the old file or the new one, never half.

New files get the permissions the user's umask allows (``0o666 & ~umask``, as ``open()`` would give);
a replaced file keeps its mode; secrets pass ``mode=0o600``. ``check_writable_file`` and
``check_writable_folder`` let a command find out that its output cannot be written before it works.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def current_umask() -> int:
    """The process umask (from /proc where it can be read without changing it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # POSIX offers no read-only query; set and restore at once
    os.umask(old)
    return old


def _mode_for(path: Path, mode: int | None) -> int:
    if mode is not None:
        return mode
    try:
        return path.stat().st_mode & 0o7777  # replacing a file keeps its permissions
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then ``os.replace``.

    ``mode``: the file's permissions; ``None`` keeps an existing file's, or follows the umask for a new one.
    Raises OutputError (a DataError) naming the file when it cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file: give a file path inside it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}). Check that the folder is writable.") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), _mode_for(path, mode))  # mkstemp creates 0600
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc}). Check free disk space and "
                              "permissions.") from exc
        raise


def atomic_write_text(path, text: str, mode: int | None = None) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def check_writable_folder(folder, what: str = "output folder") -> None:
    """Raise OutputError unless files can be created in ``folder`` (created, with its parents, if missing).

    Probes by creating and removing a temp file, which also catches read-only mounts and ACLs."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: the {what} is a file, not a folder. Give a folder path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".dkgzsl-write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write to the {what} ({exc.strerror or exc}). Choose a folder "
                          "you can write to, or fix its permissions.") from None


def check_writable_file(path, what: str = "output file", example: str = "results.csv") -> None:
    """Raise OutputError unless ``path`` can be written atomically: not a folder, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; the {what} must be a file path (e.g. {path / example}).")
    check_writable_folder(path.parent, what=f"folder of the {what}")


def fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable across power loss too (POSIX; a no-op where folders cannot be
    opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
