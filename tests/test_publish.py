"""Publishing to a local stand-in for the Hub, through the real huggingface_hub client."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import launched_id, wait_state

from launcher.errors import ExitCode

WRITE_MODEL = """
import json, os
from agent import progress
model = os.path.join(progress.output_dir(), "model")
os.makedirs(model, exist_ok=True)
json.dump({"model_type": "llama", "hidden_size": 64}, open(os.path.join(model, "config.json"), "w"))
open(os.path.join(model, "model.safetensors"), "wb").write(os.urandom(2_500_000))
json.dump({"config": {"model": "ibm-granite/granite-4.0-h-1b", "data": "data/train.jsonl",
                      "deepspeed": {"zero_stage": 2}, "train": {"micro_batch": 4, "grad_accum": 8, "seq_len": 1024,
                                                                 "lr": 2e-5, "schedule": "cosine"}},
           "steps": 2000, "final_loss": 1.23, "best_loss": 1.2, "tokens_seen": 65536000, "precision": "bf16",
           "processes": 1, "wall_time_s": 7200, "hardware": {"gpus": ["NVIDIA H100 80GB HBM3"]}},
          open(os.path.join(progress.output_dir(), "training.json"), "w"))
"""


@pytest.fixture
def finished(tether, project, host_root):
    """A finished job that wrote a model; host_python: the agent's Python on the host."""
    def run(files=None, host_python=None):
        python = f", python: {host_python}" if host_python else ""
        spec = project(f"""
            name: pub
            host: {{provider: ssh, address: testhost, root: {host_root}{python}}}
            run: python3 write.py
        """, {"write.py": WRITE_MODEL, **(files or {})})
        job = launched_id(tether("launch", spec))
        wait_state(tether, job, "SUCCEEDED")
        return job
    return run


def test_publish_uploads_model_and_card_then_nothing_twice(tether, finished, hub, host_root):
    job = finished()
    r = tether("publish", job, "--repo", "tester/my-model")
    assert r.exit_code == 0, r
    assert "published 3 file(s)" in r.stdout
    repo = hub.repos["tester/my-model"]
    assert repo.private is True
    weights = (host_root / "jobs" / job / "outputs" / "model" / "model.safetensors").read_bytes()
    assert repo.files["model.safetensors"] == weights and "model.safetensors" in repo.lfs
    assert json.loads(repo.files["config.json"]) == {"model_type": "llama", "hidden_size": 64}
    card = repo.files["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "ibm-granite/granite-4.0-h-1b" and "tether" in meta["tags"]
    assert "| final loss | 1.2300 |" in card and "1 x NVIDIA H100 80GB HBM3" in card
    assert 'AutoModelForCausalLM.from_pretrained("tester/my-model")' in card

    uploads, commits = len(hub.uploads), len(repo.commits)
    again = tether("publish", job, "--repo", "tester/my-model")
    assert again.exit_code == 0, again
    assert "nothing changed" in again.stdout
    assert len(hub.uploads) == uploads and len(repo.commits) == commits


def test_the_users_card_wins_and_public_is_public(tether, finished, hub):
    job = finished({"MODEL_CARD.md": "---\nlicense: apache-2.0\n---\n# My own card\n"})
    assert tether("publish", job, "--repo", "tester/mine", "--public").exit_code == 0
    repo = hub.repos["tester/mine"]
    assert repo.private is False
    assert repo.files["README.md"].decode() == "---\nlicense: apache-2.0\n---\n# My own card\n"


def test_bad_token_and_bad_name_are_one_line(tether, finished, hub, monkeypatch):
    job = finished()
    bad = tether("publish", job, "--repo", "tester/x y")
    assert bad.exit_code == ExitCode.BAD_SPEC and "is not a valid repo name" in bad.stderr
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    r = tether("publish", job, "--repo", "tester/ok")
    assert r.exit_code == ExitCode.AUTH
    assert r.stderr.strip().splitlines() == ["error: the Hub refused the token (401) — check HF_TOKEN "
                                             "(it needs write access)"]
    assert hub.repos == {}


def test_network_errors_retry_or_fail_without_half_publishing(tether, finished, hub):
    job = finished()
    hub.drop_lfs_uploads = 1  # one dropped connection: the library retries it
    assert tether("publish", job, "--repo", "tester/flaky").exit_code == 0
    assert "model.safetensors" in hub.repos["tester/flaky"].files

    hub.refuse_lfs_uploads = True
    job2 = finished({"other.txt": "changes the weights? no: a new job, new weights"})
    r = tether("publish", job2, "--repo", "tester/broken")
    assert r.exit_code == ExitCode.FAILED
    assert "publishing to tester/broken failed" in r.stderr and "run publish again" in r.stderr
    assert hub.repos["tester/broken"].files == {}  # no commit: nothing under the final name
    hub.refuse_lfs_uploads = False
    assert tether("publish", job2, "--repo", "tester/broken").exit_code == 0
    assert set(hub.repos["tester/broken"].files) == {"README.md", "config.json", "model.safetensors"}


def test_publish_in_the_spec_happens_once_the_job_succeeds(tether, project, host_root, hub):
    spec = project(f"""
        name: autopub
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: python3 write.py
        publish: {{repo: tester/auto, private: false}}
    """, {"write.py": WRITE_MODEL})
    job = launched_id(tether("launch", spec))
    wait_state(tether, job, "SUCCEEDED")  # a status read: it publishes
    assert set(hub.repos["tester/auto"].files) == {"README.md", "config.json", "model.safetensors"}
    assert hub.repos["tester/auto"].private is False
    commits = len(hub.repos["tester/auto"].commits)
    tether("status", job)
    assert len(hub.repos["tester/auto"].commits) == commits  # once


def test_publish_from_the_host(tether, finished, host_root, hub):
    """The upload runs on the host (here: the test sshd, with a Python that has huggingface_hub);
    the token goes on stdin and is never written there."""
    import subprocess
    import sys

    job = finished(host_python=sys.executable)
    r = tether("publish", job, "--repo", "tester/fromhost", "--from-host")
    assert r.exit_code == 0, r
    assert "from the host" in r.stdout
    repo = hub.repos["tester/fromhost"]
    assert set(repo.files) == {"README.md", "config.json", "model.safetensors"}
    assert "| final loss | 1.2300 |" in repo.files["README.md"].decode()
    leftovers = subprocess.run(["grep", "-rl", hub.token, str(host_root)], capture_output=True, text=True).stdout
    assert leftovers == ""
    again = tether("publish", job, "--repo", "tester/fromhost", "--from-host")
    assert "nothing changed" in again.stdout


def test_publish_from_the_host_with_a_bad_token(tether, finished, hub, monkeypatch):
    import sys

    job = finished(host_python=sys.executable)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    r = tether("publish", job, "--repo", "tester/x", "--from-host")
    assert r.exit_code == ExitCode.AUTH, r
    assert len(r.stderr.strip().splitlines()) == 1 and "401" in r.stderr
