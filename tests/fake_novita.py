"""A local stand-in for Novita's GPU-instance API, following novita.ai/docs/api-reference
gpu-instance-get-instance, -list-instances, -create-instance, -delete-instance (checked
2026-08): products, create, get (flat object, status progression, connectComponentSSH with a
password), delete with an empty 200 body, 401 for a bad key. As the docs give them:
`statusError` is an object {state, message}, present on every instance (empty while healthy,
carrying the failure when there is one); `Content-Type: application/json` is a required header
on every call, GET included (refused here with 400 without it: the docs do not say how the
server answers its absence); a missing instance is 404 with reason INSTANCE_NOT_FOUND.
Its SSH endpoint is a test sshd that takes a password."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List
from urllib.parse import parse_qs, urlparse

PREFIX = "/gpu-instance/openapi/v1"


class FakeNovita:
    def __init__(self, port: int, user: str, password: str, key: str = "novita-test-key") -> None:
        self.port, self.user, self.password, self.key = port, user, password, key
        self.products: List[dict] = []
        self.instances: Dict[str, dict] = {}
        self.deleted: List[str] = []
        self.creates: List[dict] = []
        self.failing: Dict[str, dict] = {}    # product id -> the statusError its instances get
        self.delete_fails: set = set()        # instance ids whose delete answers 500
        self._n = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{PREFIX}"

    def stop(self) -> None:
        self.server.shutdown()

    def add_product(self, pid: str, name: str, price: int) -> None:
        self.products.append({"id": pid, "name": name, "cpuPerGpu": 8, "memoryPerGpu": 64, "diskPerGpu": 100,
                              "availableDeploy": True, "minRootFS": 10, "maxRootFS": 500, "regions": ["test-1"],
                              "price": price, "spotPrice": price // 2, "billingMethods": ["onDemand"],
                              "inventoryState": "normal"})

    def handle(self, method: str, url: str, auth: str, body, content_type: str = ""):
        if auth != f"Bearer {self.key}":
            return 401, {"code": 401, "reason": "INVALID_API_KEY", "message": "invalid api key"}
        if content_type.split(";")[0].strip() != "application/json":
            return 400, {"code": 400, "reason": "INVALID_HEADER", "message": "Content-Type must be application/json"}
        parsed = urlparse(url)
        path, query = parsed.path[len(PREFIX):], parse_qs(parsed.query)
        if method == "GET" and path == "/products":
            name = (query.get("productName") or [""])[0]
            return 200, {"data": [p for p in self.products if name in p["name"]]}
        if method == "POST" and path == "/gpu/instance/create":
            self.creates.append(body)
            self._n += 1
            iid = f"inst-{self._n}"
            self.instances[iid] = {"id": iid, "name": body["name"], "status": "toCreate",
                                   "statusError": {"state": "", "message": ""}, "productId": body["productId"],
                                   "cpuNum": "8", "memory": "64", "gpuNum": str(body["gpuNum"]),
                                   "portMappings": [], "billingMode": "onDemand", "endTime": "-1",
                                   "connectComponentSSH": {"sshCommand": "", "password": "", "isRunning": False},
                                   "_polls": 0}
            return 200, {"id": iid}
        if method == "GET" and path == "/gpu/instance":
            inst = self.instances.get((query.get("instanceId") or [""])[0])
            if inst is None or inst["status"] == "removed":
                return 404, {"code": 404, "reason": "INSTANCE_NOT_FOUND", "message": "instance not found"}
            inst["_polls"] += 1
            if inst["productId"] in self.failing and inst["_polls"] >= 2:
                inst["status"], inst["statusError"] = "pulling", dict(self.failing[inst["productId"]])
            elif inst["_polls"] == 2:
                inst["status"] = "pulling"
            elif inst["_polls"] >= 3:
                inst["status"] = "running"
                inst["portMappings"] = [{"port": 22, "endpoint": f"127.0.0.1:{self.port}", "type": "tcp"}]
                inst["connectComponentSSH"] = {"sshCommand": f"ssh -p {self.port} {self.user}@127.0.0.1",
                                               "password": self.password, "isRunning": True}
            return 200, {k: v for k, v in inst.items() if not k.startswith("_")}
        if method == "POST" and path == "/gpu/instance/delete":
            inst = self.instances.get(body.get("instanceId"))
            if body.get("instanceId") in self.delete_fails:
                return 500, {"code": 500, "reason": "INTERNAL", "message": "internal error"}
            if inst is None:
                return 404, {"code": 404, "reason": "INSTANCE_NOT_FOUND", "message": "instance not found"}
            inst["status"] = "removed"
            self.deleted.append(body["instanceId"])
            return 200, ""   # delete may answer an empty body
        return 404, {"code": 404, "message": f"no route {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, out = fake.handle(self.command, self.path, self.headers.get("Authorization", ""),
                                          json.loads(raw) if raw else None, self.headers.get("Content-Type", ""))
                data = out.encode() if isinstance(out, str) else json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        return Handler
