"""Bundles on the Hugging Face Hub: ``hf-hub:ORG/NAME[@REVISION]`` → a verified local folder.

Downloads go through huggingface_hub (``snapshot_download``) into its cache, so a revision is pinned
by commit hash in the snapshot path; ``offline`` only looks in that cache. ``HF_ENDPOINT`` is honoured.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .locations import hub_cache_dir
from .models.errors import BundleError

BUNDLE_FILES = ["config.json", "model.safetensors", "classes.csv", "README.md"]
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class HubRef:
    repo_id: str
    revision: str = "main"

    def __str__(self) -> str:
        return f"hf-hub:{self.repo_id}" + ("" if self.revision == "main" else f"@{self.revision}")


def parse_hub_source(source: str) -> HubRef:
    body = source[len("hf-hub:"):] if source.startswith("hf-hub:") else source
    repo, _, rev = body.partition("@")
    if not _REPO.match(repo) or (source.count("@") > 1):
        raise BundleError(f"{source!r} is not a Hub model name: write hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION.")
    return HubRef(repo, rev or "main")


def download_bundle(ref: HubRef, offline: bool = False) -> Path:
    """The snapshot folder of ``ref`` (downloaded if needed); errors say what to do."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    try:
        folder = snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=BUNDLE_FILES,
                                   local_files_only=offline, library_name="dkgzsl", library_version=__version__,
                                   cache_dir=hub_cache_dir())
    except GatedRepoError:
        raise BundleError(f"{ref}: the repository is gated; accept its terms on the Hub and log in "
                          "(hf auth login).") from None
    except RepositoryNotFoundError:
        raise BundleError(f"{ref}: no such model repository on the Hub (if it is private, log in with "
                          "`hf auth login`).") from None
    except RevisionNotFoundError:
        raise BundleError(f"{ref}: revision {ref.revision!r} does not exist in {ref.repo_id}.") from None
    except LocalEntryNotFoundError:
        if offline:  # the user may have just run `models download --offline`: advise what differs
            raise BundleError(f"{ref} is not in the local cache and --offline forbids downloading it (cache: "
                              f"{hub_cache_dir()}). Run the same command without --offline while online; "
                              "after that, --offline finds it.") from None
        raise BundleError(f"{ref} is not in the local cache and the Hub cannot be reached. Check the "
                          "network (or HF_ENDPOINT) and try again.") from None
    except OSError as e:  # network errors the client did not map
        raise BundleError(f"{ref}: download failed ({e}). Check the network, or use --offline for a cached copy.") from None
    return Path(folder)


@dataclass
class CachedBundle:
    repo_id: str
    commit: str
    refs: list[str]
    path: Path
    method: str
    classes: int
    size_bytes: int


def cached_bundles() -> list[CachedBundle]:
    """dkgzsl bundles in the Hub cache (other models in it are ignored)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            cfg = Path(rev.snapshot_path) / "config.json"
            try:
                data = json.loads(cfg.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or "format_version" not in data or "method" not in data:
                continue
            out.append(CachedBundle(repo.repo_id, rev.commit_hash, sorted(rev.refs), Path(rev.snapshot_path),
                                    str(data["method"]), len(data.get("class_names", [])), rev.size_on_disk))
    return sorted(out, key=lambda b: (b.repo_id, b.commit))
