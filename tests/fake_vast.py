"""A local stand-in for Vast.ai's REST API. It follows Vast's own sources, checked 2026-08:

- vast-ai/docs api-reference/openapi.yaml and openapi/yaml/*.yaml (commit c624622): shapes of
  /bundles/, PUT /asks/{id}/ (200 new_contract + instance_api_key as in hello-world.mdx; 404
  no_such_ask when taken; 410 no_such_ask when it cannot start now), GET /instances/{id}/
  ({"instances": null} once gone), DELETE (404 not_found), GET /api/v1/instances/ (select_filters
  on label, next_token pages), and each endpoint's x-rate-limit: a minimum interval per endpoint
  and identity (create 4.5 s + 12 s penalty, show 2.0, destroy 3.0, list 1.0, search 10/min),
  answered 429 with no Retry-After, bodies as the openapi gives them ({"detail": ...}, the
  destroy one {"success": false, "error": "rate_limit_exceeded", ...}) or plain text
  (api-reference/rate-limits-and-errors.mdx). Our reading, not Vast's words: a refused call
  restarts the interval too (so a client polling faster than the gap never gets through).
- gpu_name matched exactly, with Vast's real variant names ("H100 SXM", "Tesla T4": the GPU
  constants in vast-ai/vast-cli vastai/data/query.py); cuda_max_good on each offer.
- actual_status values from docs.vast.ai cli/reference/show-instance.mdx; an on-demand create
  whose machine cannot run it is cancelled (cancel_unavail) or left "stopped".
`scale` shrinks every interval (tests). The SSH endpoint is the test sshd; attached keys land in
its authorized_keys."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlparse

_OPS = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
    "in": lambda a, b: a in (b or []), "notin": lambda a, b: a not in (b or []),
}
# endpoint -> (minimum interval s, penalty s after a refusal, 429 body)
LIMITS = {
    "create": (4.5, 12.0, {"detail": "API requests too frequent endpoint threshold=4.5"}),
    "show": (2.0, 0.0, {"detail": "API requests too frequent endpoint threshold=2.0"}),
    "destroy": (3.0, 0.0, {"success": False, "error": "rate_limit_exceeded",
                           "msg": "API requests too frequent endpoint threshold=3.0"}),
    "list": (1.0, 0.0, {"detail": "API requests too frequent endpoint threshold=1.0"}),
    "offers": (6.0, 0.0, "API requests too frequent"),
}


class FakeVast:
    def __init__(self, sshd, key: str = "vast-test-key", scale: float = 0.0) -> None:
        self.sshd, self.key, self.scale = sshd, key, scale   # scale 0: no rate limits
        self.offers: List[dict] = []
        self.instances: Dict[int, dict] = {}
        self.never_up: set = set()          # offer ids whose instances end up "exited"
        self.stops: set = set()             # offer ids whose instances sit "stopped"
        self.vanished: set = set()          # offer ids answered with 404 no_such_ask
        self.unavailable: set = set()       # offer ids answered with 410 no_such_ask
        self.destroy_fails: set = set()     # instance ids whose DELETE answers 500
        self.rate_limit_next = 0            # this many next requests get 429, whatever the pace
        self.rate_limit_show = 0            # this many next GET /instances/{id}/ get 429
        self.create_answer = "ok"           # "drop": rents, then closes the connection unanswered
        self.create_delay_s = 0.0           # rents at once, answers this much later
        self.polls_before_running = 2
        self.instance_api_key: Optional[str] = "instance-scoped-key"
        self.requests: List[tuple] = []     # (method, path, authorization)
        self.refused: List[str] = []        # endpoints answered 429
        self.deletes: List[tuple] = []      # (instance id, authorization)
        self._last: Dict[tuple, float] = {}
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
                  reliability: float = 0.995, cuda: float = 12.4) -> None:
        self.offers.append({"id": oid, "machine_id": oid * 10, "num_gpus": num_gpus, "gpu_name": gpu,
                            "gpu_ram": 24564, "cpu_ram": 64000, "disk_space": 200.0, "dph_total": price,
                            "min_bid": price / 2, "reliability": reliability, "verification": "verified",
                            "rentable": True, "public_ipaddr": "127.0.0.1", "geolocation": "Testland",
                            "inet_up": 500.0, "inet_down": 900.0, "cuda_max_good": cuda, "score": 1.0})

    # -- rate limits ------------------------------------------------------------------------

    def _too_soon(self, endpoint: Optional[str], auth: str):
        if endpoint is None or not self.scale or endpoint not in LIMITS:
            return None
        gap, penalty, body = LIMITS[endpoint]
        now = time.monotonic()
        with self._lock:
            free_at = self._last.get((endpoint, auth), 0.0)
            if now < free_at:
                self._last[(endpoint, auth)] = now + (gap + penalty) * self.scale
                self.refused.append(endpoint)
                return 429, body
            self._last[(endpoint, auth)] = now + gap * self.scale
        return None

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

    def handle(self, method: str, path: str, auth: str, body: Optional[dict], query: dict):
        self.requests.append((method, path, auth))
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return 429, "API requests too frequent"
        refused = self._too_soon(_endpoint(method, path), auth)
        if refused:
            return refused
        if method == "DELETE" and (m := re.fullmatch(r"/api/v0/instances/(\d+)/", path)):
            return self._delete(int(m.group(1)), auth)
        if auth != f"Bearer {self.key}":
            return 401, {"success": False, "error": "invalid_api_key", "msg": "Invalid API key"}
        if method == "POST" and path == "/api/v0/bundles/":
            found = [o for o in self.offers if self._matches(o, body or {})]
            return 200, {"offers": sorted(found, key=lambda o: o["dph_total"])}
        if method == "PUT" and (m := re.fullmatch(r"/api/v0/asks/(\d+)/", path)):
            return self._create(int(m.group(1)), body)
        if method == "POST" and (m := re.fullmatch(r"/api/v0/instances/(\d+)/ssh/", path)):
            inst = self.instances.get(int(m.group(1)))
            if inst is None:
                return 404, {"success": False, "error": "no_such_instance", "msg": "not found"}
            with open(Path(self.sshd.dir) / "authorized_keys", "a") as f:
                f.write(body["ssh_key"].strip() + "\n")
            return 200, {"success": True}
        if method == "GET" and (m := re.fullmatch(r"/api/v0/instances/(\d+)/", path)):
            if self.rate_limit_show > 0:
                self.rate_limit_show -= 1
                self.refused.append("show")
                return 429, LIMITS["show"][2]
            inst = self.instances.get(int(m.group(1)))
            if inst is None or inst.get("_gone"):
                return 200, {"instances": None}
            self._advance(inst)
            return 200, {"instances": _public(inst)}
        if method == "GET" and path == "/api/v1/instances/":
            return self._list(query)
        return 404, {"success": False, "error": "not_found", "msg": path}

    def _create(self, oid: int, body: dict):
        offer = next((o for o in self.offers if o["id"] == oid), None)
        if offer is None or oid in self.vanished:
            return 404, {"success": False, "error": "invalid_args", "ask_id": oid,
                         "msg": f"error 404/3603: no_such_ask Instance type by id {oid} is not available."}
        if oid in self.unavailable:
            return 410, {"success": False, "error": "no_such_ask", "ask_id": oid,
                         "msg": f"error 410/3907: no_such_ask Instance type {oid} is no longer available."}
        with self._lock:
            iid, self._next = self._next, self._next + 1
        self.instances[iid] = {"id": iid, "label": body.get("label"), "actual_status": None,
                               "intended_status": "running", "cur_state": "running", "status_msg": "",
                               "ssh_host": "127.0.0.1", "ssh_port": self.sshd.port, "public_ipaddr": None,
                               "dph_total": offer["dph_total"], "start_date": time.time(),
                               "gpu_name": offer["gpu_name"], "num_gpus": offer["num_gpus"], "_offer": oid,
                               "_polls": 0, "_api_key": self.instance_api_key, "_body": body}
        if self.create_answer == "drop":
            return "drop", None
        time.sleep(self.create_delay_s)
        out = {"success": True, "new_contract": iid}
        if self.instance_api_key:
            out["instance_api_key"] = self.instance_api_key
        return 200, out

    def _delete(self, iid: int, auth: str):
        inst = self.instances.get(iid)
        if auth not in (f"Bearer {self.key}", f"Bearer {inst and inst.get('_api_key')}"):
            return 401, {"success": False, "error": "invalid_api_key", "msg": "Invalid API key"}
        self.deletes.append((iid, auth))
        if iid in self.destroy_fails:
            return 500, {"success": False, "error": "server_error", "msg": "Internal error, try again"}
        if inst is None or inst.get("_gone"):
            return 404, {"success": False, "error": "not_found", "msg": "Instance not found"}
        inst["_gone"] = True
        return 200, {"success": True}

    def _list(self, query: dict):
        filters = json.loads((query.get("select_filters") or ["{}"])[0])
        live = [_public(i) for i in self.instances.values() if not i.get("_gone")]
        found = [i for i in live if self._matches(i, filters)]
        return 200, {"success": True, "instances_found": len(found), "total_instances": len(found),
                     "instances": found[:25], "next_token": None}

    def _advance(self, inst: dict) -> None:
        inst["_polls"] += 1
        if inst["_offer"] in self.never_up:
            inst["actual_status"] = "loading" if inst["_polls"] < 2 else "exited"
            inst["status_msg"] = "Error response from daemon: container failed to start"
        elif inst["_offer"] in self.stops:
            inst["actual_status"] = "stopped"
            inst["status_msg"] = "Machine GPUs are in use by another client"
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
                url = urlparse(self.path)
                status, out = fake.handle(self.command, url.path, self.headers.get("Authorization", ""), body,
                                          parse_qs(url.query))
                if status == "drop":  # the rent went through; its answer never leaves
                    self.close_connection = True
                    return
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


def _public(inst: dict) -> dict:
    return {k: v for k, v in inst.items() if not k.startswith("_")}


def _endpoint(method: str, path: str) -> Optional[str]:
    if path == "/api/v0/bundles/":
        return "offers"
    if path.startswith("/api/v0/asks/"):
        return "create"
    if path == "/api/v1/instances/":
        return "list"
    if re.fullmatch(r"/api/v0/instances/\d+/", path):
        return {"GET": "show", "DELETE": "destroy"}.get(method)
    return None
