"""Vast.ai end to end against a local fake of its API, with the test sshd as the rented host."""

from __future__ import annotations

import json

import pytest
from conftest import launched_id, status_json, wait_for, wait_state, wipe_host
from fake_vast import FakeVast
from scripts import COUNTER, RESUMABLE

from launcher.errors import ExitCode


PACE = 0.05  # Vast's rate-limit intervals, 20 times shorter: both the fake and tether use it


@pytest.fixture
def vast(own_sshd, monkeypatch, tmp_path):
    fake = FakeVast(own_sshd, scale=PACE).start()
    monkeypatch.setenv("TETHER_VAST_URL", fake.url)
    monkeypatch.setenv("VAST_API_KEY", fake.key)
    monkeypatch.setenv("TETHER_PROVIDER_POLL_S", "0.1")
    monkeypatch.setenv("TETHER_PROVIDER_PACE", str(PACE))
    yield fake
    fake.stop()


def vast_spec(root, run="python3 train.py 5 0.05", extra="", host_extra=""):
    return f"""
        name: onvast
        host: {{provider: vast, gpu: RTX_4090, max_price: 0.6, root: {root}, ready_timeout_min: 0.2{host_extra}}}
        run: {run}
        heartbeat: {{every_s: 0.5}}
        {extra}
    """


def test_launch_run_autodown(tether, project, vast, tmp_path, rsync_sync):
    vast.add_offer(1, price=0.5)
    vast.add_offer(2, price=0.3)
    vast.add_offer(3, gpu="A100", price=0.1)
    spec = project(vast_spec(tmp_path / "root"), {"train.py": COUNTER})
    r = tether("launch", spec)
    assert r.exit_code == 0, r
    assert "rented vast instance 1000 (RTX 4090 x1, $0.300/h)" in r.stdout  # cheapest matching
    job = launched_id(r)
    known = (tmp_path / "tether-home" / "known_hosts").read_text()
    assert known.startswith("vast-1000 ssh-ed25519 ")  # keyed by instance, not by address
    assert "sent via rsync" in r.stdout  # OpenSSH checks the same key, under the same name

    wait_for(lambda: status_json(tether, job)["state"] == "SUCCEEDED" or None, 60, what="SUCCEEDED")
    st = status_json(tether, job)
    assert st["instance"]["destroyed_at"]  # this status call settled it: pulled, then destroyed
    # Marking the results safe lets the agent destroy its host too; whichever comes first wins.
    assert (1000, f"Bearer {vast.key}") in vast.deletes and vast.alive() == []
    results = tmp_path / "tether-home" / "results" / f"onvast-{job}" / "outputs" / "result.json"
    assert json.loads(results.read_text()) == {"steps": 5}
    assert st["price_per_hour"] == 0.3 and st["spend_usd"] is not None
    body = vast.instances[1000]["_body"]
    assert body["runtype"] == "ssh_direct" and body["label"].startswith("tether-onvast-")
    bundles = [r for r in vast.requests if r[1] == "/api/v0/bundles/"]
    assert bundles


def test_host_that_never_comes_up_is_destroyed_and_the_next_offer_tried(tether, project, vast, tmp_path):
    vast.add_offer(1, price=0.2)
    vast.add_offer(2, price=0.4)
    vast.never_up.add(1)
    spec = project(vast_spec(tmp_path / "root", run="echo ok", extra="autodown: false"))
    r = tether("launch", spec)
    assert r.exit_code == 0, r
    assert "instance 1000 did not come up" in r.stdout and "destroying it" in r.stdout
    assert "rented vast instance 1001" in r.stdout
    assert [d[0] for d in vast.deletes] == [1000]
    assert vast.alive() == [1001]
    job = launched_id(r)
    wait_state(tether, job, "SUCCEEDED")
    jobs = tether("jobs")
    assert "still running (and billing)" in jobs.stdout and f"tether down {job}" in jobs.stdout
    assert tether("down", job).exit_code == 0
    assert vast.alive() == []


def test_vanished_offer_and_rate_limits_are_survived(tether, project, vast, tmp_path):
    vast.add_offer(1, price=0.2)
    vast.add_offer(2, price=0.4)
    vast.vanished.add(1)
    vast.rate_limit_next = 2  # the first two requests get "API requests too frequent"
    r = tether("launch", project(vast_spec(tmp_path / "root", run="echo ok")))
    assert r.exit_code == 0, r
    assert "rented vast instance 1000 (RTX 4090 x1, $0.400/h)" in r.stdout
    assert [m for m, p, _ in vast.requests[:3]] == ["POST", "POST", "POST"]  # bundles, retried twice


def test_bad_key_is_one_clear_line(tether, project, vast, tmp_path, monkeypatch):
    vast.add_offer(1)
    monkeypatch.setenv("VAST_API_KEY", "wrong")
    r = tether("launch", project(vast_spec(tmp_path / "root", run="echo ok")))
    assert r.exit_code == ExitCode.AUTH, r
    assert r.stderr.strip() == ("error: vast: the API key was refused (401: Invalid API key) — "
                                "check your vast API key")
    assert vast.instances == {}


def test_no_key_at_all(tether, project, vast, tmp_path, monkeypatch):
    monkeypatch.delenv("VAST_API_KEY")
    r = tether("launch", project(vast_spec(tmp_path / "root", run="echo ok")))
    assert r.exit_code != 0
    assert "no API key for vast" in r.stderr and "VAST_API_KEY" in r.stderr


def test_failed_launch_leaves_nothing_billing(tether, project, vast, tmp_path):
    vast.add_offer(1)
    spec = project(vast_spec(tmp_path / "root", run="echo ok", host_extra=", python: python2.6"))
    r = tether("launch", spec)
    assert r.exit_code != 0
    assert "destroying vast instance 1000" in r.stdout
    assert vast.alive() == []


def test_instance_gone_from_under_us(tether, project, vast, tmp_path, own_sshd):
    vast.add_offer(1)
    job = launched_id(tether("launch", project(vast_spec(tmp_path / "root", run="sleep 30"))))
    wait_state(tether, job, "RUNNING")
    vast.instances[1000]["_gone"] = True   # the host vanished: the provider forgot it
    own_sshd.stop()
    own_sshd.kill_sessions()
    st = tether("status", job)
    assert st.exit_code == ExitCode.UNREACHABLE
    r = tether("down", job)
    assert r.exit_code == 0, r  # destroying what is already gone is fine (404)
    assert "destroyed vast instance 1000" in r.stdout


def test_budget_reached_backup_stop_destroy_in_that_order(tether, project, vast, tmp_path):
    vast.add_offer(1, price=36.0)  # $0.01 a second
    body = vast_spec(tmp_path / "root", run="python3 train.py 1000 0.1",
                     extra="limits: {max_usd: 0.25}\n        backup: {every_min: 10}").replace(
        "max_price: 0.6", "max_price: 40")
    job = launched_id(tether("launch", project(body, {"train.py": RESUMABLE})))
    # 25 s of budget: the workload is running when it runs out, even on a loaded machine
    wait_for(lambda: vast.deletes, 90, what="the agent to destroy its instance")
    assert vast.deletes == [(1000, "Bearer instance-scoped-key")]  # the instance key, sent by the agent
    events = [json.loads(x) for x in (tmp_path / "root" / "jobs" / job / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] if e["event"] != "state" else e["state"] for e in events]
    assert kinds.index("backup-done") < kinds.index("STOPPED") < kinds.index("teardown-sent")
    stopped = next(e for e in events if e.get("state") == "STOPPED")
    assert stopped["failure"] == "budget" and "max_usd" in stopped["reason"]
    teardown_event = next(e for e in events if e["event"] == "teardown-sent")
    assert teardown_event["status"] == 200 and "headers" not in teardown_event


def test_offers_side_by_side_with_cost(tether, vast):
    vast.add_offer(1, price=0.5)
    vast.add_offer(2, price=0.25)
    vast.add_offer(3, gpu="H100", price=2.0)
    r = tether("offers", "--gpu", "RTX_4090", "--hours", "10", "--json")
    assert r.exit_code == 0, r
    out = json.loads(r.stdout)
    assert [(o["id"], o["job_cost"]) for o in out["offers"]] == [("2", 2.5), ("1", 5.0)]
    assert any("novita: no API key" in n for n in out["notes"])


def test_resume_on_a_freshly_rented_host_when_the_old_one_vanished(tether, project, vast, tmp_path, own_sshd):
    vast.add_offer(1, price=0.3)
    root = tmp_path / "root"
    body = vast_spec(root, run="python3 train.py 60 0.1 10",
                     extra="backup: {every_min: 0.02, keep: 2, mirror: laptop}")
    job = launched_id(tether("launch", project(body, {"train.py": RESUMABLE})))
    mirrors = tmp_path / "tether-home" / "mirrors" / job / "backups"

    def mirrored():
        status_json(tether, job)
        return mirrors.is_dir() and [p for p in mirrors.iterdir() if (p / "MANIFEST.json").exists()]

    wait_for(mirrored, 60, what="a mirrored backup")
    # The rented host vanishes: the provider forgets it, its machine and disk are gone.
    vast.instances[1000]["_gone"] = True
    own_sshd.stop()
    own_sshd.kill_sessions()
    wipe_host(root)
    own_sshd.start()  # the next offer's machine (same test sshd, a fresh disk)

    r = tether("resume", job, "--on", "vast")
    assert r.exit_code == 0, r
    assert "rented vast instance 1001" in r.stdout and "to the new host" in r.stdout
    done = wait_for(lambda: status_json(tether, job)["state"] == "SUCCEEDED" or None, 90, what="SUCCEEDED")
    assert done
    st = status_json(tether, job)
    assert st["instance"]["id"] == "1001" and st["step"] == 59
    assert 1000 in [d[0] for d in vast.deletes]  # the old contract was let go of, too


# -- Vast as the real service behaves (issue 12) ----------------------------------------------


def provider(fake, pace=PACE):
    from provisioning.vast import VastProvider

    return VastProvider(fake.key, base_url=fake.url, poll_s=0.1, pace_scale=pace)


def test_a_gpu_family_finds_its_variants_and_offers_show_real_names(tether, vast):
    for oid, name, price in [(1, "H100 SXM", 2.5), (2, "H100 PCIE", 2.0), (3, "H100 NVL", 2.2), (4, "GH200 SXM", 1.5),
                             (5, "H200", 1.9), (6, "RTX 4090", 0.3)]:
        vast.add_offer(oid, gpu=name, price=price)
    r = tether("offers", "--gpu", "H100", "--json")  # our docs' own example
    assert r.exit_code == 0, r
    vast_offers = [o for o in json.loads(r.stdout)["offers"] if o["provider"] == "vast"]
    assert [(o["id"], o["gpu"]) for o in vast_offers] == [("2", "H100 PCIE"), ("3", "H100 NVL"), ("1", "H100 SXM")]
    table = tether("offers", "--gpu", "H100_SXM")
    assert "H100 SXM" in table.stdout and "H100 PCIE" not in table.stdout


def test_a_tesla_name_and_its_short_form(vast):
    from provisioning.base import Resources

    vast.add_offer(1, gpu="Tesla T4", price=0.1)
    vast.add_offer(2, gpu="Tesla V100", price=0.2)
    assert [o.gpu for o in provider(vast).offers(Resources(gpu="T4"))] == ["Tesla T4"]


def test_offers_whose_driver_is_too_old_for_the_image_are_left_out(vast):
    from provisioning.base import Resources

    vast.add_offer(1, price=0.2, cuda=11.8)
    vast.add_offer(2, price=0.3, cuda=12.4)
    vast.add_offer(3, price=0.4, cuda=12.8)
    want = Resources(gpu="RTX_4090", image="pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime")
    assert [o.id for o in provider(vast).offers(want)] == ["2", "3"]
    assert [o.id for o in provider(vast).offers(Resources(gpu="RTX_4090"))] == ["1", "2", "3"]  # no CUDA named


def test_a_failed_destroy_is_not_mistaken_for_gone_whatever_the_id(vast):
    from provisioning.base import Instance, ProviderError

    p = provider(vast)
    vast.destroy_fails.add(1404)  # an id with "404" in it: the old check read the message text
    with pytest.raises(ProviderError) as err:
        p.destroy(Instance(provider="vast", id="1404"))
    assert err.value.status == 500
    p.destroy(Instance(provider="vast", id="77"))  # a real 404 (no such instance) is "already gone"


def test_rate_limits_are_waited_out_and_never_destroy_a_starting_instance(tether, project, vast, tmp_path,
                                                                          monkeypatch):
    vast.scale = 0.1  # Vast's own intervals, 10x shorter; tether paces itself by the same figures
    monkeypatch.setenv("TETHER_PROVIDER_PACE", "0.1")
    vast.add_offer(1, price=0.3)
    vast.rate_limit_show = 4  # a burst of 429s (plain gaps, no Retry-After) while it starts
    r = tether("launch", project(vast_spec(tmp_path / "root", run="echo ok")))
    assert r.exit_code == 0, r
    assert "rented vast instance 1000" in r.stdout and "did not come up" not in r.stdout
    assert vast.deletes == [] and vast.alive() == [1000]
    assert vast.refused.count("show") >= 4
    assert [e for e in vast.refused if e != "show"] == []  # create, offers: spaced, never refused


def test_spacing_follows_each_endpoints_interval():
    from provisioning.http import Pace

    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 3))
        now[0] += s

    pace = Pace({"create": 4.5, "show": 2.0}, {"create": 12.0}, clock=lambda: now[0], sleep=sleep)
    pace.wait_turn("create")
    pace.wait_turn("show")
    pace.wait_turn("create")
    assert slept == [round(4.5 * 1.05, 3)]  # show has its own clock; create waits out its 4.5 s
    assert pace.backoff("create", 0) == 16.5 and pace.backoff("create", 1) == 33.0  # threshold + penalty
    assert pace.backoff("show", 5) == 60.0  # doubling, capped


@pytest.mark.parametrize("answer,delay", [("drop", 0.0), ("ok", 2.0)])
def test_a_rent_whose_answer_is_lost_is_never_sent_twice(tether, project, vast, tmp_path, monkeypatch, answer, delay):
    monkeypatch.setenv("TETHER_VAST_CREATE_TIMEOUT_S", "0.5")
    vast.add_offer(1, price=0.3)
    vast.create_answer, vast.create_delay_s = answer, delay
    r = tether("launch", project(vast_spec(tmp_path / "root", run="echo ok")))
    assert r.exit_code == 0, r
    assert len([q for q in vast.requests if q[1].startswith("/api/v0/asks/")]) == 1
    assert list(vast.instances) == [1000]  # found by its label, not rented again
    assert any(q[1] == "/api/v1/instances/" for q in vast.requests)
    assert "rented vast instance 1000" in r.stdout


def test_offers_gone_404_or_410_move_on_to_the_next(tether, project, vast, tmp_path):
    vast.add_offer(1, price=0.1)
    vast.add_offer(2, price=0.2)
    vast.add_offer(3, price=0.3)
    vast.vanished.add(1)     # 404 no_such_ask: taken
    vast.unavailable.add(2)  # 410 no_such_ask: cannot start now
    r = tether("launch", project(vast_spec(tmp_path / "root", run="echo ok")))
    assert r.exit_code == 0, r
    assert "rented vast instance 1000 (RTX 4090 x1, $0.300/h)" in r.stdout


def test_a_stopped_instance_fails_fast_naming_its_state(tether, project, vast, tmp_path):
    import time

    vast.add_offer(1, price=0.1)
    vast.add_offer(2, price=0.2)
    vast.stops.add(1)
    started = time.monotonic()
    r = tether("launch", project(vast_spec(tmp_path / "root", run="echo ok")))
    assert r.exit_code == 0, r
    assert "instance 1000 did not come up (vast: instance 1000 is stopped: Machine GPUs are in use" in r.stdout
    assert time.monotonic() - started < 10  # not after the whole 12 s ready deadline
    assert [d[0] for d in vast.deletes] == [1000] and vast.alive() == [1001]


LEAVES_A_SYMLINK = """
import json, os
out = os.environ["TETHER_OUTPUT_DIR"]
json.dump({"steps": 1}, open(os.path.join(out, "result.json"), "w"))
os.symlink("/etc/passwd", os.path.join(out, "passwd"))   # a pull refuses this one
"""


def test_autodown_never_destroys_an_instance_whose_pull_refused_a_file(tether, project, vast, tmp_path):
    import os
    import signal

    vast.add_offer(1)
    root = tmp_path / "root"
    body = vast_spec(root, run="python3 leave.py", extra="autodown: {wait_min: 10}")
    job = launched_id(tether("launch", project(body, {"leave.py": LEAVES_A_SYMLINK})))
    wait_for(lambda: status_json(tether, job)["state"] == "SUCCEEDED" or None, 60, what="SUCCEEDED")
    r = tether("status", job)
    assert "autodown of job" in r.stdout and "refused 1 file(s): outputs/passwd" in r.stdout, r
    assert "the instance is kept" in r.stdout
    assert vast.alive() == [1000] and not vast.deletes  # nothing destroyed while a file was refused
    down = tether("down", job, "--no-pull")  # the user looked, and ends it
    assert down.exit_code == 0, down
    assert vast.alive() == []
    agent = json.loads((root / "jobs" / job / "state.json").read_text())["agent_pid"]
    os.kill(agent, signal.SIGTERM)  # the host is gone: its agent, still waiting, goes at once
    wait_for(lambda: not os.path.exists(f"/proc/{agent}") or "Z" in open(f"/proc/{agent}/stat").read().split(")")[1][:3],
             10, what="the agent to exit")
