"""A local stand-in for Kaggle's kernels service on localhost:7777, where the official client
goes with KAGGLE_API_ENVIRONMENT=TEST: POST /api/v1/kernels.KernelsApiService/{Method}, camelCase
JSON, Basic auth, {"code", "message"} errors. A pushed script really runs (a subprocess in a
folder standing in for /kaggle/working); its files are the kernel's output, its stdout the log,
and sessionTimeoutSeconds ends it like a real session end."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional

PORT = 7777


class Kernel:
    def __init__(self, slug: str, script: str, working: Path, timeout_s: int, env: dict) -> None:
        self.slug, self.working = slug, working
        working.mkdir(parents=True)
        (working.parent / "script.py").write_text(script)
        self.log = open(working.parent / "log.txt", "wb")
        self.proc = subprocess.Popen([sys.executable, str(working.parent / "script.py")], cwd=working,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**env, "TETHER_WORKING": str(working)}, start_new_session=True)
        self.deadline = time.time() + timeout_s
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


class FakeKaggle:
    def __init__(self, root: Path, user: str = "tetheruser", key: str = "kaggle-test-key") -> None:
        self.root, self.user, self.key = root, user, key
        self.kernels: Dict[str, Kernel] = {}
        self.saved: list = []
        self.env = dict(os.environ)
        self.server = ThreadingHTTPServer(("127.0.0.1", PORT), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        for k in self.kernels.values():
            if k.proc.poll() is None:
                os.killpg(k.proc.pid, 9)
        self.server.shutdown()
        self.server.server_close()

    def _auth_ok(self, header: Optional[str]) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.key}".encode()).decode()
        return header == expected

    def call(self, method: str, body: dict):
        slug = (body.get("kernelSlug") or body.get("slug") or "").split("/")[-1]
        if method == "SaveKernel":
            self.saved.append(body)
            if len(body.get("newTitle") or "") < 5:
                return 200, {"error": "Title must be at least five characters"}
            work = self.root / slug / "working"
            self.kernels[slug] = Kernel(slug, body["text"], work, int(body.get("sessionTimeoutSeconds") or 43200),
                                        self.env)
            return 200, {"ref": f"{self.user}/{slug}", "url": f"https://www.kaggle.com/code/{self.user}/{slug}",
                         "versionNumber": 1}
        kernel = self.kernels.get(slug)
        if kernel is None and method != "GetAcceleratorQuotaStatistics":
            return 404, {"code": 404, "message": f"Kernel {slug} not found"}
        if method == "GetKernelSessionStatus":
            status, failure = kernel.status()
            return 200, {"status": status, "failureMessage": failure}
        if method == "ListKernelSessionOutput":
            kernel.status()
            files = [{"fileName": p.relative_to(kernel.working).as_posix(),
                      "url": f"http://localhost:{PORT}/files/{slug}/{p.relative_to(kernel.working).as_posix()}"}
                     for p in sorted(kernel.working.rglob("*")) if p.is_file()]
            log = (kernel.working.parent / "log.txt").read_text(errors="replace")
            return 200, {"files": files, "log": log}
        if method == "CancelKernelSession":
            kernel.cancelled = True
            os.killpg(kernel.proc.pid, 15)
            return 200, {}
        if method == "GetAcceleratorQuotaStatistics":
            return 200, {"gpuQuota": {"timeUsed": "36000s", "totalTimeAllowed": "108000s"},
                         "tpuQuota": {"timeUsed": "0s", "totalTimeAllowed": "72000s"}}
        return 404, {"code": 404, "message": f"no method {method}"}

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
