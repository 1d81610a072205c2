"""The model side of the browser, free of UI: load, classify in chunks, re-score, explain.

Every method here may take seconds; the app calls them from thread workers only. Backbone features go
through a feature cache (the user's SQLite one, or an in-memory one with ``--no-cache``), so re-scoring
after the class list changed, and explaining a photo, never rerun the backbone for a photo seen before.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from ..sources import DEFAULT_MODEL


def background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: nice is per thread, and the torch and DataLoader
    threads and processes it starts inherit it), so the UI thread wins the CPU while the model works.
    Elsewhere, or when not permitted, a no-op."""
    import os

    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < 10:
            os.setpriority(os.PRIO_PROCESS, tid, 10)
    except (AttributeError, OSError):
        pass


@contextmanager
def _gc_paused():
    """Load with the cyclic garbage collector off, then freeze what loading made.

    Loading torch, timm and a model leaves ~500k long-lived objects; with them in the collector's oldest
    generation every full collection walks them all, 250-330 ms with the GIL held, on whichever thread
    allocates next (usually the UI thread): the longest stalls measured in benchmarks/tui_responsiveness.py.
    ``gc.freeze()`` moves them out of the collector's sight (they live as long as the app anyway)."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def preload_libraries() -> None:
    """Import torch and timm now (about 1.5-3 s on a 2-core CPU). Importing them holds the GIL for up to
    ~185 ms at a stretch (extension modules initialise with it held), which stalls the UI thread however
    the import is scheduled; done before the app draws its first frame, that stall never shows."""
    import timm  # noqa: F401 (imports torch and torchvision too)
    import timm.data  # noqa: F401


class MemoryFeatureCache:
    """The FeatureCache interface (get/put by digest and backbone key), kept in memory for one session.
    ``kind`` (pooled | regions) is already part of the backbone key (``cache.backbone_key``)."""

    def __init__(self):
        self._items: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, digests: list[str], backbone: str, kind: str = "pooled") -> dict:
        with self._lock:
            return {d: self._items[(d, backbone)] for d in digests if (d, backbone) in self._items}

    def put(self, items: dict, backbone: str, kind: str = "pooled") -> None:
        with self._lock:
            self._items.update({(d, backbone): v for d, v in items.items()})


@dataclass
class EngineOptions:
    model: str | None = DEFAULT_MODEL  # None: browse a results file without any model
    device: str = "auto"
    offline: bool = False
    top_k: int = 5
    calibration: float | None = None
    batch_size: int = 32
    workers: int = 2
    use_cache: bool = True
    chunk: int = 64  # photos per classify call: the table fills in steps of this size
    threads: int = 0  # torch CPU threads (0 = torch's default)
    precision: str = "auto"  # the backbone's: auto | fp32 | bf16 (dkgzsl_app.precision)
    reject: bool = True  # flag photos `unknown` when the bundle has an open-set threshold (classify --tui --no-reject)


class Engine:
    """A lazily loaded Classifier plus its feature cache and attribute explainer."""

    def __init__(self, options: EngineOptions | None = None):
        self.options = options or EngineOptions()
        self.classifier = None
        self.explainer = None
        self.cache = None
        self.notices: list[str] = []  # e.g. the feature cache turned off or rebuilt; the app may show them
        self.warn: Callable[[str], None] = self.notices.append  # the app may replace it (e.g. with a toast)
        self._lock = threading.Lock()  # one model call at a time (workers may overlap)

    @property
    def loaded(self) -> bool:
        return self.classifier is not None

    def load(self):
        """Load the classifier (and its cache and explainer) once; later calls return it."""
        background_priority()
        with self._lock:
            if self.classifier is None:
                with _gc_paused():
                    self._load()
            return self.classifier

    def _load(self) -> None:
        from ..classify import load
        from ..models.errors import BundleError

        if self.options.model is None:
            raise BundleError("no model: browsing without one (--no-model) shows results only.")

        if self.options.threads:
            import torch

            torch.set_num_threads(self.options.threads)
        clf = load(self.options.model, self.options.device, self.options.offline, self.options.precision)
        clf.reject = self.options.reject
        if self.options.use_cache:
            from ..cache import open_cache

            # an unusable disk cache (read-only DKGZSL_HOME, ...) still leaves this session's in memory
            self.cache = open_cache(warn=lambda note: self.warn(note)) or MemoryFeatureCache()
        else:
            self.cache = MemoryFeatureCache()
        self._fit_explainer(clf)
        self.classifier = clf

    def _fit_explainer(self, clf) -> None:
        from ..explain import AttributeExplainer

        cfg = clf.bundle.config
        self.explainer = AttributeExplainer.fit(clf.bundle.model, cfg.attribute_names, cfg.attribute_norm)

    @property
    def class_names(self) -> list[str]:
        return list(self.classifier.class_names) if self.classifier else []

    def origin_of(self, name: str) -> str:
        clf = self.classifier
        if clf is None or name not in clf.class_names:
            return ""
        return clf.bundle.origins[clf.class_names.index(name)]

    def classify(self, paths: list[str], on_chunk: Callable[[int, list], None],
                 on_photos: Callable[[int], None] | None = None, cancelled: Callable[[], bool] = lambda: False):
        """Classify ``paths`` chunk by chunk; ``on_chunk(start, predictions)`` after each chunk."""
        clf = self.load()
        o = self.options
        for start in range(0, len(paths), o.chunk):
            if cancelled():
                return
            with self._lock:
                preds = clf.classify(paths[start:start + o.chunk], o.top_k, o.calibration, o.batch_size, o.workers,
                                     on_photos, cache=self.cache)
            on_chunk(start, preds)

    def rescore(self, paths: list[str]) -> list:
        """Predictions for ``paths`` from cached features (the head only, for photos seen before)."""
        clf = self.load()
        o = self.options
        with self._lock:
            return clf.classify(paths, o.top_k, o.calibration, o.batch_size, 0, None, cache=self.cache)

    def reload_classes(self) -> None:
        """Pick up classes added or removed since loading (the class registry), then refit the explainer."""
        clf = self.load()
        with self._lock:
            clf.reload_classes()
            self._fit_explainer(clf)

    def class_vector(self, name: str):
        """The attribute vector (A,) of class ``name`` as the loaded model has it, or None."""
        clf = self.classifier
        if clf is None or name not in clf.class_names:
            return None
        return clf.bundle.model.class_attributes[clf.class_names.index(name)].detach().cpu().numpy()

    def features(self, path: str):
        """Raw backbone features of one photo, pooled (D,) or regions (R, C) as the bundle consumes them: from
        the cache, else one backbone pass (then cached)."""
        clf = self.load()
        with self._lock:
            got = clf.features([path], batch_size=1, workers=0, cache=self.cache)
        return got.features[0].numpy() if 0 in got.features else None

    def explain(self, path: str, class_name: str):
        """Evidence for ``class_name`` in the photo at ``path`` (see explain.AttributeExplainer.explain)."""
        feats = self.features(path)
        vec = self.class_vector(class_name)
        if feats is None or vec is None:
            return []
        return self.explainer.explain(feats, vec)
