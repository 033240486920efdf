"""Vast.ai (REST, https://console.vast.ai/api/v0): a few calls, statuses mapped here only.

Rate limits (docs.vast.ai api-reference/rate-limits-and-errors, and each endpoint's
x-rate-limit in vast-ai/docs api-reference/openapi/yaml/*.yaml): a minimum interval per
endpoint and identity, 429 without Retry-After. The gaps below are those figures; calls are
spaced by them and 429s backed off over seconds."""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import List, Optional

from .base import (port_open, AnswerLost, CreateRequest, Instance, InstanceState, NotReady, Offer, OfferGone,
                   ProviderError, RateLimited, Resources, SshEndpoint, Teardown)
from .http import Pace, RestClient
from .vast_offers import offer_query, read_offers

DEFAULT_URL = "https://console.vast.ai/api/v0"
# Seconds between calls to one endpoint: create_instance.yaml threshold 4.5 (+ penalty 12 after
# a refusal), show_instance 2.0, destroy_instance 3.0, show_instances (v1) 1.0, search_offers
# 10 a minute. attach ssh publishes none: 1 s.
GAPS = {"create": 4.5, "show": 2.0, "destroy": 3.0, "list": 1.0, "offers": 6.0, "attach_ssh": 1.0}
PENALTIES = {"create": 12.0}
CREATE_TIMEOUT_S = 120.0  # the official client's default timeout (vastai/api/client.py)

# actual_status -> our state (docs.vast.ai cli/reference/show-instance). exited/unknown/offline
# never become running; stopped/frozen do not start by themselves: both end the wait at once.
_STATES = {
    None: InstanceState.PROVISIONING, "created": InstanceState.PROVISIONING,
    "loading": InstanceState.PROVISIONING, "rebooting": InstanceState.PROVISIONING,
    "running": InstanceState.READY, "stopped": InstanceState.STOPPED, "frozen": InstanceState.STOPPED,
    "exited": InstanceState.DEAD, "unknown": InstanceState.DEAD, "offline": InstanceState.DEAD,
}


class VastProvider:
    name = "vast"
    rented = True

    def __init__(self, api_key: str, base_url: Optional[str] = None, poll_s: float = 5.0,
                 pace_scale: float = 1.0, create_timeout_s: float = CREATE_TIMEOUT_S) -> None:
        self.base_url = (base_url or os.environ.get("TETHER_VAST_URL") or DEFAULT_URL).rstrip("/")
        self.api = RestClient("vast", self.base_url, api_key, pace=Pace(GAPS, PENALTIES, scale=pace_scale))
        self.poll_s, self.create_timeout_s = poll_s, create_timeout_s

    def offers(self, want: Resources) -> List[Offer]:
        return read_offers(self.api.request("POST", "/bundles/", endpoint="offers", json=offer_query(want)), want)

    def create(self, offer: Offer, req: CreateRequest) -> Instance:
        # A label of its own per attempt: if the answer is lost, it finds what this attempt made.
        label = f"{req.label}-{secrets.token_hex(3)}" if req.label else secrets.token_hex(3)
        body = {"image": req.image, "disk": max(8.0, req.disk_gb), "label": label,
                "onstart": "touch ~/.no_auto_tmux", "runtype": "ssh_direct", "env": {}}
        try:
            resp = self.api.request("PUT", f"/asks/{offer.id}/", endpoint="create", json=body, repeatable=False,
                                    timeout=self.create_timeout_s)
        except AnswerLost as exc:
            return self._attach_key(self._adopt(offer, label, exc), req.public_key)
        except ProviderError as exc:
            # 404 no_such_ask: taken; 410 no_such_ask: cannot start now (openapi createInstance)
            if exc.status in (404, 410) or exc.code == "no_such_ask":
                raise OfferGone(f"vast: offer {offer.id} is gone ({exc.status})", status=exc.status,
                                code=exc.code) from None
            raise
        if not resp.get("success") or not resp.get("new_contract"):
            raise ProviderError(f"vast: renting offer {offer.id} failed: {resp.get('msg') or resp.get('error') or resp}")
        inst = Instance(provider=self.name, id=str(resp["new_contract"]), label=label,
                        price_per_hour=offer.price_per_hour, created=time.time(),
                        teardown_key=resp.get("instance_api_key") or resp.get("api_key"))
        return self._attach_key(inst, req.public_key)

    def _attach_key(self, inst: Instance, public_key: str) -> Instance:
        try:
            self.api.request("POST", f"/instances/{inst.id}/ssh/", endpoint="attach_ssh", json={"ssh_key": public_key})
        except ProviderError:
            self.destroy(inst)  # never leave a contract we cannot log in to
            raise
        return inst

    def _adopt(self, offer: Offer, label: str, lost: AnswerLost) -> Instance:
        """The rent request went out but its answer did not come back: never send it again
        (it may have rented); find the instance by its label, so nothing bills unseen."""
        for _ in range(3):
            found = self.find_by_label(label)
            if found:
                return Instance(provider=self.name, id=str(found[0]["id"]), label=label,
                                price_per_hour=offer.price_per_hour, created=time.time())
            time.sleep(self.poll_s)
        raise ProviderError(f"{lost.what}, and no instance labelled {label} has appeared",
                            "check https://cloud.vast.ai/instances/ and destroy it there if one shows up")

    def find_by_label(self, label: str) -> List[dict]:
        """Our instances carrying `label` (GET /api/v1/instances/, select_filters on label, as
        the official client lists them: vastai/api/instances.py show_instances)."""
        root = self.base_url[: -len("/api/v0")] if self.base_url.endswith("/api/v0") else self.base_url
        params = {"select_filters": json.dumps({"label": {"eq": label}}), "limit": 25,
                  "order_by": json.dumps([{"col": "id", "dir": "asc"}])}
        body = self.api.request("GET", f"{root}/api/v1/instances/", endpoint="list", params=params)
        return [i for i in body.get("instances") or [] if i.get("label") == label]

    def _get(self, inst: Instance) -> Optional[dict]:
        try:
            body = self.api.request("GET", f"/instances/{inst.id}/", endpoint="show")
        except ProviderError as exc:
            if exc.not_found:
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
        last = "no answer yet"
        while True:
            try:
                data = self._get(inst)
            except RateLimited:
                data = {}  # no news, not bad news: a 429 never condemns an instance
            if data is None:
                raise NotReady(f"vast: instance {inst.id} disappeared while starting")
            if data:
                last = data.get("actual_status")
                ep = self._judge(inst, data)
                if ep is not None and port_open(ep.host, ep.port):
                    return ep
            if time.time() > deadline:
                raise NotReady(f"vast: instance {inst.id} not ready in time (last status {last})")
            time.sleep(self.poll_s)

    def _judge(self, inst: Instance, data: dict) -> Optional[SshEndpoint]:
        status = data.get("actual_status")
        state = _STATES.get(status, InstanceState.PROVISIONING)
        why = data.get("status_msg") or ""
        if state == InstanceState.DEAD:
            raise NotReady(f"vast: instance {inst.id} is {status}: {why or 'it will not come up'}")
        if state == InstanceState.STOPPED:
            raise NotReady(f"vast: instance {inst.id} is {status}" + (f": {why}" if why else "")
                           + " (it will not start by itself)")
        return self._endpoint(inst, data) if state == InstanceState.READY else None

    def destroy(self, inst: Instance) -> None:
        try:
            self.api.request("DELETE", f"/instances/{inst.id}/", endpoint="destroy")
        except ProviderError as exc:
            if not exc.not_found:  # 404: already gone, which is what we wanted
                raise

    def teardown(self, inst: Instance) -> Optional[Teardown]:
        """Only with an instance-scoped key: the account key never goes to a rented host."""
        if not inst.teardown_key:
            return None
        return Teardown(method="DELETE", url=f"{self.base_url}/instances/{inst.id}/",
                        headers={"Authorization": f"Bearer {inst.teardown_key}"})
