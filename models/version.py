"""The installed dkgzsl version, read from the package metadata (so models/ and trainer/ never import the app)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DIST_NAME = "dkgzsl"


def package_version() -> str:
    """``dkgzsl``'s version as installed (pip metadata), or ``"unknown"`` when it is not installed."""
    try:
        return version(DIST_NAME)
    except PackageNotFoundError:
        return "unknown"
