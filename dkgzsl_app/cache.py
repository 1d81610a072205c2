"""A cache of backbone features, keyed by photo content + backbone + preprocessing.

One SQLite file (transactions: a crash mid-write leaves the old state), float32 feature blobs (a
warm run scores exactly like a cold one), and a
size limit enforced by evicting the least recently used entries. A second ``classify`` of the same
photos, or one after the class list changed, skips the backbone entirely. A corrupt cache file is
moved aside and rebuilt, never an error.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_LIMIT_BYTES = 2 * 1024**3
FEATURE_VERSION = 1  # bump when the feature computation changes for the same backbone config


def file_digest(path, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def backbone_key(config) -> str:
    """Everything that changes the features of a given photo: weights and preprocessing."""
    fields = {k: getattr(config, k) for k in ("name", "pretrained_tag", "input_size", "mean", "std",
                                               "interpolation", "crop_pct", "feature_layer")}
    fields["feature_version"] = FEATURE_VERSION
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


class FeatureCache:
    def __init__(self, path: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES):
        self.path, self.limit = Path(path), limit_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as e:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            self.path.replace(aside)
            warnings.warn(f"feature cache {self.path} was unreadable ({e}); moved to {aside.name}, starting afresh")
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        # usable from any one thread at a time (the TUI reads it from its worker threads, one by one)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS features (digest TEXT, backbone TEXT, dim INTEGER, data BLOB, "
                   "bytes INTEGER, used REAL, PRIMARY KEY (digest, backbone))")
        db.execute("CREATE INDEX IF NOT EXISTS features_used ON features (used)")
        db.execute("SELECT count(*) FROM features").fetchone()  # touches the pages: corrupt files fail here
        return db

    def get(self, digests: list[str], backbone: str) -> dict[str, np.ndarray]:
        """Features (float32) for the digests that are cached; marks them as recently used."""
        found: dict[str, np.ndarray] = {}
        now = time.time()
        for start in range(0, len(digests), 500):
            part = digests[start:start + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT digest, dim, data FROM features WHERE backbone = ? AND digest IN ({marks})",
                                   [backbone, *part]).fetchall()
            for digest, dim, data in rows:
                vec = np.frombuffer(data, dtype=np.float32)
                if vec.shape == (dim,):
                    found[digest] = vec.copy()
            with self.db:
                self.db.execute(f"UPDATE features SET used = ? WHERE backbone = ? AND digest IN ({marks})",
                                [now, backbone, *part])
        return found

    def put(self, items: dict[str, np.ndarray], backbone: str) -> None:
        now = time.time()
        rows = []
        for digest, vec in items.items():
            blob = np.ascontiguousarray(vec, dtype=np.float32).tobytes()
            rows.append((digest, backbone, int(np.asarray(vec).shape[0]), blob, len(blob), now))
        with self.db:  # one transaction: all or nothing
            self.db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.evict()

    def size_bytes(self) -> int:
        return int(self.db.execute("SELECT coalesce(sum(bytes), 0) FROM features").fetchone()[0])

    def evict(self) -> int:
        """Drop least recently used entries until the blobs fit the limit; returns how many went."""
        total, dropped = self.size_bytes(), 0
        if total <= self.limit:
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
        self.db.close()
