"""Vast.ai (REST, https://console.vast.ai/api/v0): five calls, statuses mapped here only."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

from .base import (port_open, CreateRequest, Instance, InstanceState, NotReady, Offer, OfferGone, ProviderError,
                   Resources, SshEndpoint, Teardown)
from .http import RestClient

DEFAULT_URL = "https://console.vast.ai/api/v0"

# actual_status -> our state. exited/unknown/offline never become running: destroy, try another.
_STATES = {
    None: InstanceState.PROVISIONING, "created": InstanceState.PROVISIONING,
    "loading": InstanceState.PROVISIONING, "rebooting": InstanceState.PROVISIONING,
    "running": InstanceState.READY, "stopped": InstanceState.STOPPED, "frozen": InstanceState.STOPPED,
    "exited": InstanceState.DEAD, "unknown": InstanceState.DEAD, "offline": InstanceState.DEAD,
}


class VastProvider:
    name = "vast"
    rented = True

    def __init__(self, api_key: str, base_url: Optional[str] = None, poll_s: float = 5.0) -> None:
        self.base_url = base_url or os.environ.get("TETHER_VAST_URL") or DEFAULT_URL
        self.api = RestClient("vast", self.base_url, api_key)
        self.poll_s = poll_s

    def offers(self, want: Resources) -> List[Offer]:
        query: Dict[str, Any] = {
            "verified": {"eq": True}, "rentable": {"eq": True}, "rented": {"eq": False},
            "external": {"eq": False}, "num_gpus": {"eq": want.num_gpus},
            "reliability": {"gte": want.min_reliability}, "disk_space": {"gte": want.disk_gb},
            "direct_port_count": {"gte": 1},
            "order": [["dph_total", "asc"]], "type": "on-demand", "limit": 20,
            "allocated_storage": want.disk_gb,
        }
        if want.gpu:
            query["gpu_name"] = {"eq": want.gpu.replace("_", " ")}
        if want.max_price is not None:
            query["dph_total"] = {"lte": want.max_price}
        body = self.api.request("POST", "/bundles/", json=query)
        out = []
        for o in body.get("offers") or []:
            out.append(Offer(provider=self.name, id=str(o["id"]), gpu=str(o.get("gpu_name", "?")),
                             num_gpus=int(o.get("num_gpus") or 0), price_per_hour=float(o.get("dph_total") or 0),
                             reliability=o.get("reliability"), location=o.get("geolocation"),
                             disk_gb=o.get("disk_space")))
        return sorted(out, key=lambda o: o.price_per_hour)

    def create(self, offer: Offer, req: CreateRequest) -> Instance:
        body = {"image": req.image, "disk": max(8.0, req.disk_gb), "label": req.label,
                "onstart": "touch ~/.no_auto_tmux", "runtype": "ssh_direct", "env": {}}
        try:
            resp = self.api.request("PUT", f"/asks/{offer.id}/", json=body)
        except ProviderError as exc:
            if "404" in exc.what or "no_such_ask" in exc.what:
                raise OfferGone(f"vast: offer {offer.id} is gone") from None
            raise
        if not resp.get("success") or not resp.get("new_contract"):
            raise ProviderError(f"vast: renting offer {offer.id} failed: {resp.get('msg') or resp.get('error') or resp}")
        iid = str(resp["new_contract"])
        inst = Instance(provider=self.name, id=iid, label=req.label, price_per_hour=offer.price_per_hour,
                        created=time.time(),
                        teardown_key=resp.get("instance_api_key") or resp.get("api_key"))
        try:
            self.api.request("POST", f"/instances/{iid}/ssh/", json={"ssh_key": req.public_key})
        except ProviderError:
            self.destroy(inst)  # never leave a contract we cannot log in to
            raise
        return inst

    def _get(self, inst: Instance) -> Optional[dict]:
        try:
            body = self.api.request("GET", f"/instances/{inst.id}/")
        except ProviderError as exc:
            if "404" in exc.what:
                return None
            raise
        return body.get("instances") or None

    def state(self, inst: Instance) -> InstanceState:
        data = self._get(inst)
        if data is None:
            return InstanceState.GONE
        return _STATES.get(data.get("actual_status"), InstanceState.PROVISIONING)

    def price(self, inst: Instance) -> Optional[float]:
        data = self._get(inst)
        return float(data["dph_total"]) if data and data.get("dph_total") is not None else None

    @staticmethod
    def _endpoint(inst: Instance, data: dict) -> Optional[SshEndpoint]:
        ports = (data.get("ports") or {}).get("22/tcp")
        alias = f"vast-{inst.id}"
        if ports and data.get("public_ipaddr"):
            return SshEndpoint(host=str(data["public_ipaddr"]).strip(), port=int(ports[0]["HostPort"]),
                               user="root", host_key_alias=alias)
        if data.get("ssh_host") and data.get("ssh_port"):
            return SshEndpoint(host=data["ssh_host"], port=int(data["ssh_port"]), user="root", host_key_alias=alias)
        return None

    def wait_ready(self, inst: Instance, deadline: float) -> SshEndpoint:
        while True:
            data = self._get(inst)
            if data is None:
                raise NotReady(f"vast: instance {inst.id} disappeared while starting")
            state = _STATES.get(data.get("actual_status"), InstanceState.PROVISIONING)
            if state == InstanceState.DEAD:
                raise NotReady(f"vast: instance {inst.id} is {data.get('actual_status')}: "
                               f"{data.get('status_msg') or 'it will not come up'}")
            ep = self._endpoint(inst, data) if state == InstanceState.READY else None
            if ep is not None and port_open(ep.host, ep.port):
                return ep
            if time.time() > deadline:
                raise NotReady(f"vast: instance {inst.id} not ready in time (last status "
                               f"{data.get('actual_status')})")
            time.sleep(self.poll_s)

    def destroy(self, inst: Instance) -> None:
        try:
            self.api.request("DELETE", f"/instances/{inst.id}/")
        except ProviderError as exc:
            if "404" not in exc.what:
                raise

    def teardown(self, inst: Instance) -> Optional[Teardown]:
        """Only with an instance-scoped key: the account key never goes to a rented host."""
        if not inst.teardown_key:
            return None
        return Teardown(method="DELETE", url=f"{self.base_url}/instances/{inst.id}/",
                        headers={"Authorization": f"Bearer {inst.teardown_key}"})
