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
from .models.errors import BundleError, DkgzslError

BUNDLE_FILES = ["config.json", "model.safetensors", "classes.csv", "README.md"]
OPTIONAL_FILES = ["ausuc.png"]  # models.bundle.CURVE_FILE: the model card's AUSUC plot, when the bundle has one
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
        folder = snapshot_download(ref.repo_id, revision=ref.revision,
                                   allow_patterns=BUNDLE_FILES + OPTIONAL_FILES,
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
    if not (Path(folder) / "config.json").is_file():  # e.g. a repository whose first push never completed
        raise BundleError(f"{ref}: the repository holds no dkgzsl bundle (no config.json at that revision); "
                          "push one with `dkgzsl push BUNDLE ORG/NAME`, or check the name.")
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


def hub_origin(folder) -> tuple[str, str] | None:
    """(repo id, commit) of a folder in the Hub cache (``…/models--ORG--NAME/snapshots/<commit>``), the
    commit its revision resolved to when it was downloaded; None for any other folder."""
    folder = Path(folder)
    repo_dir = folder.parent.parent
    if folder.parent.name != "snapshots" or not repo_dir.name.startswith("models--"):
        return None
    if not re.fullmatch(r"[0-9a-f]{40}", folder.name):
        return None
    return repo_dir.name[len("models--"):].replace("--", "/", 1), folder.name


def model_record(source: str, folder, weights_sha256: str = "") -> dict:
    """What a results file records about the weights that made it: ``model`` (the Hub id as
    ``hf-hub:ORG/NAME``, else the --model value), ``model_commit`` (the Hub commit, else None) and
    ``weights_sha256``."""
    origin = hub_origin(folder) if folder is not None else None
    return {"model": f"hf-hub:{origin[0]}" if origin else source, "model_commit": origin[1] if origin else None,
            "weights_sha256": weights_sha256 or None}


# -- publishing ------------------------------------------------------------------------------------

@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit: str
    url: str
    created: bool  # the repository was created by this push


def hub_token() -> str:
    """The user's Hub token (HF_TOKEN, else the one `hf auth login` stored); never printed."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise DkgzslError("pushing needs a Hugging Face access token with write permission, and none is set: "
                          "run `hf auth login`, or set HF_TOKEN (tokens: https://huggingface.co/settings/tokens).")
    return token


def _transport_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):  # huggingface_hub 2.x ships on httpx2; older ones on httpx
        try:
            errors.append(__import__(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _http_error(e, repo_id: str) -> DkgzslError:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status == 401:
        return DkgzslError(f"the Hub refused the token (401 Unauthorized) for {repo_id}: it is invalid, expired or "
                           "revoked. Log in again (`hf auth login`) or set HF_TOKEN to a token with write access.")
    if status == 403:
        return DkgzslError(f"the token may not write to {repo_id} (403 Forbidden): use a token with write access, "
                           "and a namespace (your user name or an organisation) you may write to.")
    if status == 412:
        return DkgzslError(f"{repo_id} changed while pushing (someone else pushed to it); nothing was published. "
                           "Run the same command again.")
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return DkgzslError(f"the Hub refused the push to {repo_id} ({status or 'no status'}: {first}).")


def push_folder(staged: Path, files: list[str], repo_id: str, *, private: bool = False, revision: str = "main",
                message: str = "", token: str | None = None) -> PushResult:
    """Create ``repo_id`` if needed and add ``files`` of ``staged`` to ``revision`` in one commit (all or
    nothing). An existing repository is accepted when it holds nothing but a dkgzsl bundle."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = token or hub_token()
    api = HfApi(token=token, library_name="dkgzsl", library_version=__version__)
    transport = _transport_errors()
    created = True
    try:
        try:
            url = str(api.create_repo(repo_id, private=private, exist_ok=False))
        except HfHubHTTPError as e:
            if getattr(e.response, "status_code", None) != 409:
                raise
            created, url = False, f"{api.endpoint}/{repo_id}"
            present = set(api.list_repo_files(repo_id))
            other = sorted(present - set(BUNDLE_FILES + OPTIONAL_FILES) - {".gitattributes"})
            if other:
                raise DkgzslError(f"hf-hub:{repo_id} already exists and holds files that are not part of a dkgzsl "
                                  f"bundle ({', '.join(other[:5])}); push to a new repository name.") from None
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        parent = api.repo_info(repo_id, revision=revision).sha  # a concurrent push makes the commit fail
        ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(staged / f)) for f in files]
        if not created:  # an earlier push's optional file (the AUSUC plot) that this bundle lacks: deleted
            at_revision = set(api.list_repo_files(repo_id, revision=revision))
            ops += [CommitOperationDelete(path_in_repo=f) for f in OPTIONAL_FILES
                    if f in at_revision and f not in files]
        info = api.create_commit(repo_id, ops, commit_message=message, revision=revision, parent_commit=parent)
    except HfHubHTTPError as e:
        raise _http_error(e, repo_id) from None
    except transport as e:
        raise DkgzslError(f"the connection to the Hub failed while pushing to {repo_id} ({type(e).__name__}: {e}). "
                          "Nothing was published: a commit is all or nothing. Check the network (or HF_ENDPOINT) "
                          "and run the same command again.") from None
    return PushResult(repo_id, revision, info.oid, url, created)


def search_bundles(query: str | None = None, limit: int = 50, offline: bool = False) -> list[dict]:
    """dkgzsl bundles on the Hub (library ``dkgzsl``), most downloaded first: id, downloads, last modified,
    method, backbone and data set as their model cards state them."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    cannot = ("searching the Hub needs the network, and {why}. `dkgzsl models list` shows the bundles already "
              "in the local cache.")
    if offline or constants.HF_HUB_OFFLINE:
        raise DkgzslError(cannot.format(why="--offline (or HF_HUB_OFFLINE=1) forbids it"))
    api = HfApi(library_name="dkgzsl", library_version=__version__)
    try:
        found = list(api.list_models(filter="dkgzsl", search=query or None, cardData=True, limit=limit,
                                     sort="downloads"))
    except OfflineModeIsEnabled:
        raise DkgzslError(cannot.format(why="HF_HUB_OFFLINE=1 forbids it")) from None
    except HfHubHTTPError as e:
        raise DkgzslError(f"the Hub answered the search with an error ({str(e).splitlines()[0]}).") from None
    except _transport_errors() as e:
        raise DkgzslError(cannot.format(why=f"the Hub cannot be reached ({type(e).__name__}); check the network "
                                            "or HF_ENDPOINT")) from None
    rows = []
    for m in found:
        card = m.card_data.to_dict() if m.card_data is not None else {}
        ours = card.get("dkgzsl") if isinstance(card.get("dkgzsl"), dict) else {}
        datasets = card.get("datasets") or []
        base = card.get("base_model")
        rows.append({
            "id": m.id, "model": f"hf-hub:{m.id}", "downloads": m.downloads,
            "last_modified": m.last_modified.isoformat() if m.last_modified else None,
            "method": ours.get("method"),
            "backbone": ours.get("backbone") or (base if isinstance(base, str) else None),
            "dataset": ", ".join(datasets) if isinstance(datasets, list) and datasets else ours.get("data_source"),
        })
    return rows
