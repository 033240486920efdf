"""A local stand-in for the parts of the Hugging Face Hub API that huggingface_hub uses to
publish a folder (with HF_ENDPOINT pointing here and HF_HUB_DISABLE_XET=1): repo creation,
YAML validation, preupload (upload mode + the remote oid that lets the client skip unchanged
files), the LFS batch API with basic upload and verify, the ndjson commit, and repo info."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    files: Dict[str, bytes] = field(default_factory=dict)
    lfs: Dict[str, str] = field(default_factory=dict)   # path -> sha256 of LFS files
    commits: List[str] = field(default_factory=list)


class FakeHub:
    def __init__(self, token: str = "hf_test_token", user: str = "tester") -> None:
        self.token, self.user = token, user
        self.repos: Dict[str, Repo] = {}
        self.lfs_store: Dict[str, bytes] = {}
        self.uploads: List[str] = []            # every LFS object received (oid)
        self.drop_lfs_uploads = 0               # this many next LFS PUTs lose their connection
        self.refuse_lfs_uploads = False         # storage answers 403 (not retried by the client)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()

    def route(self, method: str, path: str, auth: Optional[str], body: bytes):
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
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    staged[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "lfsFile":
                    oid = item["value"]["oid"]
                    if oid not in self.lfs_store:
                        return 400, {"error": f"LFS object {oid} was never uploaded"}
                    staged[item["value"]["path"]] = self.lfs_store[oid]
                    staged_lfs[item["value"]["path"]] = oid
            for path_, data in staged.items():
                repo.files[path_] = data
                repo.lfs.pop(path_, None)
            repo.lfs.update(staged_lfs)
            sha = hashlib.sha1(json.dumps(sorted(staged)).encode() + str(len(repo.commits)).encode()).hexdigest()
            repo.commits.append(sha)
            return 200, {"commitUrl": f"{self.url}/{m.group(1)}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": None}
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
                status, out = fake.route(self.command, self.path.split("?")[0], self.headers.get("Authorization"),
                                         self._body())
                self._send(status, out)

            def do_POST(self):
                if self.path.startswith("/lfs-verify"):
                    body = json.loads(self._body())
                    ok = body.get("oid") in fake.lfs_store
                    return self._send(200 if ok else 404, {} if ok else {"error": "object missing"})
                self._route()

            do_GET = _route

            def log_message(self, *args):
                pass

        return Handler
