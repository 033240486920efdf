"""Kaggle batch kernels, through the official client's SDK against a local fake of the kernels
service (KAGGLE_API_ENVIRONMENT=TEST). The pushed kernel really runs the agent and the job."""

from __future__ import annotations

import json

import pytest
from conftest import launched_id, status_json, wait_for
from fake_kaggle import FakeKaggle
from scripts import RESUMABLE

from launcher.errors import ExitCode


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLE_USERNAME", "tetheruser")
    monkeypatch.setenv("KAGGLE_KEY", "kaggle-test-key")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle-dir"))
    fake = FakeKaggle(tmp_path / "kaggle")
    yield fake
    fake.stop()


def spec(run="python3 train.py 20 0.05", extra=""):
    return f"""
        name: onkaggle
        host: {{provider: kaggle, gpu: NvidiaTeslaT4}}
        run: {run}
        heartbeat: {{every_s: 0.5}}
        {extra}
    """


def test_kernel_runs_the_job_and_outputs_come_back(tether, project, kaggle, tmp_path):
    r = tether("launch", project(spec(), {"train.py": RESUMABLE}))
    assert r.exit_code == 0, r
    assert "pushed kernel tetheruser/tether-onkaggle-" in r.stdout
    job = launched_id(r)
    saved = kaggle.saved[0]
    assert saved["isPrivate"] is True and saved["enableGpu"] is True and saved["machineShape"] == "NvidiaTeslaT4"
    assert saved["language"] == "python" and saved["kernelType"] == "script"
    wait_for(lambda: status_json(tether, job)["state"] == "SUCCEEDED" or None, 90, what="SUCCEEDED")
    log = tether("logs", job).stdout
    assert "step 19" in log.splitlines() and "stream_name" not in log  # Kaggle's JSON log, shown as text
    dest = tmp_path / "back"
    p = tether("pull", job, "--to", dest)
    assert p.exit_code == 0, p
    assert json.loads((dest / "outputs" / "result.json").read_text())["steps"] == 20


def test_session_end_is_the_deadline(tether, project, kaggle):
    body = spec(run="python3 train.py 1000 0.1",
                extra="limits: {margin_s: 12}\n        backup: {every_min: 10}").replace(
        "gpu: NvidiaTeslaT4}", "gpu: NvidiaTeslaT4, session_hours: 0.01}")
    # A 36 s session whose last 12 s are the margin: the agent stops the workload, takes the
    # final backup and says STOPPED before the session ends, even on a loaded machine.
    job = launched_id(tether("launch", project(body, {"train.py": RESUMABLE})))
    wait_for(lambda: status_json(tether, job)["state"] == "STOPPED" or None, 60, what="STOPPED")
    st = status_json(tether, job)
    assert "deadline" in st["reason"]
    backups = [p for p in (kaggle.root).rglob("MANIFEST.json")]
    assert backups, "a final backup before the session ended"


def test_kernel_error_end_is_reported(tether, project, kaggle):
    job = launched_id(tether("launch", project(spec())))  # no train.py: the job fails, kernel completes
    wait_for(lambda: status_json(tether, job)["state"] == "FAILED" or None, 60, what="FAILED")
    kaggle.kernels[next(iter(kaggle.kernels))].timed_out = True  # now as if the session had timed out
    st = status_json(tether, job)
    assert st["state"] == "FAILED" and "timeout" in st["reason"]


def test_secrets_are_refused_for_batch_kernels(tether, project, kaggle, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    r = tether("launch", project(spec(extra="secrets: [HF_TOKEN]")))
    assert r.exit_code == ExitCode.BAD_SPEC and "Kaggle Secrets" in r.stderr


def test_quota_in_offers(tether, kaggle):
    out = json.loads(tether("offers", "--json").stdout)
    assert "kaggle: free GPU sessions, 20.0 of 30 h left this week" in out["notes"]


def test_bad_credentials(tether, project, kaggle, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    r = tether("launch", project(spec()))
    assert r.exit_code == ExitCode.AUTH and "kaggle: credentials refused (401)" in r.stderr


# -- Kaggle as the real service behaves (issue 12) --------------------------------------------


def only_a_token(monkeypatch, tmp_path, token="KGAT_test_token"):
    """Kaggle's current way: an API token alone, no username anywhere."""
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)


def test_an_api_token_alone_is_enough(tether, project, kaggle, tmp_path, monkeypatch):
    only_a_token(monkeypatch, tmp_path)
    r = tether("launch", project(spec("python3 train.py 3 0.01"), {"train.py": RESUMABLE}))
    assert r.exit_code == 0, r
    assert "pushed kernel tetheruser/tether-onkaggle-" in r.stdout  # the username, from the token
    assert kaggle.introspected and set(kaggle.introspected) == {"KGAT_test_token"}
    job = launched_id(r)
    wait_for(lambda: status_json(tether, job)["state"] == "SUCCEEDED" or None, 90, what="SUCCEEDED")


def test_the_token_file_and_the_legacy_kaggle_json_both_work(tether, kaggle, tmp_path, monkeypatch):
    conf = tmp_path / "kaggle-conf"
    conf.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(conf))
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    (conf / "access_token").write_text("KGAT_test_token\n")
    notes = json.loads(tether("offers", "--json").stdout)["notes"]
    assert "kaggle: free GPU sessions, 20.0 of 30 h left this week" in notes
    (conf / "access_token").unlink()
    (conf / "kaggle.json").write_text(json.dumps({"username": "tetheruser", "key": "kaggle-test-key"}))
    notes = json.loads(tether("offers", "--json").stdout)["notes"]
    assert "kaggle: free GPU sessions, 20.0 of 30 h left this week" in notes


def test_an_inactive_token_is_one_clear_line(tether, project, kaggle, tmp_path, monkeypatch):
    only_a_token(monkeypatch, tmp_path, token="KGAT_revoked")
    r = tether("launch", project(spec()))
    assert r.exit_code == ExitCode.AUTH, r
    assert r.stderr.startswith("error: kaggle: the API token from KAGGLE_API_TOKEN was refused")
    assert len(r.stderr.strip().splitlines()) == 1 and kaggle.saved == []


def test_the_session_asked_for_stays_within_kaggles_maximum_and_is_the_deadline(tether, project, kaggle):
    r = tether("launch", project(spec("python3 train.py 1 0.01"), {"train.py": RESUMABLE}))
    assert r.exit_code == 0, r
    job = launched_id(r)
    assert kaggle.saved[0]["sessionTimeoutSeconds"] == 12 * 3600  # Kaggle's maximum, not 12 h + 10 min
    kernel = next(iter(kaggle.kernels.values()))
    hb = kernel.working / "tether" / "jobs" / job / "heartbeat.json"
    deadline = wait_for(lambda: hb.exists() and json.loads(hb.read_text()).get("deadline_at"), 30, what="heartbeat")
    assert abs(deadline - (kernel.started + 12 * 3600)) < 30

    too_long = tether("launch", project(spec().replace("gpu: NvidiaTeslaT4}", "gpu: NvidiaTeslaT4, session_hours: 13}")))
    assert too_long.exit_code == ExitCode.BAD_SPEC
    assert "host.session_hours 13 is over Kaggle's 12 h session maximum" in too_long.stderr
    assert len(kaggle.saved) == 1


def test_stop_says_in_one_line_what_kaggle_allows(tether, project, kaggle):
    job = launched_id(tether("launch", project(spec("python3 train.py 200 0.1"), {"train.py": RESUMABLE})))
    r = tether("stop", job)
    assert r.exit_code == ExitCode.FAILED, r
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "Kaggle cancels a session only by its session id" in r.stderr
    assert "https://www.kaggle.com/code/tetheruser/tether-onkaggle-" in r.stderr
    assert kaggle.cancels == []  # nothing half-formed was sent


def test_cancel_sends_the_one_field_kaggle_takes(kaggle, monkeypatch):
    import os

    from provisioning.kaggle import KaggleKernels

    from fake_kaggle import Kernel

    kernel = Kernel("k-one", 1, "import time; time.sleep(30)", kaggle.root / "k-one" / "working", 60, dict(os.environ))
    kaggle.kernels["k-one"] = kernel
    kaggle.versions.append(kernel)
    KaggleKernels(os.environ).cancel(kernel.session_id)
    assert kaggle.cancels == [{"kernelSessionId": kernel.session_id}]
    wait_for(lambda: kernel.status()[0] == "CANCEL_ACKNOWLEDGED", 10, what="the cancel")


def test_kaggle_log_json_is_read_as_text():
    from provisioning.kaggle import log_text

    raw = json.dumps([{"stream_name": "stdout", "time": 0.1, "data": "step 1\n"},
                      {"stream_name": "stderr", "time": 0.2, "data": "warning"}])
    assert log_text(raw) == "step 1\nwarning\n"
    assert log_text("plain old text") == "plain old text" and log_text(None) == ""


def test_the_client_needs_python_311_and_says_so():
    from provisioning.base import ProviderError
    from provisioning.kaggle_auth import require_sdk

    with pytest.raises(ProviderError) as err:
        require_sdk((3, 10))
    assert "needs Python >= 3.11" in err.value.what and "Python 3.10" in err.value.what
    assert "3.11" in err.value.todo
    require_sdk((3, 11))


def test_a_hub_mirror_uses_one_kernel_that_keeps_its_attached_secret(tether, project, kaggle, hub, monkeypatch):
    """Secrets are attached per kernel in Kaggle's editor: with an hf:// mirror every launch is
    a new version of one kernel, so HF_TOKEN attached once serves all later launches."""
    body = spec("python3 train.py 3 0.3", 'backup: {mirror: "hf://tester/kaggle-ckpt"}')
    first = tether("launch", project(body, {"train.py": RESUMABLE}))
    assert first.exit_code == 0, first
    assert "pushed kernel tetheruser/tether-onkaggle (" in first.stdout
    said = [line for line in first.stdout.splitlines() if "backups stay in the session" in line]
    assert len(said) == 1 and said[0].startswith("kaggle: backups stay in the session unless kernel "
                                                 "tetheruser/tether-onkaggle has the secret HF_TOKEN attached")
    assert said[0].endswith("which keep it)")  # one line
    busy = tether("launch", project(body, {"train.py": RESUMABLE}))
    assert busy.exit_code != 0 and "still runs a session" in busy.stderr  # never two sessions at once
    job1 = launched_id(first)
    wait_for(lambda: status_json(tether, job1)["state"] == "SUCCEEDED" or None, 90, what="the first job")
    assert "no HF_TOKEN secret in this notebook" in tether("logs", job1).stdout

    kaggle.attach_secret("tether-onkaggle", "HF_TOKEN", hub.token)  # once, in the kernel's editor
    second = tether("launch", project(body, {"train.py": RESUMABLE}))
    assert second.exit_code == 0, second
    job2 = launched_id(second)
    assert kaggle.kernels["tether-onkaggle"].version == 2
    wait_for(lambda: status_json(tether, job2)["state"] == "SUCCEEDED" or None, 90, what="the second job")
    assert "no HF_TOKEN secret" not in tether("logs", job2).stdout
    assert status_json(tether, job1)["state"] == "SUCCEEDED"  # the first keeps the state it ended in
