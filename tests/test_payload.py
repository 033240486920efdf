"""The create-job payload, defined once (agent/payload.py, read through agent.protocol): what the
launcher builds is what the agent reads, every default lives in it, and a payload of another
version is refused in one line."""

from __future__ import annotations

import json

import pytest

from agent.hostops import create_job
from agent.paths import Root
from agent.plan import RunPlan
from agent.protocol import (PAYLOAD_VERSION, HubFacts, JobFacts, JobPayload, ProtocolMismatch, RunSettings)
from launcher.spec import BackupSpec, HeartbeatSpec, JobSpec, RestartSpec, StopSpec


def spec_json(**over) -> dict:
    return JobSpec.model_validate({"name": "demo", "host": {"provider": "local"}, "run": "python train.py",
                                   **over}).model_dump(mode="json")


def test_what_the_launcher_builds_the_agent_reads_back():
    payload = JobPayload(spec=spec_json(), job=JobFacts(id="j1", project="demo", command="python train.py",
                                                         path_prepend=("/venv/bin",), hub=HubFacts("http://hub")),
                         teardown={"method": "DELETE", "url": "http://x", "headers": {}})
    wire = json.loads(json.dumps(payload.to_json()))
    assert wire["protocol"] == PAYLOAD_VERSION
    assert JobPayload.from_json(wire) == payload


def test_the_plan_takes_every_default_from_the_payload_and_the_launcher_the_same():
    plan = RunPlan.from_payload(JobPayload(spec={"name": "t"}, job=JobFacts(id="j", project="p", command="x")),
                                started=0.0)
    agent = RunSettings(name="t")
    assert (plan.heartbeat_every_s, plan.stall_after_s) == (agent.heartbeat.every_s, agent.heartbeat.stall_after_s)
    assert (plan.restart_max, plan.restart_backoff_s, plan.grace_s) == (agent.restart.max, agent.restart.backoff_s,
                                                                        agent.stop.grace_s)
    assert plan.backup_every_s == agent.backup.every_min * 60 and plan.backup_keep == agent.backup.keep
    # The laptop's spec takes its defaults from the same place: a launched job plans the same.
    assert HeartbeatSpec().every_s == agent.heartbeat.every_s and StopSpec().grace_s == agent.stop.grace_s
    assert RestartSpec().max == agent.restart.max and [c.value for c in RestartSpec().on] == list(agent.restart.on)
    assert BackupSpec().wait_s == agent.backup.wait_s and BackupSpec().mirror_wait_s == agent.backup.mirror_wait_s
    launched = RunPlan.from_payload(JobPayload(spec=spec_json(), job=JobFacts(id="j", project="p", command="x")),
                                    started=0.0)
    assert (launched.heartbeat_every_s, launched.restart_on, launched.backup_wait_s) == \
        (plan.heartbeat_every_s, plan.restart_on, plan.backup_wait_s)


def test_an_old_spec_json_without_a_version_is_still_read():
    old = {"spec": {"name": "t", "heartbeat": {"every_s": 0.5}, "limits": {"max_hours": None}, "progress": None},
           "job": {"id": "j", "project": "p", "command": "x", "setup_key": None, "path_prepend": [], "hub": None}}
    plan = RunPlan.from_payload(JobPayload.from_json(old), started=0.0)
    assert plan.heartbeat_every_s == 0.5 and plan.stages[0].command == "x"


def test_another_version_is_refused_in_one_line(tmp_path):
    doc = {"protocol": PAYLOAD_VERSION + 1, "spec": {"name": "t"}, "job": {"id": "j", "project": "p"}}
    with pytest.raises(ProtocolMismatch) as err:
        create_job(Root(tmp_path), "p", "j", doc)
    assert "\n" not in str(err.value) and f"version {PAYLOAD_VERSION + 1}" in str(err.value)
    assert not (tmp_path / "jobs" / "j").exists()  # nothing made


@pytest.mark.parametrize("spec, job, where", [
    ({"name": "t", "heartbeat": {"every_s": "ten"}}, {"id": "j", "project": "p", "command": "x"},
     "spec.heartbeat.every_s"),
    ({"name": "t"}, {"project": "p", "command": "x"}, "job.id"),
    ({"name": "t", "restart": {"on": ["infra", 3]}}, {"id": "j", "project": "p", "command": "x"}, "spec.restart.on[1]"),
])
def test_a_bad_field_is_named(spec, job, where):
    with pytest.raises(ValueError) as err:
        JobPayload.from_json({"spec": spec, "job": job})
    assert str(err.value).startswith(where)
