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
    assert "step 19" in tether("logs", job).stdout
    dest = tmp_path / "back"
    p = tether("pull", job, "--to", dest)
    assert p.exit_code == 0, p
    assert json.loads((dest / "outputs" / "result.json").read_text())["steps"] == 20


def test_session_end_is_the_deadline(tether, project, kaggle):
    body = spec(run="python3 train.py 1000 0.1",
                extra="limits: {margin_s: 1}\n        backup: {every_min: 10}").replace(
        "gpu: NvidiaTeslaT4}", "gpu: NvidiaTeslaT4, session_hours: 0.0025}")
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
