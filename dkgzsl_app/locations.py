"""Every folder dkgzsl writes to, in one place. ``DKGZSL_HOME`` moves all of them (tests use it)."""
from __future__ import annotations

import os
from pathlib import Path

APP = "dkgzsl"


def home() -> Path | None:
    value = os.environ.get("DKGZSL_HOME")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Re-creatable data: backbone features."""
    if home():
        return home() / "cache"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP))


def data_dir() -> Path:
    """User data that must survive: user-added classes."""
    if home():
        return home() / "data"
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP))


def feature_cache_file() -> Path:
    return cache_dir() / "features.sqlite3"


def hub_cache_dir() -> Path | None:
    """Where Hub downloads go: huggingface_hub's own cache (HF_HOME / HF_HUB_CACHE), or
    ``$DKGZSL_HOME/hub`` when DKGZSL_HOME is set."""
    return home() / "hub" if home() else None
