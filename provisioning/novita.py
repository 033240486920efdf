"""Novita AI GPU instances (REST, https://api.novita.ai/gpu-instance/openapi/v1).

Follows novita.ai/docs/api-reference/gpu-instance-* (Get Instance, List Instances, Create,
Delete; checked 2026-08): every call marks `Content-Type: application/json` and `Authorization`
as required headers, GET ones included; `statusError` is an object {state, message} that is
present on healthy instances too.

Prices: `price` is an integer that third-party code reads as 1e-5 USD per GPU-hour; the docs do
not say. We read it that way and say so in the README."""

from __future__ import annotations

import os
import re
import time
from typing import List, Optional

from .base import (port_open, CreateRequest, Instance, InstanceState, NotReady, Offer, ProviderError, RateLimited,
                   Resources, SshEndpoint, Teardown)
from .http import Pace, RestClient

DEFAULT_URL = "https://api.novita.ai/gpu-instance/openapi/v1"
PRICE_UNIT = 1e-5  # USD per GPU-hour per unit of `price` (uncertain; see module doc)

_STATES = {
    "toCreate": InstanceState.PROVISIONING, "creating": InstanceState.PROVISIONING,
    "pulling": InstanceState.PROVISIONING, "running": InstanceState.READY,
    "toStart": InstanceState.PROVISIONING, "starting": InstanceState.PROVISIONING,
    "toRestart": InstanceState.PROVISIONING, "restarting": InstanceState.PROVISIONING,
    "toReset": InstanceState.PROVISIONING, "resetting": InstanceState.PROVISIONING,
    "migrating": InstanceState.PROVISIONING,
    "toStop": InstanceState.STOPPED, "stopping": InstanceState.STOPPED, "exited": InstanceState.STOPPED,
    "freezing": InstanceState.STOPPED,
    "toRemove": InstanceState.GONE, "removing": InstanceState.GONE, "removed": InstanceState.GONE,
}


def parse_ssh_command(command: str) -> tuple:
    """`ssh root@HOST -p PORT` or `ssh -p PORT root@HOST` -> (user, host, port)."""
    who = re.search(r"(?:^|\s)([^\s@-][^\s@]*)@(\S+)", command)
    port = re.search(r"-p\s*(\d+)", command)
    if not who:
        raise ProviderError(f"novita: cannot read the SSH command {command!r}")
    return who.group(1), who.group(2), int(port.group(1)) if port else 22


def status_error(data: dict) -> Optional[str]:
    """The instance's real error, or None. `statusError` is {state, message}, present on
    healthy instances too; a plain string is read as the message."""
    err = data.get("statusError")
    if isinstance(err, dict):
        # A failure comes with its message; a bare state is not evidence of one (a starting
        # instance that never gets there is still caught by the ready deadline).
        state, message = str(err.get("state") or "").strip(), str(err.get("message") or "").strip()
        if not message:
            return None
        return f"{state}: {message}" if state else message
    return (str(err).strip() or None) if err else None


class NovitaProvider:
    name = "novita"
    rented = True

    def __init__(self, api_key: str, base_url: Optional[str] = None, poll_s: float = 5.0,
                 pace_scale: float = 1.0) -> None:
        self.base_url = base_url or os.environ.get("TETHER_NOVITA_URL") or DEFAULT_URL
        # Novita publishes no rate figures: no spacing, 429s backed off from 1 s.
        self.api = RestClient("novita", self.base_url, api_key, pace=Pace(scale=pace_scale),
                              headers={"Content-Type": "application/json"})
        self.poll_s = poll_s

    def offers(self, want: Resources) -> List[Offer]:
        params = {"gpuNum": want.num_gpus, "billingMethod": "onDemand"}
        if want.gpu:
            params["productName"] = want.gpu.replace("_", " ")
        body = self.api.request("GET", "/products", params=params)
        out = []
        for p in body.get("data") or []:
            if p.get("availableDeploy") is False:
                continue
            price = float(p.get("price") or 0) * PRICE_UNIT * max(1, want.num_gpus)
            if want.max_price is not None and price > want.max_price:
                continue
            out.append(Offer(provider=self.name, id=str(p["id"]), gpu=str(p.get("name", "?")),
                             num_gpus=want.num_gpus, price_per_hour=round(price, 4),
                             location=",".join(p.get("regions") or []) or None))
        return sorted(out, key=lambda o: o.price_per_hour)

    def create(self, offer: Offer, req: CreateRequest) -> Instance:
        body = {"name": req.label, "productId": offer.id, "gpuNum": offer.num_gpus,
                "rootfsSize": int(req.disk_gb), "imageUrl": req.image, "kind": "gpu",
                "ports": "22/tcp", "envs": [], "billingMode": "onDemand"}
        resp = self.api.request("POST", "/gpu/instance/create", json=body, repeatable=False)
        if not resp.get("id"):
            raise ProviderError(f"novita: create answered without an id: {resp}")
        return Instance(provider=self.name, id=str(resp["id"]), label=req.label,
                        price_per_hour=offer.price_per_hour, created=time.time())

    def _get(self, inst: Instance) -> Optional[dict]:
        try:
            body = self.api.request("GET", "/gpu/instance", params={"instanceId": inst.id})
        except ProviderError as exc:
            if exc.not_found:
                return None
            raise
        return body or None

    def state(self, inst: Instance) -> InstanceState:
        data = self._get(inst)
        if data is None:
            return InstanceState.GONE
        state = _STATES.get(data.get("status"), InstanceState.PROVISIONING)
        if state == InstanceState.PROVISIONING and status_error(data):
            return InstanceState.DEAD
        return state

    def wait_ready(self, inst: Instance, deadline: float) -> SshEndpoint:
        while True:
            try:
                data = self._get(inst)
            except RateLimited:
                data = {"status": "toCreate"}  # no news: a 429 never condemns an instance
            if data is None:
                raise NotReady(f"novita: instance {inst.id} disappeared while starting")
            state = _STATES.get(data.get("status"), InstanceState.PROVISIONING)
            error = status_error(data)
            if error and state != InstanceState.READY:
                raise NotReady(f"novita: instance {inst.id} failed: {error}")
            if state == InstanceState.GONE:
                raise NotReady(f"novita: instance {inst.id} is {data.get('status')}")
            ssh = data.get("connectComponentSSH") or {}
            if state == InstanceState.READY and ssh.get("isRunning") and ssh.get("sshCommand"):
                user, host, port = parse_ssh_command(ssh["sshCommand"])
                if port_open(host, port):
                    return SshEndpoint(host=host, port=port, user=user, host_key_alias=f"novita-{inst.id}",
                                       bootstrap_password=ssh.get("password"))
            if time.time() > deadline:
                raise NotReady(f"novita: instance {inst.id} not ready in time (last status {data.get('status')})")
            time.sleep(self.poll_s)

    def destroy(self, inst: Instance) -> None:
        try:
            self.api.request("POST", "/gpu/instance/delete", json={"instanceId": inst.id})
        except ProviderError as exc:
            if not exc.not_found:  # 404: already gone
                raise

    def teardown(self, inst: Instance) -> Optional[Teardown]:
        return None  # no instance-scoped key: the next tether command destroys it
