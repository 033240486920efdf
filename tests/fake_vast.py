"""A local stand-in for Vast.ai's REST API, following shared/providers.md: the five calls,
the null -> loading -> running progression, ports only while running, 404 no_such_ask for a
vanished offer, 429 with a plain-text body, 401 for a bad key, {"instances": null} once gone.
The SSH endpoint it hands out is the test sshd, and attached keys land in its authorized_keys."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional


_OPS = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
    "in": lambda a, b: a in (b or []), "notin": lambda a, b: a not in (b or []),
}


class FakeVast:
    def __init__(self, sshd, key: str = "vast-test-key") -> None:
        self.sshd, self.key = sshd, key
        self.offers: List[dict] = []
        self.instances: Dict[int, dict] = {}
        self.never_up: set = set()          # offer ids whose instances end up "exited"
        self.vanished: set = set()          # offer ids answered with 404 no_such_ask
        self.rate_limit_next = 0            # this many next requests get 429
        self.polls_before_running = 2
        self.instance_api_key: Optional[str] = "instance-scoped-key"
        self.requests: List[tuple] = []     # (method, path, authorization)
        self.deletes: List[tuple] = []      # (instance id, authorization)
        self._next = 1000
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/api/v0"

    def start(self) -> "FakeVast":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def add_offer(self, oid: int, gpu: str = "RTX 4090", price: float = 0.4, num_gpus: int = 1,
                  reliability: float = 0.995) -> None:
        self.offers.append({"id": oid, "machine_id": oid * 10, "num_gpus": num_gpus, "gpu_name": gpu,
                            "gpu_ram": 24564, "cpu_ram": 64000, "disk_space": 200.0, "dph_total": price,
                            "min_bid": price / 2, "reliability": reliability, "verification": "verified",
                            "rentable": True, "public_ipaddr": "127.0.0.1", "geolocation": "Testland",
                            "inet_up": 500.0, "inet_down": 900.0, "cuda_max_good": 12.4, "score": 1.0})

    # -- the protocol ---------------------------------------------------------------------

    def _matches(self, offer: dict, query: dict) -> bool:
        for field, cond in query.items():
            if not isinstance(cond, dict) or field not in offer:
                continue
            for op, value in cond.items():
                test = _OPS.get(op)
                if test is not None and not test(offer[field], value):
                    return False
        return True

    def handle(self, method: str, path: str, auth: str, body: Optional[dict]):
        self.requests.append((method, path, auth))
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return 429, "API requests too frequent"
        if method == "DELETE" and (m := re.fullmatch(r"/api/v0/instances/(\d+)/", path)):
            iid = int(m.group(1))
            inst = self.instances.get(iid)
            if auth not in (f"Bearer {self.key}", f"Bearer {inst and inst.get('_api_key')}"):
                return 401, {"success": False, "error": "invalid_api_key", "msg": "Invalid API key"}
            self.deletes.append((iid, auth))
            if inst is None or inst.get("_gone"):
                return 404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"}
            inst["_gone"] = True
            return 200, {"success": True}
        if auth != f"Bearer {self.key}":
            return 401, {"success": False, "error": "invalid_api_key", "msg": "Invalid API key"}
        if method == "POST" and path == "/api/v0/bundles/":
            found = [o for o in self.offers if self._matches(o, body or {})]
            return 200, {"offers": sorted(found, key=lambda o: o["dph_total"])}
        if method == "PUT" and (m := re.fullmatch(r"/api/v0/asks/(\d+)/", path)):
            oid = int(m.group(1))
            offer = next((o for o in self.offers if o["id"] == oid), None)
            if offer is None or oid in self.vanished:
                return 404, {"success": False, "error": "no_such_ask", "msg": f"Instance type {oid} not found"}
            with self._lock:
                iid, self._next = self._next, self._next + 1
            self.instances[iid] = {"id": iid, "label": body.get("label"), "actual_status": None,
                                   "intended_status": "running", "cur_state": "running", "status_msg": "",
                                   "ssh_host": "127.0.0.1", "ssh_port": self.sshd.port, "public_ipaddr": None,
                                   "dph_total": offer["dph_total"], "start_date": 0, "gpu_name": offer["gpu_name"],
                                   "num_gpus": offer["num_gpus"], "_offer": oid, "_polls": 0,
                                   "_api_key": self.instance_api_key, "_body": body}
            out = {"success": True, "new_contract": iid}
            if self.instance_api_key:
                out["instance_api_key"] = self.instance_api_key
            return 200, out
        if method == "POST" and (m := re.fullmatch(r"/api/v0/instances/(\d+)/ssh/", path)):
            inst = self.instances.get(int(m.group(1)))
            if inst is None:
                return 404, {"success": False, "error": "no_such_instance", "msg": "not found"}
            with open(Path(self.sshd.dir) / "authorized_keys", "a") as f:
                f.write(body["ssh_key"].strip() + "\n")
            return 200, {"success": True}
        if method == "GET" and (m := re.fullmatch(r"/api/v0/instances/(\d+)/", path)):
            inst = self.instances.get(int(m.group(1)))
            if inst is None or inst.get("_gone"):
                return 200, {"instances": None}
            self._advance(inst)
            return 200, {"instances": {k: v for k, v in inst.items() if not k.startswith("_")}}
        if method == "GET" and path == "/api/v0/instances/":
            live = [{k: v for k, v in i.items() if not k.startswith("_")} for i in self.instances.values()
                    if not i.get("_gone")]
            return 200, {"instances_found": len(live), "instances": live}
        return 404, {"success": False, "error": "not_found", "msg": path}

    def _advance(self, inst: dict) -> None:
        inst["_polls"] += 1
        if inst["_offer"] in self.never_up:
            inst["actual_status"] = "loading" if inst["_polls"] < 2 else "exited"
            inst["status_msg"] = "Error response from daemon: container failed to start"
        elif inst["_polls"] < self.polls_before_running:
            inst["actual_status"] = None if inst["_polls"] == 1 else "loading"
        else:
            inst["actual_status"] = "running"
            inst["public_ipaddr"] = "127.0.0.1"
            inst["ports"] = {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(self.sshd.port)}]}

    def alive(self) -> List[int]:
        return [i for i, inst in self.instances.items() if not inst.get("_gone")]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, out = fake.handle(self.command, self.path.split("?")[0],
                                          self.headers.get("Authorization", ""), body)
                data = out.encode() if isinstance(out, str) else json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(out, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler
