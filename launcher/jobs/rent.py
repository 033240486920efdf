"""Renting a host for a launch, and giving it back. A host that does not come up is destroyed
and the next offer tried; a launch that fails after renting destroys what it rented."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

from rich.console import Console

from provisioning.base import (CreateRequest, Instance, NotReady, OfferGone, Provider, ProviderError,
                               Resources, SshEndpoint)
from provisioning.registry import rented_provider

from launcher.credentials import api_key, ssh_keypair
from launcher.errors import AuthError, TetherError, provider_errors
from launcher.settings import Places
from launcher.spec import HostSpec
from launcher.text import inert


class ProvisionError(TetherError):
    pass


def provider_for(name: str, places: Places, environ: Mapping[str, str]) -> Provider:
    """TETHER_PROVIDER_POLL_S sets how often a starting instance is polled (default 5 s);
    TETHER_PROVIDER_PACE scales the providers' rate-limit gaps and backoffs (default 1: their
    own figures; tests shrink it); TETHER_VAST_CREATE_TIMEOUT_S bounds a rent's answer (120)."""
    poll_s = float(environ.get("TETHER_PROVIDER_POLL_S", "5"))
    pace = float(environ.get("TETHER_PROVIDER_PACE", "1"))
    create_timeout = float(environ.get("TETHER_VAST_CREATE_TIMEOUT_S", "0")) or None
    with provider_errors(ProvisionError):
        return rented_provider(name, api_key(name, places, environ), poll_s=poll_s, pace_scale=pace,
                               create_timeout_s=create_timeout)


def resources_of(hs: HostSpec) -> Resources:
    return Resources(gpu=hs.gpu, num_gpus=hs.num_gpus, max_price=hs.max_price, disk_gb=hs.disk_gb or 40.0,
                     min_reliability=hs.min_reliability, image=hs.image)


@dataclass(frozen=True)
class Rented:
    instance: Instance
    endpoint: SshEndpoint          # with tether's own key as identity


def acquire(provider: Provider, hs: HostSpec, label: str, places: Places, console: Console) -> Rented:
    identity, public_key = ssh_keypair(places)
    offers = _call(lambda: provider.offers(resources_of(hs)))
    if not offers:
        raise ProvisionError(f"{provider.name}: no offer matches gpu={hs.gpu} x{hs.num_gpus}"
                             + (f" under ${hs.max_price}/h" if hs.max_price else ""),
                             "raise host.max_price, or try another gpu (tether offers)")
    request = CreateRequest(label=label, public_key=public_key, image=hs.image, disk_gb=hs.disk_gb or 40.0)
    problems = []
    for offer in offers[: hs.tries]:
        try:
            inst = provider.create(offer, request)
        except OfferGone as exc:  # the next offer
            problems.append(exc.what)
            continue
        except ProviderError:
            with provider_errors(ProvisionError):
                raise
        console.print(f"rented {provider.name} instance {inst.id} ({offer.gpu} x{offer.num_gpus}, "
                      f"${offer.price_per_hour:.3f}/h); waiting for it to come up")
        try:
            ep = provider.wait_ready(inst, time.time() + hs.ready_timeout_min * 60)
            assert ep is not None
            ep = ep.model_copy(update={"identity_file": str(identity)})
            if ep.bootstrap_password:
                install_key_with_password(ep, public_key, places)
            return Rented(inst, ep.model_copy(update={"bootstrap_password": None}))
        except (NotReady, ProviderError, TetherError, OSError, _ssh_exception()) as exc:
            problems.append(getattr(exc, "what", str(exc)))
            console.print(f"instance {inert(inst.id)} did not come up ({inert(problems[-1])}); destroying it")
            _call(lambda: provider.destroy(inst))
    raise ProvisionError(f"{provider.name}: no host came up ({'; '.join(problems)})",
                         "try again, or relax host.gpu / host.max_price")


def _ssh_exception() -> type:
    import paramiko

    return paramiko.SSHException


def install_key_with_password(ep: SshEndpoint, public_key: str, places: Places) -> None:
    """First login by password (Novita): append our public key, then keys only."""
    import paramiko

    from launcher.transport.hostkeys import TrustOnFirstUse

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(TrustOnFirstUse(places.known_hosts, ep.known_hosts_name))
    try:
        client.connect(ep.host, port=ep.port, username=ep.user, password=ep.bootstrap_password,
                       look_for_keys=False, allow_agent=False, timeout=15)
        _, stdout, stderr = client.exec_command(
            "umask 077 && mkdir -p ~/.ssh && cat >> ~/.ssh/authorized_keys", timeout=30)
        stdout.channel.sendall(public_key.encode() + b"\n")
        stdout.channel.shutdown_write()
        if stdout.channel.recv_exit_status() != 0:
            raise ProvisionError(f"could not install tether's key on {ep}: {stderr.read().decode()[-200:]}")
    except paramiko.AuthenticationException:
        raise AuthError(f"the password the provider gave for {ep} was refused") from None
    finally:
        client.close()


def destroy(provider: Provider, instance: Instance) -> None:
    _call(lambda: provider.destroy(instance))


def _call(fn):
    with provider_errors(ProvisionError):
        return fn()
