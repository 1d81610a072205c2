"""Classifying at scale: results streamed to the output as chunks finish, resumable runs, photo lists.

``classify_chunks`` runs a Classifier over a long photo list a chunk at a time (the TUI's engine does the
same), so memory holds one chunk's features and predictions, never the run's; ``classify_photos`` keeps one set
of decoding worker processes for all its chunks (``extract.decode_pool``). ``ResultWriter`` appends
each chunk's rows, in input order, to a CSV or JSON Lines file and flushes them: a crash or SIGKILL
loses at most the chunk in flight (its features are in the feature cache already when its rows are
being written). Next to such a file a small *run record* (``results.jsonl.run.json``) names what made
it: format, model (weights digest), class list (digest of names, origins and attribute vectors), γ,
top-k, precision and shard. ``--resume`` (``open_resume``) checks that record against the present run,
refusing any difference, cuts a torn last row, and returns the paths already done; the rows that follow
are appended, so a resumed run ends with the file an uninterrupted one writes, byte for byte.

JSON (one array) and the table are whole-file forms: JSON is streamed into a temporary file renamed
into place at the end (the old rule: a reader sees the old file or the new one), the table keeps the
predictions (the output's own size) until it is drawn.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .models.bundle import sha256_file
from .models.errors import DataError, OutputError, UsageError
from .output import CSV_COLUMNS, STREAMED, footer, format_rows, header, records

RUN_SUFFIX = ".run.json"
DEFAULT_CHUNK = 256  # photos per classify call: ~32 MB of region maps for the demo model's backbone
CHECKED = {"format": "format", "weights_sha256": "model weights", "classes_sha256": "class list",
           "calibration": "calibration (γ)", "top_k": "--top-k", "precision": "precision", "shard": "--shard",
           "chunk": "--chunk-size", "config_sha256": "model settings (config.json)", "reject": "--no-reject"}


def run_file(output) -> Path:
    """The run record next to ``output``: ``results.jsonl`` → ``results.jsonl.run.json``."""
    output = Path(output)
    return output.with_name(output.name + RUN_SUFFIX)


def classify_chunks(clf, paths: list, chunk: int = DEFAULT_CHUNK, overlap: bool = True, **kwargs) -> Iterator[list]:
    """``clf.classify`` over ``paths`` ``chunk`` photos at a time: yields each chunk's predictions, in order.
    ``kwargs`` go to ``Classifier.classify`` (top_k, calibration, batch_size, workers, on_batch, cache).

    ``overlap``: the next chunk's features are extracted (cache, decoding, backbone) in a background thread
    while this one is scored and its rows written, so the backbone does not wait for the head, the cache
    writes and the output between chunks. The same predictions (each chunk's head runs on the chunk as
    before); the feature cache is read and written in chunk order, from that thread alone; at most two
    chunks' features are held. Close the generator (``contextlib.closing``) before leaving the block of a
    ``decode_pool`` it uses: closing stops the extraction in flight at its next batch. On the CPU only (with
    torch's threads held at the streams' share for the run, ``extract.pinned_threads``: the same rows byte for
    byte as without overlap, every run)."""
    from .extract import pinned_threads

    starts = range(0, len(paths), max(1, chunk))
    with pinned_threads(clf.device) if overlap and len(starts) > 1 else _null() as streams:
        if not streams:  # one chunk; or CUDA/MPS, or one thread: no overlap
            for start in starts:
                yield clf.classify(paths[start:start + chunk], **kwargs)
            return
        yield from _overlapped(clf, paths, chunk, starts, kwargs)


def _overlapped(clf, paths: list, chunk: int, starts, kwargs: dict) -> Iterator[list]:
    """``classify_chunks`` with the next chunk extracted in a background thread (inside ``pinned_threads``).
    A plain thread per chunk, not a ThreadPoolExecutor: DataLoader workers forked from an executor's thread
    exit with status 1 (the executor's exit hook, copied into them, joins that very thread)."""
    import contextvars
    import threading

    stop = threading.Event()
    tick = kwargs.get("on_batch")

    def on_batch(n: int) -> None:
        if stop.is_set():
            raise _Stopped()
        if tick is not None:
            tick(n)

    extract = {"batch_size": kwargs.get("batch_size", 32), "workers": kwargs.get("workers", 2),
               "cache": kwargs.get("cache"), "on_batch": on_batch}
    context = contextvars.copy_context()  # this thread's decode_pool and pinned threads, for the extracting one

    def features(start: int):
        box: dict = {}

        def work() -> None:
            try:
                box["got"] = context.run(clf.features, paths[start:start + chunk], **extract)
            except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
                box["error"] = e

        job = threading.Thread(target=work, name="dkgzsl-extract", daemon=True)
        job.start()
        return job, box

    def result(pending):
        job, box = pending
        job.join()
        if "error" in box:
            raise box["error"]
        return box["got"]

    pending = None
    try:
        pending = features(starts[0])
        for start in starts:
            got = result(pending)
            pending = features(start + chunk) if start + chunk < len(paths) else None
            yield clf.classify(paths[start:start + chunk], **{**kwargs, "on_batch": None}, extracted=got)
    finally:
        stop.set()  # an extraction still running ends at its next batch
        if pending is not None:
            pending[0].join()


class _Stopped(Exception):
    """Ends ``classify_chunks``' background extraction when the run stops early."""


def run_identity(clf, model: str, calibration: float | None, top_k: int, fmt: str, shard: str | None = None,
                 chunk: int = DEFAULT_CHUNK) -> dict:
    """What decides a run's rows besides its photos: checked by ``--resume`` and ``dkgzsl merge``. The
    chunk size is one of them: the head scores a chunk's photos in one batch, and a batch of another size
    may round the 6th decimal differently, so runs agree byte for byte only on the same chunk grid."""
    from . import __version__

    cfg = clf.bundle.config
    gamma = cfg.calibration if calibration is None else float(calibration)
    weights = cfg.weights_sha256 or ""
    if not weights and clf.base_bundle.path is not None:
        wfile = Path(clf.base_bundle.path) / "model.safetensors"
        weights = sha256_file(wfile) if wfile.is_file() else ""
    config = Path(clf.base_bundle.path) / "config.json" if clf.base_bundle.path is not None else None
    config_sha = sha256_file(config) if config is not None and config.is_file() else ""
    h = hashlib.sha256(json.dumps([list(clf.class_names), list(clf.bundle.origins)]).encode())
    h.update(clf.bundle.model.class_attributes.detach().float().cpu().numpy().tobytes())
    return {"format": fmt, "model": model, "weights_sha256": weights, "classes_sha256": h.hexdigest(),
            "calibration": float(gamma), "top_k": int(top_k), "precision": clf.precision, "shard": shard,
            "chunk": int(chunk), "config_sha256": config_sha, "reject": getattr(clf, "reject", None),
            "dkgzsl": __version__}


def read_run(output) -> dict | None:
    """The run record of ``output``, or None when there is none; DataError when it is unreadable."""
    path = run_file(output)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the run record ({e}).") from None
    try:
        run = json.loads(text)
        if not isinstance(run, dict) or "format" not in run:
            raise ValueError("not a run record")
    except ValueError as e:
        raise DataError(f"{path}: not a dkgzsl run record ({e}); remove it and --resume to start {output} "
                        "again.") from None
    return run


def write_run(output, run: dict) -> None:
    from .models.atomic import atomic_write_text

    atomic_write_text(run_file(output), json.dumps(run, indent=2, ensure_ascii=False) + "\n")


def differences(old: dict, new: dict) -> list[str]:
    """What differs between two run identities, in words (empty when they agree)."""
    out = []
    for key, what in CHECKED.items():
        a, b = old.get(key), new.get(key)
        if a != b:
            if key.endswith("sha256"):
                a, b = (str(a)[:12] + "…") if a else "unknown", (str(b)[:12] + "…") if b else "unknown"
            if key == "weights_sha256":
                what += f" ({old.get('model')} → {new.get('model')})"
            out.append(f"{what}: {a} in the file, {b} now")
    return out


@dataclass
class Existing:
    """What a results file holds already (``scan``)."""
    done: set = field(default_factory=set)  # paths with a row
    rows: int = 0
    failed: int = 0  # rows with an error
    unknown: int | None = None  # rows flagged unknown, where rows carry the flag
    end: int = 0  # bytes of complete rows (header included); anything after is a torn row
    size: int = 0


def scan(path, fmt: str) -> Existing:
    """Read a CSV or JSON Lines results file a row at a time: its paths, counts, and where its complete
    rows end. A last row cut short (no newline, or not parseable) is torn; a bad row before it is an error."""
    path = Path(path)
    out = Existing(size=path.stat().st_size)
    want = format_rows([], "csv", with_header=True).encode("utf-8") if fmt == "csv" else b""
    with open(path, "rb") as f:
        if want:
            head = f.readline()
            if head != want:
                if want.startswith(head):  # the header itself was torn: nothing to keep
                    return out
                raise DataError(f"{path}: not a CSV written by dkgzsl classify (its header is not "
                                f"{','.join(CSV_COLUMNS)}).")
            out.end = len(head)
        pending, number = b"", 0
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn
            pending += line
            if fmt == "csv" and pending.count(b'"') % 2:
                continue  # a quoted newline inside a field: the record goes on
            number += 1
            rec, pending = pending, b""
            try:
                r = _parse_row(rec, fmt)
            except ValueError as e:
                if f.read(1):  # more follows: the file is damaged, not torn
                    raise DataError(f"{path}: row {number} is not a results row ({e}); the file was edited "
                                    "or damaged. Fix it, or write a new file without --resume.") from None
                break
            out.done.add(r["path"])
            out.rows += 1
            out.failed += bool(r.get("error"))
            if "unknown" in r:
                out.unknown = (out.unknown or 0) + (r["unknown"] not in (False, None, "", "false", "False"))
            out.end += len(rec)
    return out


def _parse_row(rec: bytes, fmt: str) -> dict:
    text = rec.decode("utf-8")
    if fmt == "jsonl":
        r = json.loads(text)
        if not isinstance(r, dict) or not isinstance(r.get("path"), str):
            raise ValueError("no 'path'")
        return r
    cells = next(csv.reader(io.StringIO(text)))
    if len(cells) != len(CSV_COLUMNS):
        raise ValueError(f"{len(cells)} cells, not {len(CSV_COLUMNS)}")
    return dict(zip(CSV_COLUMNS, cells))


def open_resume(output, identity: dict) -> Existing | None:
    """For ``--resume``: check ``output``'s run record against ``identity`` (UsageError naming every
    difference), repair a torn last row (cut off: the photo is classified again, never twice), and return
    what is done; None when there is nothing to resume (no file, or no complete row and no record)."""
    output = Path(output)
    fmt = identity["format"]
    if fmt not in STREAMED:
        raise UsageError(f"--resume needs a CSV or JSON Lines output (-f csv|jsonl), not {fmt}: those are "
                         "written row by row as photos are classified.")
    if not output.exists():
        return None
    run = read_run(output)
    existing = scan(output, fmt) if run is None or run.get("format") == fmt else None
    if run is None:
        if existing.rows == 0:
            return None  # killed before its first row: nothing to keep
        raise UsageError(f"{output} has no run record ({run_file(output).name}), so it cannot be checked that "
                         "its rows come from the same model and calibration: remove --resume to write it again.")
    diff = differences(run, identity)
    if diff:
        raise UsageError(f"cannot resume {output}: it was written by a different run — " + "; ".join(diff)
                         + ". Resume with the same --model, --calibration, --top-k, --precision, --format and "
                           "--shard (and class list), or write to a new file.")
    if existing.end < existing.size:
        with open(output, "r+b") as f:
            f.truncate(existing.end)
    return existing


class ResultWriter:
    """Rows to ``output`` (or stdout) as they come, in ``fmt``.

    csv / jsonl to a file: written and flushed per ``write``, after the file's run record; ``existing``
    (from ``open_resume``) appends after its rows. json to a file: a temporary file renamed into place by
    ``close``. Without ``output``: stdout, flushed per write."""

    def __init__(self, fmt: str, output=None, identity: dict | None = None, existing: Existing | None = None):
        self.fmt, self.output, self.identity = fmt, Path(output) if output is not None else None, identity
        self.rows = existing.rows if existing else 0
        self.failed = existing.failed if existing else 0
        self.new = 0
        self._tmp = None
        if self.output is None:
            self._fh = None
            self._emit(header(fmt))
            return
        try:
            if fmt in STREAMED:
                if existing is not None and existing.end > 0:
                    self._fh = open(self.output, "ab")
                else:
                    run_file(self.output).unlink(missing_ok=True)  # a record never vouches for another run's rows
                    self._fh = open(self.output, "wb")
                    self._emit(header(fmt))
                if identity is not None:
                    write_run(self.output, {**identity, "complete": False, "rows": self.rows, "failed": self.failed})
            else:
                fd, self._tmp = tempfile.mkstemp(dir=self.output.parent, prefix=f".{self.output.name}.", suffix=".tmp")
                self._fh = os.fdopen(fd, "wb")
                self._emit(header(fmt))
        except OSError as e:
            raise OutputError(f"{self.output}: cannot write ({e.strerror or e}).") from None

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self._fh is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        try:
            self._fh.write(text.encode("utf-8"))
            self._fh.flush()
        except OSError as e:
            raise OutputError(f"{self.output}: cannot write ({e.strerror or e}). Check free disk space; "
                              "--resume carries on from the rows written.") from None

    def write(self, preds, rows: list[dict] | None = None) -> None:
        """Append the rows of ``preds`` (input order; ``rows``: their records, if made already) and flush."""
        rows = records(preds) if rows is None else rows
        if not rows:
            return
        self._emit(format_rows(rows, self.fmt, first=self.rows == 0))
        self.rows += len(rows)
        self.new += len(rows)
        self.failed += sum(1 for r in rows if r.get("error"))

    def close(self) -> None:
        """Finish the file: JSON's closing bracket and rename; the run record marked complete."""
        self._emit(footer(self.fmt, self.rows))
        if self._fh is None:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            if self._tmp is not None:
                from .models.atomic import _mode_for, fsync_dir

                os.chmod(self._tmp, _mode_for(self.output, None))
                os.replace(self._tmp, self.output)
                self._tmp = None
                fsync_dir(self.output.parent)
        except OSError as e:
            raise OutputError(f"{self.output}: cannot write ({e.strerror or e}).") from None
        if self.fmt in STREAMED and self.identity is not None:
            write_run(self.output, {**self.identity, "complete": True, "rows": self.rows, "failed": self.failed})

    def abort(self) -> None:
        """After a failure: keep the streamed rows (resumable), drop a JSON temporary file."""
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)


def read_file_list(source: str) -> list[str]:
    """``--files-from``: one path per line (blank lines skipped), or a CSV whose header has a ``path``
    column (a results file from classify, for one); ``-`` reads standard input. Relative paths are
    relative to the current folder."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--files-from {source}: cannot read the list ({e}).") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    try:
        cols = next(csv.reader([first])) if first else []
    except csv.Error:
        cols = []
    if len(cols) > 1 and "path" in [c.strip() for c in cols]:
        name = next(c for c in cols if c.strip() == "path")
        return [r[name] for r in csv.DictReader(io.StringIO(text)) if r.get(name)]
    return [ln for ln in lines if ln.strip()]


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``K/N`` (1 ≤ K ≤ N) → (K, N)."""
    if value is None:
        return None
    try:
        k, n = (int(x) for x in value.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise UsageError(f"--shard {value}: give K/N with 1 ≤ K ≤ N, e.g. --shard 3/8 for the third of eight.")
    return k, n


def shard_range(count: int, k: int, n: int, chunk: int = 1) -> tuple[int, int]:
    """Shard ``k`` of ``n`` of ``count`` items: a contiguous block of whole chunks (the unsharded run's
    chunk grid, so each photo is scored in the same batch as there), sizes differing by at most one chunk;
    the shards in order are the whole list in order (``merge`` concatenates them)."""
    chunks = -(-count // chunk)
    return min(count, (k - 1) * chunks // n * chunk), min(count, k * chunks // n * chunk)


def merge(output, shards: list, warn: Callable[[str], None] | None = None) -> dict:
    """Join shard files (``--shard K/N`` runs, all N of them, complete, same model and settings) into
    ``output`` in shard order: the file one unsharded run writes. Returns the merged run record."""
    runs = []
    for s in shards:
        s = Path(s)
        if not s.is_file():
            raise UsageError(f"{s}: no such shard file.")
        run = read_run(s)
        if run is None or not run.get("shard"):
            raise UsageError(f"{s}: not a shard of a classify run (no run record {run_file(s).name} with a "
                             "shard; write shards with classify --shard K/N -o FILE).")
        runs.append((parse_shard(run["shard"]), s, run))
    runs.sort(key=lambda t: t[0])
    n = runs[0][0][1]
    have = [k for (k, _), _, _ in runs]
    if any(nn != n for (_, nn), _, _ in runs) or have != list(range(1, n + 1)):
        raise UsageError(f"merge needs every shard 1/{n} … {n}/{n} exactly once; got "
                         + ", ".join(r["shard"] for _, _, r in runs) + ".")
    ref = {**runs[0][2], "shard": None}
    for _, s, run in runs:
        diff = differences(ref, {**run, "shard": None})
        if diff:
            raise UsageError(f"{s} does not belong with {runs[0][1]}: " + "; ".join(diff) + ".")
        if not run.get("complete"):
            raise UsageError(f"{s} is not complete (its run stopped early): run that shard again with --resume, "
                             "then merge.")
    fmt = ref["format"]
    out = Path(output)
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give the merged file's path.")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    rows = failed = 0
    try:
        with os.fdopen(fd, "wb") as dst:
            for i, (_, s, run) in enumerate(runs):
                with open(s, "rb") as src:
                    if fmt == "csv" and i > 0:
                        src.readline()
                    while block := src.read(1 << 20):
                        dst.write(block)
                rows += int(run.get("rows", 0))
                failed += int(run.get("failed", 0))
            dst.flush()
            os.fsync(dst.fileno())
        from .models.atomic import _mode_for

        os.chmod(tmp, _mode_for(out, None))
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    merged = {**ref, "complete": True, "rows": rows, "failed": failed}
    write_run(out, merged)
    return merged


@dataclass
class Summary:
    """What a classify run's output holds at its end (rows from an earlier run included)."""
    rows: int = 0
    failed: int = 0
    unknown: int | None = None  # rows flagged ``unknown`` (open-set rejection), when rows carry the flag
    earlier: int = 0  # rows already in the file (--resume)
    output: str | None = None

    @property
    def classified(self) -> int:
        return self.rows - self.failed

    def line(self) -> str:
        parts = [f"{self.classified} classified"]
        if self.unknown is not None:
            parts.append(f"{self.unknown} of them unknown")
        parts.append(f"{self.failed} failed")
        text = f"{self.rows} photo(s): " + ", ".join(parts)
        if self.earlier:
            text += f" ({self.earlier} from the earlier run)"
        return text + (f" → {self.output}" if self.output else "")


def _count_unknown(rows: list[dict], summary: Summary) -> None:
    flags = [r["unknown"] for r in rows if "unknown" in r]
    if flags:
        summary.unknown = (summary.unknown or 0) + sum(1 for f in flags if f)


def classify_photos(clf, images: list[str], missing: list, fmt: str, output=None, *, model: str, top_k: int = 5,
                    calibration: float | None = None, batch_size: int = 32, workers: int = 2, cache=None,
                    chunk: int = DEFAULT_CHUNK, resume: bool = False, shard: tuple[int, int] | None = None,
                    warn: Callable[[str], None] = lambda m: None, keep: list | None = None,
                    progress: bool = True, peers: "Peers | None" = None) -> Summary:
    """``dkgzsl classify`` after its photos are found: ``images`` (paths, in output order) chunk by chunk,
    then ``missing`` (error Predictions for named files that do not exist); csv, json and jsonl go through
    a ``ResultWriter`` (``output`` or stdout) as chunks finish, the table's predictions into ``keep``.
    ``shard`` (K, N): only that part of ``images`` (``missing`` go with the last). ``resume``: see
    ``open_resume``. ``peers`` (torchrun's rank 0): the bar counts the other ranks' rows too, and stays
    until their parts are complete."""
    from .progress import photo_progress

    shard_name = None
    if shard is not None:
        k, n = shard
        a, b = shard_range(len(images), k, n, chunk)
        images, missing, shard_name = images[a:b], (missing if k == n else []), f"{k}/{n}"
    streamed = output is not None and fmt in STREAMED
    identity = run_identity(clf, model, calibration, top_k, fmt, shard_name, chunk) if streamed else None
    existing = open_resume(output, identity) if resume else None
    skip = 0  # photos at the start of the first chunk whose rows the file has already
    if existing is not None:
        done = existing.done
        if existing.rows and not any(p in done for p in images) and not any(m.path in done for m in missing):
            raise UsageError(f"cannot resume {output}: none of its {existing.rows} row(s) names a photo of this run. "
                             "Paths are compared as written: resume from the same folder with the same PHOTOS "
                             "arguments (or --files-from list), or write to a new file.")
        d = 0
        while d < len(images) and images[d] in done:
            d += 1
        if any(p in done for p in images[d:]):  # not the run's own prefix (the inputs changed): the rest, in order
            images = [p for p in images if p not in done]
        else:  # the usual case: carry on from the chunk that was cut short, scored whole as before
            skip = d % chunk
            images = images[d - skip:]
        missing = [m for m in missing if m.path not in done]
    earlier = existing.rows if existing else 0
    summary = Summary(earlier=earlier, output=str(output) if output is not None else None)
    writer = ResultWriter(fmt, output, identity, existing) if fmt != "table" else None

    def emit(preds: list) -> None:
        rows = records(preds)
        _count_unknown(rows, summary)
        if writer is not None:
            writer.write(preds, rows)
        else:
            keep.extend(preds)
        summary.rows += len(preds)
        summary.failed += sum(1 for p in preds if p.error)

    try:
        if peers is not None:
            bar = photo_progress(peers.total, completed=earlier - skip + peers.poll()) if progress else None
        else:
            bar = photo_progress(earlier - skip + len(images), completed=earlier - skip) if progress else None
        with bar if bar is not None else _null() as bar_tick:
            tick = bar_tick
            if bar_tick is not None and peers is not None:
                tick = lambda n: bar_tick(n + peers.poll())  # noqa: E731 (the other ranks' rows too)

            chunks = classify_chunks(clf, images, chunk, top_k=top_k, calibration=calibration,
                                     batch_size=batch_size, workers=workers, on_batch=tick, cache=cache)
            # one set of decoding workers for every chunk, stopped at the end (after the chunks' extraction): a
            # fresh set per chunk forked ``workers`` processes every 256 photos, idle until its first batch
            from .extract import decode_pool

            with decode_pool(workers), contextlib.closing(chunks):
                for preds in chunks:
                    preds, skip = preds[skip:], 0
                    for p in preds:
                        if p.error:
                            warn(f"{p.path}: {p.error}")
                    emit(preds)
            emit(missing)  # already warned about when the photos were collected
            if writer is not None:
                writer.close()
            if peers is not None:
                peers.wait(bar_tick)
    except BaseException as e:
        if writer is not None:
            writer.abort()
            if streamed and isinstance(e, KeyboardInterrupt):
                warn(f"interrupted: {writer.rows} row(s) are in {output}; the same command with --resume "
                     "carries on from there.")
        raise
    summary.rows += earlier
    summary.failed += existing.failed if existing else 0
    if existing is not None and existing.unknown is not None:
        summary.unknown = (summary.unknown or 0) + existing.unknown
    return summary


def _null():
    import contextlib

    return contextlib.nullcontext(None)


# --- one run over several processes: torchrun -------------------------------------------------------------

def part_file(output, k: int, n: int) -> Path:
    """Where rank ``k - 1`` of ``n`` writes its shard of ``output`` under torchrun."""
    output = Path(output)
    return output.with_name(f"{output.name}.part-{k}-of-{n}")


class Peers:
    """Rank 0's view of the other ranks' part files: rows written so far (for one progress bar over the
    whole run) and whether they are complete."""

    def __init__(self, parts: list[Path], fmt: str, total: int):
        self.parts, self.fmt, self.total = parts, fmt, total
        self._offsets = {p: 0 for p in parts}

    def poll(self) -> int:
        """Rows the other ranks wrote since the last call."""
        new = 0
        for p in self.parts:
            try:
                with open(p, "rb") as f:
                    f.seek(self._offsets[p])
                    data = f.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1
            if self.fmt == "csv" and self._offsets[p] == 0 and cut:
                new -= 1  # the header line
            new += data.count(b"\n", 0, cut)
            self._offsets[p] += cut
        return new

    def complete(self) -> bool:
        for p in self.parts:
            try:
                run = read_run(p)
            except DataError:
                return False  # being replaced right now
            if not (run and run.get("complete")):
                return False
        return True

    def wait(self, tick) -> None:
        """Until every other rank's part is complete, advancing ``tick`` with their rows."""
        import time

        while True:
            done = self.complete()
            n = self.poll()
            if tick and n:
                tick(n)
            if done:
                return
            time.sleep(0.5)


@dataclass
class Distributed:
    """This process's place in a torchrun launch (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), joined to the
    others through a gloo process group (CPU; used only to meet at start and end, never per batch)."""
    rank: int
    world: int
    local_rank: int
    output: Path  # the merged file rank 0 writes
    fmt: str

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank + 1, self.world

    @property
    def part(self) -> Path:
        return part_file(self.output, self.rank + 1, self.world)

    def device(self, device: str) -> str:
        """``auto`` on a CUDA machine → this rank's GPU (``cuda:LOCAL_RANK``); anything else as given."""
        if device == "auto":
            import torch

            if torch.cuda.is_available():
                return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return device

    def peers(self, total: int) -> Peers | None:
        if self.rank != 0:
            return None
        return Peers([part_file(self.output, k, self.world) for k in range(2, self.world + 1)], self.fmt, total)

    def finish(self, summary: Summary) -> Summary:
        """Meet the other ranks; rank 0 merges the parts into ``output`` (then removes them) and returns the
        whole run's summary; other ranks return their own."""
        import torch.distributed as dist

        unknown = [None] * self.world  # also the meeting point: every part is complete after it
        dist.all_gather_object(unknown, summary.unknown)
        if self.rank == 0:
            parts = [part_file(self.output, k, self.world) for k in range(1, self.world + 1)]
            merged = merge(self.output, parts)
            for p in parts:
                p.unlink(missing_ok=True)
                run_file(p).unlink(missing_ok=True)
            flags = [u for u in unknown if u is not None]
            summary = Summary(rows=merged["rows"], failed=merged["failed"], unknown=sum(flags) if flags else None,
                              earlier=0, output=str(self.output))
        dist.barrier()  # the merged file is there before any rank exits
        dist.destroy_process_group()
        return summary


def distributed(output, fmt: str, shard) -> Distributed | None:
    """Under torchrun (``WORLD_SIZE`` > 1): join the gloo group and say which shard this rank takes;
    otherwise None. The output must be a CSV or JSON Lines file (on storage every node sees)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    if shard is not None:
        raise UsageError("--shard and torchrun both split the photos: under torchrun each rank takes its own "
                         "shard; leave --shard out.")
    if output is None or fmt not in STREAMED:
        raise UsageError("under torchrun, give -o FILE with --format csv or jsonl: each rank writes its part next "
                         "to it and rank 0 merges them into FILE.")
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        # gloo on every device: the group only meets at the start and the end, never per batch. Ranks finish
        # their shards at different times, so the wait at the end may be long.
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0") or 0),
                       Path(output), fmt)
