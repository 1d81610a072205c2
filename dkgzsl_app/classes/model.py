"""What registry operations need from a model source, read without loading its weights (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..models.classcsv import ClassTable, read_class_csv
from ..models.errors import DataError
from ..sources import resolve_source
from .registry import Registry, read_registry, registry_dir


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


def open_model(source: str, offline: bool = False) -> ModelInfo:
    """Resolve ``source`` and read the bundle's config and class table (torch-free)."""
    from ..models.bundle import CLASSES_FILE, load_config

    folder = resolve_source(source, offline)
    config = load_config(folder)
    sha = weights_key(folder, config)
    table = read_class_csv(folder / CLASSES_FILE, attribute_names=list(config.attribute_names), require_origin=True)
    return ModelInfo(source, folder, config, sha, table)


def read(info: ModelInfo, with_head: bool = False) -> Registry:
    """The registry of ``info``'s model, verified (RegistryError names the repair command)."""
    width = head_width(info.config) if with_head else None
    return read_registry(info.registry, list(info.config.attribute_names), width, with_head, info.source)


def head_width(config) -> int:
    """Width of the head rows the registry keeps per user class: the student embedding E for a generative
    model, 0 for one that scores any attribute vector itself (``classes_from_attributes``: nothing is fitted,
    models/methods). Imports the method's module (torch)."""
    from ..models.methods import model_class

    return 0 if getattr(model_class(config.method), "classes_from_attributes", False) else config.head.embed_dim


def weights_key(folder, config) -> str:
    """A model's registry key: its weights hash (config.json's, else hashed from model.safetensors)."""
    if config.weights_sha256:
        return config.weights_sha256
    from ..models.bundle import WEIGHTS_FILE, sha256_bytes

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
