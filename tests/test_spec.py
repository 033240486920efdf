"""A bad spec is refused before anything happens: one line, the file, the field, what to do."""

from __future__ import annotations

import pytest

from launcher.errors import ExitCode

GOOD = """
name: ok
host: {provider: local, root: ROOT}
run: echo hi
"""


@pytest.mark.parametrize("body, expected", [
    ("name: x\nrun: a\nhost: {provider: local, gpus: 2}", "job.yaml: host.gpus: unknown key; did you mean 'gpu'?"),
    ("name: x\nrun: a\nhaertbeat: {every_s: 1}", "job.yaml: haertbeat: unknown key; did you mean 'heartbeat'?"),
    ("name: x\nrun: a\nheartbeat: {every_s: ten}", "job.yaml: heartbeat.every_s: Input should be a valid number"),
    ("name: x\nrun: a\nworkdir: missing", "job.yaml: workdir: folder"),
    ("name: x\nrun: a\nworkload: {kind: causal-lm, model: m, data: d, train: {max_steps: 1}}",
     "job.yaml: give exactly one of 'run', 'workload' or 'stages' (got 'run' and 'workload')"),
    ("name: x", "job.yaml: give exactly one of 'run', 'workload' or 'stages' (got none)"),
    ("name: x\nworkload: {kind: causal-lm, model: m, data: d, train: {max_stepz: 1}}",
     "job.yaml: workload.train.max_stepz: unknown key; did you mean 'max_steps'?"),
    ("name: x\nworkload: {kind: causal-lm, model: m, data: d, deepspeed: {zero_stage: 4}, train: {max_steps: 1}}",
     "job.yaml: workload.deepspeed.zero_stage: 4 is not a ZeRO stage; use 0, 1, 2 or 3"),
    ("run: a", "job.yaml: name: required"),
    ("name: x\nrun: a\nsecrets: [NOT_SET_ANYWHERE]", "job.yaml: secrets[0]: NOT_SET_ANYWHERE is not set"),
    ("name: x\nrun: a\nhost: {provider: ssh}", "job.yaml: host: provider ssh needs host.address"),
    ("name: x\nrun: a\nhost: {provider: aws}", "job.yaml: host.provider: Input should be 'local', 'ssh'"),
    ("name: x\nrun: [a", "job.yaml: line 2: not valid YAML"),
    ("- a\n- b", "job.yaml: expected a mapping of keys"),
    ("name: ../etc\nrun: a", "job.yaml: name: String should match pattern"),
    ("name: x\nrun: a\nbackup: {mirror: 'hf://me'}", "job.yaml: backup.mirror: 'hf://me': not a Hub repo name"),
    ("name: x\nrun: a\nbackup: {mirror: 's3://b'}", "job.yaml: backup.mirror: 's3://b': use 'laptop' or 'hf://user/repo'"),
    ("name: x\nrun: a\nsecrets: [TETHER_X]", "job.yaml: secrets: 'TETHER_X': names starting with TETHER_"),
    ("name: x\nrun: a\npublish: {repo: 'a/b/c'}", "job.yaml: publish.repo: 'a/b/c': not a Hub repo name"),
    ("name: x\nrun: a\nhost: {provider: ssh, nodes: 2, address: [a, b], node_silence_s: 1}",
     "job.yaml: host.node_silence_s: 1 is not from 3 to 600 seconds: how long a node may be silent before the job fails"),
    ("name: x\nrun: a\nhost: {provider: ssh, nodes: 2, address: [a, b], node_silence_s: 1h}",
     "job.yaml: host.node_silence_s: Input should be a valid number"),
    ("name: x\nrun: a\nhost: {provider: ssh, nodes: 2, address: [a, b], node_silence_s: .nan}",
     "job.yaml: host.node_silence_s: nan is not from 3 to 600 seconds"),
])
def test_bad_spec_is_one_line_and_exit_2(tether, tmp_path, body, expected):
    spec = tmp_path / "job.yaml"
    spec.write_text(body)
    r = tether("launch", spec)
    assert r.exit_code == ExitCode.BAD_SPEC, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "tether-home" / "jobs.db").exists() or "no jobs" in tether("jobs").stdout


def test_missing_spec_file(tether, tmp_path):
    r = tether("launch", tmp_path / "nope.yaml")
    assert r.exit_code == ExitCode.BAD_SPEC
    assert "no such file" in r.stderr


def test_bad_host_flag(tether, tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(GOOD.replace("ROOT", str(tmp_path / "r")))
    r = tether("launch", spec, "--host", "root@bad host:22")
    assert r.exit_code == ExitCode.BAD_SPEC
    assert "is not user@host[:port]" in r.stderr


def test_unknown_job(tether):
    r = tether("status", "nosuchjob")
    assert r.exit_code == ExitCode.NOT_FOUND
    assert r.stderr.strip() == "error: no job 'nosuchjob' — see `tether jobs` for ids and names"


def test_env_values_become_strings(tmp_path):
    from launcher.spec import load_spec

    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\nrun: a\nenv: {THREADS: 4, FLAG: true, MODE: offline}")
    loaded = load_spec(spec, {})
    assert loaded.spec.env == {"THREADS": "4", "FLAG": "true", "MODE": "offline"}
