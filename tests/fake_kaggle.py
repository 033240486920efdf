"""A local stand-in for Kaggle's kernels service on localhost:7777, where the official client
goes with KAGGLE_API_ENVIRONMENT=TEST: POST /api/v1/{service}/{Method}, camelCase JSON, errors
as {"code", "message"} (kagglesdk 0.1.37 kaggle_http_client.py). It follows Kaggle's sources:

- auth: Basic username:key (the legacy key), or Bearer <API token>; the token's username comes
  from security.OAuthService/IntrospectToken {token} -> {active, username}, as the CLI asks it
  (Kaggle/kaggle-cli kaggle_api_extended.py `_introspect_token`, v2.2.3).
- SaveKernel to a slug that exists makes a new version of that kernel (kaggle-cli docs/
  kernels.md, `kernels push`); sessionTimeoutSeconds beyond Kaggle's session maximum (12 h,
  9 h on TPU: kaggle.com/docs/notebooks) is refused in the answer's `error` (what the real
  server does then is not documented; that the maximum exists is).
- secrets are attached per kernel, in its editor, and stay with it (Kaggle/kaggle-cli#582, a
  Kaggle maintainer): `attach_secret` stands for that, and the kernel's kaggle_secrets (the
  stub in kaggle_notebook/) sees only those. A legacy shortcut: a test that sets
  FAKE_KAGGLE_SECRETS in `env` itself gives those to every kernel.
- GetKernelSessionStatus of a kernel Kaggle does not know: 404.
- ListKernelSessionOutput.log is a JSON array of {stream_name, time, data} (kaggle-cli
  `_iter_blob_lines`). Here it is there at any time; Kaggle may give it only once the session
  has ended.
- CancelKernelSession takes one field, kernelSessionId (kagglesdk ApiCancelKernelSessionRequest);
  anything else is refused. No answer of this fake carries a session id, as none of Kaggle's
  public ones does.
A pushed script really runs (a subprocess in a folder standing in for /kaggle/working); its
files are the kernel's output, and sessionTimeoutSeconds ends it like a real session end."""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional

from machine_lock import machine_lock

PORT = 7777
STUBS = str(Path(__file__).parent / "kaggle_notebook")
_sessions = itertools.count(41_000_001)


class Kernel:
    def __init__(self, slug: str, version: int, script: str, working: Path, timeout_s: int, env: dict) -> None:
        self.slug, self.version, self.working = slug, version, working
        self.session_id = next(_sessions)
        working.mkdir(parents=True)
        (working.parent / "script.py").write_text(script)
        self.log = open(working.parent / "log.txt", "wb")
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, str(working.parent / "script.py")], cwd=working,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**env, "TETHER_WORKING": str(working)}, start_new_session=True)
        self.deadline = self.started + timeout_s
        self.cancelled = False
        self.timed_out = False

    def status(self) -> tuple:
        rc = self.proc.poll()
        if rc is None and time.time() > self.deadline:
            os.killpg(self.proc.pid, 9)
            self.timed_out = True
            rc = self.proc.wait()
        if self.cancelled:
            return ("CANCEL_ACKNOWLEDGED" if rc is not None else "CANCEL_REQUESTED"), ""
        if rc is None:
            return "RUNNING", ""
        if self.timed_out:
            return "ERROR", "Your notebook tried to run longer than the session timeout"
        return ("COMPLETE", "") if rc == 0 else ("ERROR", f"Your notebook exited with code {rc}")

    def log_json(self) -> str:
        lines = (self.working.parent / "log.txt").read_text(errors="replace").splitlines(keepends=True)
        return json.dumps([{"stream_name": "stdout", "time": round(0.01 * i, 3), "data": line}
                           for i, line in enumerate(lines)])


class FakeKaggle:
    def __init__(self, root: Path, user: str = "tetheruser", key: str = "kaggle-test-key",
                 token: str = "KGAT_test_token") -> None:
        self.root, self.user, self.key, self.token = root, user, key, token
        self.kernels: Dict[str, Kernel] = {}      # slug -> its latest version
        self.versions: list = []
        self.secrets: Dict[str, Dict[str, str]] = {}
        self.saved: list = []
        self.cancels: list = []
        self.introspected: list = []
        self.env = dict(os.environ)
        self._port_held = machine_lock("kaggle-port")  # the official client only knows :7777
        self._port_held.__enter__()
        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", PORT), self._handler())
        except OSError:
            self._port_held.__exit__(None, None, None)
            raise
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        for k in self.versions:
            if k.proc.poll() is None:
                os.killpg(k.proc.pid, 9)
        self.server.shutdown()
        self.server.server_close()
        self._port_held.__exit__(None, None, None)

    def attach_secret(self, slug: str, label: str, value: str) -> None:
        """What a user does once in the kernel's editor: Add-ons > Secrets."""
        self.secrets.setdefault(slug, {})[label] = value

    def _auth_ok(self, header: Optional[str]) -> bool:
        basic = "Basic " + base64.b64encode(f"{self.user}:{self.key}".encode()).decode()
        return header in (basic, f"Bearer {self.token}")

    def _kernel_env(self, slug: str, folder: Path) -> dict:
        env = dict(self.env)
        if slug in self.secrets or "FAKE_KAGGLE_SECRETS" not in env:
            path = folder / "attached-secrets.json"
            path.write_text(json.dumps(self.secrets.get(slug, {})))
            env["FAKE_KAGGLE_SECRETS"] = str(path)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths if STUBS in paths else [STUBS] + paths)
        return env

    def _save(self, body: dict, slug: str):
        self.saved.append(body)
        if len(body.get("newTitle") or "") < 5:
            return 200, {"error": "Title must be at least five characters"}
        timeout = int(body.get("sessionTimeoutSeconds") or 43200)
        limit = 9 * 3600 if str(body.get("machineShape") or "").lower().startswith("tpu") else 12 * 3600
        if timeout > limit:
            return 200, {"error": f"sessionTimeoutSeconds must be at most {limit}"}
        old = self.kernels.get(slug)
        version = old.version + 1 if old else 1
        folder = self.root / slug / f"v{version}"
        folder.mkdir(parents=True)
        kernel = Kernel(slug, version, body["text"], folder / "working", timeout, self._kernel_env(slug, folder))
        self.kernels[slug] = kernel
        self.versions.append(kernel)
        return 200, {"ref": f"{self.user}/{slug}", "url": f"https://www.kaggle.com/code/{self.user}/{slug}",
                     "versionNumber": version, "kernelId": 7_000 + len(self.kernels)}

    def call(self, method: str, body: dict):
        slug = (body.get("kernelSlug") or body.get("slug") or "").split("/")[-1]
        if method == "SaveKernel":
            return self._save(body, slug)
        if method == "CancelKernelSession":
            return self._cancel(body)
        if method == "GetAcceleratorQuotaStatistics":
            return 200, {"gpuQuota": {"timeUsed": "36000s", "totalTimeAllowed": "108000s"},
                         "tpuQuota": {"timeUsed": "0s", "totalTimeAllowed": "72000s"}}
        kernel = self.kernels.get(slug)
        if kernel is None:
            return 404, {"code": 404, "message": f"Kernel {slug} not found"}
        if method == "GetKernelSessionStatus":
            status, failure = kernel.status()
            return 200, {"status": status, "failureMessage": failure}
        if method == "ListKernelSessionOutput":
            kernel.status()
            files = [{"fileName": p.relative_to(kernel.working).as_posix(),
                      "url": f"http://localhost:{PORT}/files/{slug}/{p.relative_to(kernel.working).as_posix()}"}
                     for p in sorted(kernel.working.rglob("*")) if p.is_file()]
            return 200, {"files": files, "log": kernel.log_json()}
        return 404, {"code": 404, "message": f"no method {method}"}

    def _cancel(self, body: dict):
        self.cancels.append(body)
        if set(body) - {"kernelSessionId"}:
            return 400, {"code": 400, "message": f"Invalid JSON payload: unknown fields {sorted(set(body) - {'kernelSessionId'})}"}
        kernel = next((k for k in self.versions if k.session_id == body.get("kernelSessionId")), None)
        if kernel is None:
            return 404, {"code": 404, "message": "Kernel session not found"}
        kernel.cancelled = True
        if kernel.proc.poll() is None:
            os.killpg(kernel.proc.pid, 15)
        return 200, {}

    def introspect(self, body: dict):
        self.introspected.append(body.get("token"))
        if body.get("token") != self.token:
            return 200, {"active": False}
        return 200, {"active": True, "username": self.user, "clientId": "kaggle-cli", "scope": "resources.admin:*"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                prefix = "/api/v1/kernels.KernelsApiService/"
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/api/v1/security.OAuthService/IntrospectToken":
                    status, out = fake.introspect(body)
                    return self._send(status, json.dumps(out).encode(), "application/json")
                if not fake._auth_ok(self.headers.get("Authorization")):
                    return self._send(401, json.dumps({"code": 401, "message": "Unauthenticated"}).encode(),
                                      "application/json")
                if not self.path.startswith(prefix):
                    return self._send(404, b'{"code": 404, "message": "not found"}', "application/json")
                status, out = fake.call(self.path[len(prefix):], body)
                self._send(status, json.dumps(out).encode(), "application/json")

            def do_GET(self):
                parts = self.path.split("/", 3)  # "", "files", slug, path
                kernel = fake.kernels.get(parts[2]) if len(parts) == 4 and parts[1] == "files" else None
                path = (kernel.working / parts[3]) if kernel else None
                if path is None or not path.is_file():
                    return self._send(404, b"not found", "text/plain")
                self._send(200, path.read_bytes(), "application/octet-stream")

            def log_message(self, *args):
                pass

        return Handler
