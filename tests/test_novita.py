"""Novita against a local fake of its API: a password on first login, our key from then on."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess

import pytest
from conftest import launched_id, status_json, wait_for
from fake_novita import FakeNovita
from machine_lock import machine_lock
from sshd import Sshd, ensure_password_user

from launcher.errors import ExitCode

USER = "tetherpw"


@pytest.fixture
def novita(tmp_path, monkeypatch):
    with machine_lock("user-" + USER):  # one system user for every test that logs in by password
        yield from _novita(tmp_path, monkeypatch)


def _novita(tmp_path, monkeypatch):
    password = secrets.token_urlsafe(12)
    home = ensure_password_user(USER, password)
    server = Sshd(tmp_path / "sshd", password_user=USER).setup().start()
    fake = FakeNovita(server.port, USER, password)
    monkeypatch.setenv("TETHER_NOVITA_URL", fake.url)
    monkeypatch.setenv("NOVITA_API_KEY", fake.key)
    monkeypatch.setenv("TETHER_PROVIDER_POLL_S", "0.1")
    yield fake
    fake.stop()
    server.stop()
    server.kill_sessions()
    subprocess.run(["pkill", "-u", USER], check=False)
    shutil.rmtree(home / ".tether", ignore_errors=True)


def spec(extra=""):
    return f"""
        name: onnovita
        host: {{provider: novita, gpu: RTX_4090, max_price: 1.0, ready_timeout_min: 0.2}}
        run: echo hello from $(whoami)
        heartbeat: {{every_s: 0.5}}
        {extra}
    """


def test_password_first_then_key_and_autodown(tether, project, novita, tmp_path):
    novita.add_product("p-4090", "RTX 4090 24GB", 35000)   # 0.35 $/GPU-hour in 1e-5 units
    novita.add_product("p-h100", "H100 80GB", 250000)
    r = tether("launch", project(spec()))
    assert r.exit_code == 0, r
    assert "rented novita instance inst-1 (RTX 4090 24GB x1, $0.350/h)" in r.stdout
    job = launched_id(r)
    authorized = subprocess.run(["cat", f"/home/{USER}/.ssh/authorized_keys"], capture_output=True, text=True).stdout
    tether_pub = (tmp_path / "tether-home" / "id_ed25519.pub").read_text().strip()
    assert tether_pub in authorized
    subprocess.run(["chpasswd"], input=f"{USER}:{secrets.token_urlsafe(12)}\n", text=True, check=True)
    # The password is gone; the key carries on.
    wait_for(lambda: status_json(tether, job)["state"] == "SUCCEEDED" or None, 60, what="SUCCEEDED")
    assert novita.deleted == ["inst-1"]
    out = tmp_path / "tether-home" / "results" / f"onnovita-{job}"
    assert out.is_dir()
    assert tether("logs", job).stdout.strip() == f"hello from {USER}"
    assert novita.creates[0]["ports"] == "22/tcp" and novita.creates[0]["kind"] == "gpu"
    registry = (tmp_path / "tether-home" / "jobs.db").read_bytes()
    assert novita.password.encode() not in registry


def test_bad_key(tether, project, novita, monkeypatch):
    monkeypatch.setenv("NOVITA_API_KEY", "nope")
    r = tether("launch", project(spec()))
    assert r.exit_code == ExitCode.AUTH
    assert "novita: the API key was refused (401: invalid api key)" in r.stderr


def test_price_filter(tether, novita):
    novita.add_product("p-4090", "RTX 4090 24GB", 35000)
    novita.add_product("p-4090b", "RTX 4090 24GB (EU)", 150000)
    r = tether("offers", "--gpu", "RTX_4090", "--max-price", "1.0", "--json")
    out = json.loads(r.stdout)
    assert [o["id"] for o in out["offers"] if o["provider"] == "novita"] == ["p-4090"]


def test_a_real_status_error_condemns_an_instance_and_the_next_offer_is_tried(tether, project, novita):
    """statusError is an object on every instance: only one carrying a failure means broken."""
    novita.add_product("p-bad", "RTX 4090 24GB", 30000)
    novita.add_product("p-good", "RTX 4090 24GB (EU)", 40000)
    novita.failing["p-bad"] = {"state": "pullImageFailed", "message": "image not found"}
    r = tether("launch", project(spec()))
    assert r.exit_code == 0, r
    assert "instance inst-1 did not come up (novita: instance inst-1 failed: pullImageFailed: image not found)" \
        in r.stdout
    assert "rented novita instance inst-2" in r.stdout
    assert novita.deleted[0] == "inst-1"


def test_not_found_is_decided_by_status_not_by_the_message(novita):
    from provisioning.base import Instance, ProviderError
    from provisioning.novita import NovitaProvider

    p = NovitaProvider(novita.key, base_url=novita.url)
    p.destroy(Instance(provider="novita", id="gone-for-good"))  # 404 INSTANCE_NOT_FOUND: already gone
    novita.delete_fails.add("inst-404")
    with pytest.raises(ProviderError) as err:
        p.destroy(Instance(provider="novita", id="inst-404"))
    assert err.value.status == 500


def test_status_error_reading():
    from provisioning.novita import status_error

    assert status_error({"statusError": {"state": "", "message": ""}}) is None
    assert status_error({"statusError": {"state": "running", "message": ""}}) is None
    assert status_error({"statusError": {"state": "failed", "message": "no GPU"}}) == "failed: no GPU"
    assert status_error({"statusError": "boom"}) == "boom" and status_error({}) is None
