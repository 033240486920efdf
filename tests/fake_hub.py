"""A local stand-in for the parts of the Hugging Face Hub API that huggingface_hub uses to
publish a folder and read it back (with HF_ENDPOINT pointing here and HF_HUB_DISABLE_XET=1):
repo creation, YAML validation, preupload (upload mode + the remote oid that lets the client
skip unchanged files), the LFS batch API with basic upload and verify, the ndjson commit (files
added, files and folders deleted), repo info, the tree listing, and file downloads through
resolve/ (regular files answered directly with their git blob etag; LFS files redirected to
storage with X-Linked-Etag/X-Linked-Size, as the Hub does)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    files: Dict[str, bytes] = field(default_factory=dict)
    lfs: Dict[str, str] = field(default_factory=dict)   # path -> sha256 of LFS files
    commits: List[str] = field(default_factory=list)


class FakeHub:
    def __init__(self, token: str = "", user: str = "tester", host: str = "127.0.0.1") -> None:
        """host: where it listens (the multi-node tests' hosts reach it on their bridge)."""
        # A token of its own: tests look for it in places it must not be (other processes'
        # environments included), so another test's token must not be mistaken for it.
        self.token, self.user, self.host = token or f"hf_test_{secrets.token_hex(8)}", user, host
        self.repos: Dict[str, Repo] = {}
        self.lfs_store: Dict[str, bytes] = {}
        self.uploads: List[str] = []            # every LFS object received (oid)
        self.drop_lfs_uploads = 0               # this many next LFS PUTs lose their connection
        self.refuse_lfs_uploads = False         # storage answers 403 (not retried by the client)
        self.down = False                       # the network is gone: every connection is dropped
        self.slow_preupload_s = 0.0             # a slow link: each preupload answer takes this long
        self.downloads: List[str] = []          # paths served by resolve/, oids by storage
        # The Hub applies one commit after another: two hosts pushing at once (the nodes of a
        # multi-node job) each see the repo whole, before or after the other's commit.
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        # File storage lives on another origin, as the Hub's CDN does: the client follows a
        # resolve/ redirect there for the bytes, but takes the metadata from the redirect.
        self.storage = ThreadingHTTPServer((host, 0), self._handler())
        for server in (self.server, self.storage):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.storage.shutdown()

    def backups(self, repo_id: str, prefix: str = "") -> dict:
        """{folder: manifest} of the tether backups a repo holds now (under prefix: node-K/)."""
        files = self.repos[repo_id].files if repo_id in self.repos else {}
        return {p[len(prefix):].split("/")[0]: json.loads(data) for p, data in list(files.items())
                if p.startswith(prefix) and p.endswith("/MANIFEST.json") and p[len(prefix):].count("/") == 1}

    def _tree(self, repo: Repo, folder: str, recursive: bool):
        """The Hub's tree listing: files with their git blob oid (and lfs info), folders as
        "directory" entries; one page (no Link header)."""
        prefix = folder.rstrip("/") + "/" if folder else ""
        inside = [p for p in sorted(repo.files) if p.startswith(prefix)]
        if folder and not inside:
            return 404, {"error": f"{folder} does not exist on main"}
        entries, folders = [], set()
        for p in inside:
            rest = p[len(prefix):]
            parts = rest.split("/")
            for i in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:i]))
            if recursive or len(parts) == 1:
                entries.append(self._file_entry(repo, p))
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                    for f in sorted(folders)]
        return 200, entries

    @staticmethod
    def _file_entry(repo: Repo, path: str) -> dict:
        data = repo.files[path]
        entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        if path in repo.lfs:
            entry["lfs"] = {"oid": repo.lfs[path], "size": len(data), "pointerSize": 134}
        return entry

    def resolve(self, method: str, path: str, auth: Optional[str]) -> Tuple[int, Dict[str, str], bytes]:
        """HEAD/GET /{repo}/resolve/{revision}/{path}: status, headers, body."""
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if auth != f"Bearer {self.token}":
            return 401, {"X-Error-Code": "RepoNotFound"}, b'{"error": "Invalid credentials"}'
        repo = self.repos.get(m.group(1)) if m else None
        if repo is None:
            return 404, {"X-Error-Code": "RepoNotFound"}, b'{"error": "Repository not found"}'
        file_path = unquote(m.group(3))
        if file_path not in repo.files:
            return 404, {"X-Error-Code": "EntryNotFound"}, b'{"error": "Entry not found"}'
        data = repo.files[file_path]
        if method == "GET":
            self.downloads.append(file_path)
        headers = {"X-Repo-Commit": repo.commits[-1]}
        if file_path in repo.lfs:
            oid = repo.lfs[file_path]
            storage = f"http://{self.host}:{self.storage.server_port}/lfs-files/{oid}"
            headers.update({"Location": storage, "X-Linked-Etag": f'"{oid}"',
                            "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_sha1(data)}"'})
            return 302, headers, b""
        headers["ETag"] = f'"{git_blob_sha1(data)}"'
        return 200, headers, data

    def route(self, method: str, path: str, auth: Optional[str], body: bytes, query: Optional[Dict[str, str]] = None):
        query = query or {}
        if auth != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}
        if method == "POST" and path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req.get('organization') or self.user}/{req['name']}"
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            # Newer clients send visibility, older ones a private flag.
            private = req.get("visibility") in ("private", "protected") or bool(req.get("private"))
            self.repos[repo_id] = Repo(private=private)
            return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}
        if method == "POST" and path == "/api/validate-yaml":
            return 200, {}
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path)
        if method == "POST" and m:
            time.sleep(self.slow_preupload_s)
            repo = self.repos.get(m.group(1))
            if repo is None:
                return 404, {"error": "Repository not found"}
            files = []
            for f in json.loads(body)["files"]:
                lfs = f["size"] > 1_000_000 or f["path"].endswith((".safetensors", ".bin", ".pt"))
                old = repo.files.get(f["path"])
                oid = None
                if old is not None:
                    oid = repo.lfs[f["path"]] if f["path"] in repo.lfs else git_blob_sha1(old)
                files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                              "shouldIgnore": False, "oid": oid})
            return 200, {"files": files, "commitOid": repo.commits[-1] if repo.commits else "0" * 40}
        m = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if method == "POST" and m:
            objects = []
            for o in json.loads(body)["objects"]:
                if o["oid"] in self.lfs_store:
                    objects.append({"oid": o["oid"], "size": o["size"]})  # already there: no actions
                else:
                    objects.append({"oid": o["oid"], "size": o["size"], "authenticated": True, "actions": {
                        "upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"},
                        "verify": {"href": f"{self.url}/lfs-verify"}}})
            return 200, {"transfer": "basic", "objects": objects}
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path)
        if method == "POST" and m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return 404, {"error": "Repository not found"}
            staged = {}
            staged_lfs = {}
            deleted = []
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] in ("deletedFile", "deletedFolder"):
                    deleted.append((item["key"], item["value"]["path"]))
                elif item["key"] == "file":
                    staged[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "lfsFile":
                    oid = item["value"]["oid"]
                    if oid not in self.lfs_store:
                        return 400, {"error": f"LFS object {oid} was never uploaded"}
                    staged[item["value"]["path"]] = self.lfs_store[oid]
                    staged_lfs[item["value"]["path"]] = oid
            for kind, gone in deleted:
                prefix = gone.rstrip("/") + "/"
                for path_ in [p for p in repo.files if p == gone or (kind == "deletedFolder" and p.startswith(prefix))]:
                    del repo.files[path_]
                    repo.lfs.pop(path_, None)
            for path_, data in staged.items():
                repo.files[path_] = data
                repo.lfs.pop(path_, None)
            repo.lfs.update(staged_lfs)
            change = json.dumps([sorted(staged), deleted]).encode() + str(len(repo.commits)).encode()
            sha = hashlib.sha1(change).hexdigest()
            repo.commits.append(sha)
            return 200, {"commitUrl": f"{self.url}/{m.group(1)}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": None}
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if method == "GET" and m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return 404, {"error": "Repository not found"}
            return self._tree(repo, unquote((m.group(3) or "/")[1:]), query.get("recursive") == "true")
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if method == "GET" and m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return 404, {"error": "Repository not found"}
            return 200, {"id": m.group(1), "modelId": m.group(1), "private": repo.private,
                         "sha": repo.commits[-1] if repo.commits else "0" * 40,
                         "siblings": [{"rfilename": p} for p in sorted(repo.files)]}
        return 404, {"error": f"no route {method} {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self):
                if fake.down:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                super().handle_one_request()

            def _send(self, status: int, out) -> None:
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_PUT(self):
                body = self._body()
                m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", self.path)
                if not m:
                    return self._send(404, {"error": "no route"})
                if fake.drop_lfs_uploads > 0:  # the network fails in the middle of the upload
                    fake.drop_lfs_uploads -= 1
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fake.refuse_lfs_uploads:
                    return self._send(403, {"error": "storage refused the object"})
                if hashlib.sha256(body).hexdigest() != m.group(1):
                    return self._send(400, {"error": "sha256 mismatch"})
                fake.lfs_store[m.group(1)] = body
                fake.uploads.append(m.group(1))
                self._send(200, {})

            def _route(self):
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body = self._body()
                with fake.lock:
                    status, out = fake.route(self.command, url.path, self.headers.get("Authorization"), body, query)
                self._send(status, out)

            def _download(self, head: bool):
                path = urlsplit(self.path).path
                m = re.fullmatch(r"/lfs-files/([0-9a-f]{64})", path)
                if m:  # the storage a resolve/ redirect points to
                    data = fake.lfs_store.get(m.group(1))
                    if not head:
                        fake.downloads.append(m.group(1))
                    status, headers = (200, {}) if data is not None else (404, {})
                    data = data if data is not None else b"missing"
                else:
                    status, headers, data = fake.resolve(self.command, path, self.headers.get("Authorization"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def do_HEAD(self):
                if "/resolve/" in self.path or self.path.startswith("/lfs-files/"):
                    return self._download(head=True)
                self._send(404, {"error": "no route"})

            def do_GET(self):
                if "/resolve/" in self.path or self.path.startswith("/lfs-files/"):
                    return self._download(head=False)
                self._route()

            def do_POST(self):
                if self.path.startswith("/lfs-verify"):
                    body = json.loads(self._body())
                    ok = body.get("oid") in fake.lfs_store
                    return self._send(200 if ok else 404, {} if ok else {"error": "object missing"})
                self._route()

            def log_message(self, *args):
                pass

        return Handler
