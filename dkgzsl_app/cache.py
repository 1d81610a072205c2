"""A cache of backbone features, keyed by photo content + backbone + preprocessing.

One SQLite file (transactions: a crash mid-write leaves the old state), feature blobs with a checksum
each (a warm run scores exactly like a cold one, and a damaged entry is recomputed, never used), and a
size limit enforced by evicting the least recently used entries. Two kinds of feature (``FEATURE_KINDS``):
``pooled`` (D,) float32 (``dim`` = D), and ``regions`` (R, C) float16, the backbone's region/token map
(``dim`` = C, R = blob bytes / (2 C); 49 x 1280 x 2 = 125 kB a photo for tf_efficientnet_lite0). The
kind is part of the key (``backbone_key``), so the two never meet under one key. A second ``classify`` of
the same photos, or one after the class list changed, skips the backbone entirely.

The cache is never the reason a command fails: a damaged file (found when it is opened or at any later
read or write) is moved aside with its ``-wal``/``-shm`` files and rebuilt; a location that cannot be
written (read-only folder or file, no space) turns the cache off for the run. Either is said once,
through the ``warn`` callback.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from .mixed_bf16 import cache_tag
from .models.methods import FEATURE_KINDS  # pooled (B, D) | regions (B, R, C): what a method consumes

DEFAULT_LIMIT_BYTES = 2 * 1024**3
FEATURE_VERSION = 1  # bump when the feature computation changes for the same backbone config
SCHEMA_VERSION = 2  # PRAGMA user_version; 2 added the per-entry checksum. Other versions are emptied.
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
T = TypeVar("T")


def file_digest(path, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def backbone_key(config, precision: str = "fp32", channels_last: bool = False, kind: str = "pooled") -> str:
    """Everything that changes the features of a given photo: weights (``pretrained_tag``; a backbone
    fine-tuned in a bundle has a tag of its own naming its weights' digest, so neither the stock weights'
    features nor another fine-tuned copy's are served for it), preprocessing (``input_size`` among it: features
    at 224 px are never served for a bundle trained at 448, ``train --image-size``), the precision of
    the forward pass (bf16 and fp16 features differ from fp32 ones by percents: the demo model's region
    maps by 7.4% with plain bf16 autocast, 3.4% with the mixed scheme; so each gets its own key;
    bf16 through a backbone's mixed scheme adds the scheme's tag, so a changed scheme gets new keys)
    and the memory layout. channels_last and the default layout agree within fp32 round-off (~1e-6
    relative), but not bit for bit: ``train --images`` extracts in the default layout so that a bundle
    rebuilds byte for byte, and features classify cached in channels_last must not leak into it. fp32 in
    the default layout keeps the key it had before precisions and layouts existed, and every pooled key is
    what it was before ``kind`` existed; ``kind="regions"`` adds a field, so region maps get keys of their
    own. Every cached feature's photo was decoded with JPEG draft scaling (``extract._photo_loader``: DCT
    scaling to no less than the resize step's input; 12 MP photos: 7.8% relative L2 from a full decode, top-1
    agreement 95/96, issue 17): a change there needs a new ``FEATURE_VERSION``. The torch thread count is not
    part of the key: it moves features by fp32 round-off only (~1e-6 relative), as the number of cores does."""
    check_kind(kind)
    fields = {k: getattr(config, k) for k in ("name", "pretrained_tag", "input_size", "mean", "std",
                                               "interpolation", "crop_pct", "feature_layer")}
    fields["feature_version"] = FEATURE_VERSION
    if precision != "fp32":
        fields["precision"] = precision
    scheme = cache_tag(config.name, precision)  # bf16 with a mixed scheme (mixed_bf16.py): its tag
    if scheme:
        fields["bf16_scheme"] = scheme
    if channels_last:
        fields["layout"] = "channels_last"
    if kind != "pooled":
        fields["kind"] = kind
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def check_kind(kind: str) -> str:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind must be one of {', '.join(FEATURE_KINDS)}, not {kind!r}")
    return kind


def open_cache(path: Path | None = None, warn: Callable[[str], None] | None = None,
               limit_bytes: int = DEFAULT_LIMIT_BYTES) -> FeatureCache | None:
    """The feature cache at ``path`` (default: the user's), or None, after one ``warn``, if it cannot be
    used at all; a damaged file is rebuilt (also said through ``warn``)."""
    if path is None:
        from .locations import feature_cache_file

        path = feature_cache_file()
    cache = FeatureCache(path, limit_bytes, warn)
    return cache if cache.usable else None


def _is_corrupt(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    msg = str(e).lower()
    return "malformed" in msg or "not a database" in msg


def _checksum(digest: str, backbone: str, blob: bytes) -> int:
    # covers the key too: a damaged index that pairs a key with another row's data is caught as well
    return zlib.crc32(blob, zlib.crc32(f"{digest}\0{backbone}".encode()))


def _log_warning(message: str) -> None:
    logging.getLogger(__name__).warning(message)


class FeatureCache:
    """``get``/``put`` features by (photo digest, backbone key): pooled (D,) float32 or regions (R, C)
    float16 (``kind``); see the module docstring.

    ``warn`` receives at most one notice per problem (damaged file set aside; cache turned off); without
    one, notices go to the ``dkgzsl_app.cache`` logger. ``usable`` is False once the cache is off: then
    ``get`` finds nothing and ``put`` keeps nothing."""

    def __init__(self, path: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES,
                 warn: Callable[[str], None] | None = None):
        self.path, self.limit = Path(path), limit_bytes
        self.warn = warn or _log_warning
        self.db: sqlite3.Connection | None = None
        self._set_aside_once = False
        self._damaged_entries = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._open()
        except sqlite3.DatabaseError as e:
            if _is_corrupt(e):
                self._set_aside(e)
            else:
                self._turn_off(e)
        except OSError as e:
            self._turn_off(e)

    @property
    def usable(self) -> bool:
        return self.db is not None

    def _connect(self) -> sqlite3.Connection:
        # usable from any one thread at a time (the TUI reads it from its worker threads, one by one)
        return sqlite3.connect(self.path, timeout=30, check_same_thread=False)

    def _open(self) -> sqlite3.Connection:
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._migrate(db)
            db.execute("SELECT count(*) FROM features").fetchone()  # touches the index pages
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Create the table, or empty one of another schema version (it is only a cache)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:  # another process won?
                db.execute("DROP TABLE IF EXISTS features")
                db.execute("CREATE TABLE features (digest TEXT, backbone TEXT, dim INTEGER, data BLOB, "
                           "bytes INTEGER, used REAL, crc INTEGER, PRIMARY KEY (digest, backbone))")
                db.execute("CREATE INDEX features_used ON features (used)")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---- what goes wrong ------------------------------------------------------------------------------
    def _close_quietly(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    def _turn_off(self, e: Exception) -> None:
        self._close_quietly()
        reason = str(e)
        if isinstance(e, OSError) and e.strerror:
            reason = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
        self.warn(f"feature cache {self.path} cannot be used ({reason}); running without it, so photos "
                  "seen before go through the backbone again. Point DKGZSL_HOME at a writable folder, "
                  "or pass --no-cache to skip the cache.")

    def _set_aside(self, e: sqlite3.DatabaseError) -> None:
        """Move the damaged file (and its WAL and shared-memory files) aside and start an empty one."""
        self._close_quietly()
        self._set_aside_once = True
        stamp, n = int(time.time()), 0
        while True:  # a fresh name: an earlier damaged copy is kept, not overwritten
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
            if not aside.exists():
                break
            n += 1
        try:
            for suffix in ("", "-wal", "-shm"):
                src = self.path.with_name(self.path.name + suffix)
                if src.exists():
                    src.replace(aside.with_name(aside.name + suffix))
            self.db = self._open()
        except (OSError, sqlite3.DatabaseError) as e2:
            self._turn_off(e2)
            return
        self.warn(f"feature cache {self.path} was damaged ({e}); moved it to {aside.name} and started a "
                  "new one (photos seen before go through the backbone once more).")

    def _guarded(self, fn: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``fn()``; a damaged file is set aside (once) and ``fn`` retried; any other database failure
        turns the cache off. Either way the caller gets ``fallback()`` rather than an exception."""
        if self.db is None:
            return fallback()
        try:
            return fn()
        except sqlite3.DatabaseError as e:
            if not (_is_corrupt(e) and not self._set_aside_once):
                self._turn_off(e)
                return fallback()
            self._set_aside(e)
        if self.db is None:
            return fallback()
        try:
            return fn()
        except sqlite3.DatabaseError as e:
            self._turn_off(e)
            return fallback()

    # ---- the interface --------------------------------------------------------------------------------
    def get(self, digests: list[str], backbone: str, kind: str = "pooled") -> dict[str, np.ndarray]:
        """Features for the digests that are cached, pooled (D,) float32 or regions (R, C) float16 by
        ``kind`` (the one ``backbone`` was made with); marks them as recently used."""
        check_kind(kind)
        found: dict[str, np.ndarray] = {}
        now = time.time()
        for start in range(0, len(digests), 500):
            part = digests[start:start + 500]
            found.update(self._guarded(lambda: self._read(part, backbone, kind), dict))
            if self.db is not None:
                self._guarded(lambda: self._touch(part, backbone, now), lambda: None)
        return found

    def _read(self, part: list[str], backbone: str, kind: str = "pooled") -> dict[str, np.ndarray]:
        assert self.db is not None
        marks = ",".join("?" * len(part))
        rows = self.db.execute(f"SELECT digest, dim, data, crc FROM features "
                               f"WHERE backbone = ? AND digest IN ({marks})", [backbone, *part]).fetchall()
        found, damaged = {}, []
        for digest, dim, data, crc in rows:
            if not (isinstance(data, bytes) and isinstance(dim, int) and dim > 0
                    and crc == _checksum(digest, backbone, data)):
                damaged.append(digest)
            elif kind == "pooled" and len(data) == 4 * dim:
                found[digest] = np.frombuffer(data, dtype=np.float32).copy()  # (D,)
            elif kind == "regions" and len(data) and len(data) % (2 * dim) == 0:
                found[digest] = np.frombuffer(data, dtype=np.float16).reshape(-1, dim).copy()  # (R, C)
            else:
                damaged.append(digest)
        if damaged:
            self._drop_damaged(damaged, backbone)
        return found

    def _drop_damaged(self, digests: list[str], backbone: str) -> None:
        assert self.db is not None
        with self.db:
            self.db.executemany("DELETE FROM features WHERE digest = ? AND backbone = ?",
                                [(d, backbone) for d in digests])
        if not self._damaged_entries:
            self.warn(f"feature cache {self.path}: {len(digests)} damaged entr{'y' if len(digests) == 1 else 'ies'} "
                      "dropped; those photos go through the backbone again.")
        self._damaged_entries += len(digests)

    def _touch(self, part: list[str], backbone: str, now: float) -> None:
        assert self.db is not None
        marks = ",".join("?" * len(part))
        with self.db:
            self.db.execute(f"UPDATE features SET used = ? WHERE backbone = ? AND digest IN ({marks})",
                            [now, backbone, *part])

    def put(self, items: dict[str, np.ndarray], backbone: str, kind: str = "pooled") -> None:
        """Keep ``items`` (digest → pooled (D,) or regions (R, C), stored float32 or float16 by ``kind``)."""
        check_kind(kind)
        now = time.time()
        rows = []
        for digest, vec in items.items():
            vec = np.asarray(vec)
            if vec.ndim != (1 if kind == "pooled" else 2):
                raise ValueError(f"{kind} features are {'(D,)' if kind == 'pooled' else '(R, C)'} arrays, "
                                 f"not {vec.shape}")
            blob = np.ascontiguousarray(vec, dtype=np.float32 if kind == "pooled" else np.float16).tobytes()
            rows.append((digest, backbone, int(vec.shape[-1]), blob, len(blob), now,
                         _checksum(digest, backbone, blob)))

        def write() -> None:
            assert self.db is not None
            with self.db:  # one transaction: all or nothing
                self.db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self.evict()

        self._guarded(write, lambda: None)

    def size_bytes(self) -> int:
        if self.db is None:
            return 0
        return int(self.db.execute("SELECT coalesce(sum(bytes), 0) FROM features").fetchone()[0])

    def evict(self) -> int:
        """Drop least recently used entries until the blobs fit the limit; returns how many went."""
        total, dropped = self.size_bytes(), 0
        if total <= self.limit or self.db is None:
            return 0
        with self.db:
            for digest, backbone, size in self.db.execute(
                    "SELECT digest, backbone, bytes FROM features ORDER BY used ASC").fetchall():
                if total <= self.limit:
                    break
                self.db.execute("DELETE FROM features WHERE digest = ? AND backbone = ?", (digest, backbone))
                total -= size
                dropped += 1
        return dropped

    def close(self) -> None:
        self._close_quietly()
