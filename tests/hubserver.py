"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1, enough for huggingface_hub's downloads:
repo info, the recursive tree listing and resolve (HEAD/GET) with the headers the client reads, and
the error codes it maps to exceptions. Tests point HF_ENDPOINT at it; nothing is mocked."""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class Repo:
    def __init__(self):
        self.commits: dict[str, dict[str, bytes]] = {}  # commit sha → files
        self.refs: dict[str, str] = {}  # branch/tag → commit sha

    def push(self, files: dict[str, bytes], ref: str = "main") -> str:
        sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.refs[ref] = sha
        return sha

    def push_folder(self, folder: Path, ref: str = "main") -> str:
        return self.push({p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}, ref)

    def resolve(self, revision: str) -> str | None:
        return revision if revision in self.commits else self.refs.get(revision)


class HubServer:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                server._handle(self, body=False)

            def do_GET(self):
                server._handle(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def repo(self, repo_id: str) -> Repo:
        return self.repos.setdefault(repo_id, Repo())

    # -- routing -------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{h.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo_id, kind, rev = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            return self._api(h, repo_id, kind, rev, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, rev, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            return self._resolve(h, repo_id, rev, file, body)
        self._error(h, 404, "RepoNotFound", body)

    def _lookup(self, h, repo_id: str, rev: str, body: bool):
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 404, "RepoNotFound", body)
            return None, None
        sha = repo.resolve(rev)
        if sha is None:
            self._error(h, 404, "RevisionNotFound", body)
            return None, None
        return repo, sha

    def _api(self, h, repo_id: str, kind: str, rev: str, body: bool) -> None:
        repo, sha = self._lookup(h, repo_id, rev, body)
        if repo is None:
            return
        files = repo.commits[sha]
        if kind == "revision":
            data = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                    "siblings": [{"rfilename": f} for f in sorted(files)]}
        else:
            data = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for f, b in sorted(files.items())]
        self._send(h, 200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)

    def _resolve(self, h, repo_id: str, rev: str, file: str, body: bool) -> None:
        repo, sha = self._lookup(h, repo_id, rev, body)
        if repo is None:
            return
        data = repo.commits[sha].get(file)
        if data is None:
            return self._error(h, 404, "EntryNotFound", body, {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Content-Type": "application/octet-stream"}
        self._send(h, 200, data, headers, body)

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
