"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1 for huggingface_hub's downloads, uploads and
search: repo info, the recursive tree listing and resolve (HEAD/GET) with the headers the client reads;
create_repo (``/api/repos/create``), branches, README metadata validation, preupload and the NDJSON
commit that create_commit/upload_folder send; and ``/api/models`` (list_models). Committed files are kept
on disk (one blob per sha256 under ``root``). Tokens: ``tokens`` lists the valid ones; a request with
another Bearer token gets 401, writes without one get 401 too. ``cut_from`` ("commit", "preupload", ...)
drops the connection of every request of that kind and after it, as if the network went down mid-upload.
Tests point HF_ENDPOINT at it; nothing is mocked."""
from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


def git_blob_sha1(data: bytes) -> str:
    """The git object id huggingface_hub compares (``_local_oid``) to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, root: Path, private: bool = False):
        self.root = root
        self.private = private
        self.commits: dict[str, dict[str, str]] = {}  # commit sha → {path: sha256 of a blob on disk}
        self.times: dict[str, float] = {}
        self.messages: dict[str, str] = {}
        self.refs: dict[str, str] = {}  # branch/tag → commit sha

    def _store(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / digest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return digest

    def files(self, sha: str) -> dict[str, bytes]:
        return {p: (self.root / "blobs" / d).read_bytes() for p, d in self.commits[sha].items()}

    def push(self, files: dict[str, bytes], ref: str = "main", message: str = "") -> str:
        stored = {k: self._store(v) for k, v in files.items()}
        parent = self.refs.get(ref, "")
        sha = hashlib.sha1(json.dumps([parent, message, sorted(stored.items())]).encode()).hexdigest()
        self.commits[sha], self.times[sha], self.messages[sha] = stored, time.time(), message
        self.refs[ref] = sha
        return sha

    def push_folder(self, folder: Path, ref: str = "main") -> str:
        return self.push({p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}, ref)

    def resolve(self, revision: str) -> str | None:
        return revision if revision in self.commits else self.refs.get(revision)

    def card_data(self) -> dict:
        """The README's YAML metadata on main ({} without one)."""
        import yaml

        sha = self.refs.get("main")
        text = self.files(sha).get("README.md", b"").decode("utf-8", "replace") if sha else ""
        if not text.startswith("---"):
            return {}
        try:
            data = yaml.safe_load(text.split("---", 2)[1])
        except yaml.YAMLError:
            return {}
        return data if isinstance(data, dict) else {}


class Cut(Exception):
    """Raised inside a handler to drop the connection without an answer."""


class HubServer:
    def __init__(self, root: Path | None = None, tokens: tuple[str, ...] = ("hf_test_write_token",)):
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="hubserver-"))
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        self.tokens = set(tokens)
        self.cut_from: str | None = None  # request kind from which on the "network is down"
        self.downloads: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                server._dispatch(self, body=False)

            def do_GET(self):
                server._dispatch(self, body=True)

            def do_POST(self):
                server._dispatch(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def repo(self, repo_id: str, private: bool = False) -> Repo:
        if repo_id not in self.repos:
            self.repos[repo_id] = Repo(self.root / repo_id, private)
        return self.repos[repo_id]

    # -- routing -------------------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        try:
            self._handle(h, body)
        except Cut:
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass

    def _kind(self, parts: list[str]) -> str:
        if parts[:2] == ["api", "repos"]:
            return "create"
        if parts[:2] == ["api", "models"] and len(parts) >= 5:
            return parts[4]  # revision | tree | preupload | commit | branch
        if len(parts) >= 3 and parts[2] == "resolve":
            return "resolve"
        return parts[1] if parts[:1] == ["api"] and len(parts) > 1 else "other"

    def _auth(self, h) -> str | None:
        """'ok' for a valid token, None without one; 'bad' for a token the server does not know."""
        value = h.headers.get("Authorization", "")
        if not value.startswith("Bearer "):
            return None
        return "ok" if value[len("Bearer "):] in self.tokens else "bad"

    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        parts = path.strip("/").split("/")
        self.requests.append(f"{h.command} {path}")
        self.headers_seen.append(dict(h.headers))
        kind = self._kind(parts)
        order = ["create", "branch", "validate-yaml", "preupload", "commit"]
        if self.cut_from and (kind == self.cut_from or (kind in order and self.cut_from in order
                                                         and order.index(kind) > order.index(self.cut_from))):
            length = int(h.headers.get("Content-Length") or 0)
            h.rfile.read(length // 2)  # part of the upload arrives, then the line goes dead
            raise Cut()
        data = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if h.command == "POST" else b""
        auth = self._auth(h)
        if auth == "bad" or (h.command == "POST" and parts[:2] != ["api", "validate-yaml"] and auth is None):
            return self._send(h, 401, json.dumps({"error": "Invalid credentials in Authorization header"}).encode(),
                              {"Content-Type": "application/json"}, body)
        if parts == ["api", "models"]:
            return self._list(h, parse_qs(url.query), auth == "ok", body)
        if parts == ["api", "repos", "create"]:
            return self._create(h, json.loads(data or b"{}"))
        if parts == ["api", "validate-yaml"]:
            return self._json(h, 200, {"errors": [], "warnings": []})
        if parts[:2] == ["api", "models"] and len(parts) == 4:
            return self._api(h, "/".join(parts[2:4]), "revision", "main", body)
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, kind, rev = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            if kind in ("revision", "tree"):
                return self._api(h, repo_id, kind, rev, body)
            if kind == "preupload":
                return self._preupload(h, repo_id, rev, json.loads(data or b"{}"))
            if kind == "commit":
                return self._commit(h, repo_id, rev, data)
            if kind == "branch":
                return self._branch(h, repo_id, rev, json.loads(data or b"{}"))
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, rev, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            return self._resolve(h, repo_id, rev, file, body)
        self._error(h, 404, "RepoNotFound", body)

    def _lookup(self, h, repo_id: str, rev: str, body: bool):
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and self._auth(h) != "ok"):
            self._error(h, 404 if repo is None else 401, "RepoNotFound", body)
            return None, None
        sha = repo.resolve(rev)
        if sha is None:
            self._error(h, 404, "RevisionNotFound", body)
            return None, None
        return repo, sha

    # -- reads ---------------------------------------------------------------------------------
    def _api(self, h, repo_id: str, kind: str, rev: str, body: bool) -> None:
        repo, sha = self._lookup(h, repo_id, rev, body)
        if repo is None:
            return
        files = repo.files(sha)
        if kind == "revision":
            data = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                    "siblings": [{"rfilename": f} for f in sorted(files)]}
        else:
            data = [{"type": "file", "path": f, "size": len(b), "oid": git_blob_sha1(b)}
                    for f, b in sorted(files.items())]
        self._send(h, 200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)

    def _resolve(self, h, repo_id: str, rev: str, file: str, body: bool) -> None:
        repo, sha = self._lookup(h, repo_id, rev, body)
        if repo is None:
            return
        data = repo.files(sha).get(file)
        if data is None:
            return self._error(h, 404, "EntryNotFound", body, {"X-Repo-Commit": sha})
        if body and file == "config.json":
            self.downloads[repo_id] = self.downloads.get(repo_id, 0) + 1
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Content-Type": "application/octet-stream"}
        self._send(h, 200, data, headers, body)

    def _list(self, h, query: dict, authed: bool, body: bool) -> None:
        """list_models: ``filter`` (tags, the library among them), ``search`` (in the id), ``cardData``."""
        wanted = set(query.get("filter", []))
        search = (query.get("search") or [""])[0].lower()
        rows = []
        for repo_id, repo in sorted(self.repos.items()):
            if "main" not in repo.refs or (repo.private and not authed):
                continue
            card = repo.card_data()
            tags = set(card.get("tags") or []) | ({card["library_name"]} if card.get("library_name") else set())
            if (wanted and not wanted <= tags) or search not in repo_id.lower():
                continue
            sha = repo.refs["main"]
            row = {"id": repo_id, "modelId": repo_id, "private": repo.private, "sha": sha,
                   "downloads": self.downloads.get(repo_id, 0), "likes": 0, "tags": sorted(tags),
                   "library_name": card.get("library_name"), "pipeline_tag": card.get("pipeline_tag"),
                   "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(repo.times[sha]))}
            if query.get("cardData") or query.get("full"):
                row["cardData"] = card
            rows.append(row)
        limit = int((query.get("limit") or [len(rows)])[0])
        self._send(h, 200, json.dumps(rows[:limit]).encode(), {"Content-Type": "application/json"}, body)

    # -- writes --------------------------------------------------------------------------------
    def _create(self, h, payload: dict) -> None:
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        if repo_id in self.repos:
            return self._json(h, 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
        repo = self.repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        repo.push({".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, message="initial commit")
        self._json(h, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _branch(self, h, repo_id: str, branch: str, payload: dict) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", True)
        if branch in repo.refs:
            return self._json(h, 409, {"error": f"Reference refs/heads/{branch} already exists"})
        start = repo.resolve(payload.get("startingPoint") or "main")
        if start is None:
            return self._error(h, 404, "RevisionNotFound", True)
        repo.refs[branch] = start
        self._json(h, 200, {})

    def _preupload(self, h, repo_id: str, rev: str, payload: dict) -> None:
        repo, sha = self._lookup(h, repo_id, rev, True)
        if repo is None:
            return
        have = {p: git_blob_sha1(b) for p, b in repo.files(sha).items()}
        # "regular": the content travels base64 inside the commit (no LFS/Xet transfer to emulate)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": have.get(f["path"])}
                 for f in payload.get("files", [])]
        self._json(h, 200, {"files": files, "commitOid": sha})

    def _commit(self, h, repo_id: str, rev: str, data: bytes) -> None:
        repo, sha = self._lookup(h, repo_id, rev, True)
        if repo is None:
            return
        files = repo.files(sha)
        message = ""
        try:
            for line in data.decode("utf-8").splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "header":
                    message = value.get("summary", "")
                    if value.get("parentCommit") and value["parentCommit"] != sha:
                        return self._json(h, 412, {"error": "A commit has happened since. Please refresh and try again."})
                elif item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "deletedFile":
                    files.pop(value["path"], None)
                else:  # lfsFile etc.: preupload never asks for LFS
                    return self._json(h, 400, {"error": f"unsupported commit operation {item['key']}"})
        except (ValueError, KeyError) as e:
            return self._json(h, 400, {"error": f"malformed commit payload ({e})"})
        new = repo.push(files, rev, message)
        self._json(h, 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{new}", "commitOid": new,
                            "pullRequestUrl": None})

    # -- answers -------------------------------------------------------------------------------
    def _json(self, h, status: int, payload) -> None:
        self._send(h, status, json.dumps(payload).encode(), {"Content-Type": "application/json"}, True)

    def _error(self, h, status: int, code: str, body: bool, headers: dict | None = None) -> None:
        self._send(h, status, json.dumps({"error": code}).encode(),
                   {"X-Error-Code": code, "Content-Type": "application/json", **(headers or {})}, body)

    @staticmethod
    def _send(h, status: int, data: bytes, headers: dict, body: bool) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
