"""The verbs users type many times an hour load only what they need: `tether status JOB`,
`tether jobs` and `tether logs JOB` run on the lean path (launcher/lean/), never loading typer,
pydantic, paramiko, httpx, the Hub client, the dashboard or a provider. Checked by the modules a
fresh `tether` process holds when it exits, never by timing. And the lean path's reading of a
command line is the Typer app's, proved option by option and on many command lines."""

from __future__ import annotations

import inspect
import json
import os
import random
import subprocess
import sys
import typing
from pathlib import Path
from typing import List

import pytest

from conftest import launched_id, wait_state
from sshd import free_port

REPO = Path(__file__).resolve().parent.parent

# Never on the lean path. provisioning.endpoint_name is the one provisioning module it may load.
HEAVY = ("typer", "click", "pydantic", "paramiko", "httpx", "huggingface_hub", "yaml", "pathspec",
         "launcher.cli", "launcher.spec", "launcher.dashboard", "launcher.hub", "launcher.transfer",
         "launcher.jobs.launch", "provisioning.base", "provisioning.registry")

_DUMP = """
import atexit, json, sys
dump, sys.argv = sys.argv[1], ["tether"] + sys.argv[2:]
atexit.register(lambda: open(dump, "w").write(json.dumps(sorted(sys.modules))))
from launcher.entry import main
main()
"""


def tether_process(tmp_path: Path, *args: str, env=None) -> "tuple[subprocess.CompletedProcess, List[str]]":
    """`tether ARGS` as the installed command runs it, and the modules it had loaded at exit."""
    dump = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    done = subprocess.run([sys.executable, "-c", _DUMP, str(dump), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}, timeout=120)
    return done, json.loads(dump.read_text())


def heavy_in(modules: List[str], also=()) -> List[str]:
    return [m for m in modules for h in HEAVY + tuple(also) if m == h or m.startswith(h + ".")]


@pytest.fixture
def dead_job(tmp_path) -> "tuple[str, dict]":
    """A job whose host refuses connections: the whole status path runs and answers UNREACHABLE."""
    from launcher.registry import JobRecord, Registry

    home = tmp_path / "home"
    (tmp_path / "ssh_config").write_text("")
    env = {"TETHER_HOME": str(home), "TETHER_SSH_CONFIG": str(tmp_path / "ssh_config")}
    home.mkdir()
    registry = Registry(home / "jobs.db")
    try:
        registry.add(JobRecord(id="dead0001", name="dead", project="p", spec_hash="x", provider="ssh", endpoint={
            "kind": "ssh", "host": "127.0.0.1", "port": free_port(), "user": "root", "connect_timeout_s": 5,
            "retry_s": 0}, remote_root="/nowhere", job_dir="/nowhere/jobs/dead0001", python="python3",
            runtime_dir="/nowhere/runtime", last_state="RUNNING"))
    finally:
        registry.close()
    return "dead0001", env


def test_status_and_jobs_load_nothing_they_do_not_need(tmp_path, dead_job):
    job, env = dead_job
    shown, modules = tether_process(tmp_path, "status", job, env=env)
    assert shown.returncode == 3 and "UNREACHABLE" in shown.stdout, shown
    assert not heavy_in(modules), heavy_in(modules)
    assert "launcher.lean.looks" in modules and "rich.console" in modules  # it did draw the status
    listed, modules = tether_process(tmp_path, "jobs", env=env)
    assert listed.returncode == 0 and job in listed.stdout, listed
    assert not heavy_in(modules), heavy_in(modules)
    as_json, modules = tether_process(tmp_path, "status", job, "--json", env=env)
    assert json.loads(as_json.stdout)["state"] == "UNREACHABLE"
    assert not heavy_in(modules, also=("rich",)), heavy_in(modules, also=("rich",))  # JSON draws nothing


def test_a_bad_line_on_the_lean_path_is_one_line_and_an_exit_code(tmp_path, dead_job):
    _, env = dead_job
    missing, modules = tether_process(tmp_path, "status", "nosuch", env=env)
    assert missing.returncode == 5 and missing.stderr.splitlines() == [
        "error: no job 'nosuch' — see `tether jobs` for ids and names"], missing
    assert "typer" not in modules
    bad_file, _ = tether_process(tmp_path, "logs", "dead0001", "--file", "bogus", env=env)
    assert bad_file.returncode == 2 and len(bad_file.stderr.splitlines()) == 1, bad_file
    # What the lean path does not read goes to typer, which says what is wrong as before.
    bad_tail, modules = tether_process(tmp_path, "logs", "dead0001", "--tail", "many", env=env)
    assert bad_tail.returncode == 2 and "Usage: tether logs" in bad_tail.stderr and "typer" in modules, bad_tail


def test_a_read_into_a_closed_pipe_ends_quietly(dead_job):
    """`tether jobs | head` that head has left: no traceback, no "Exception ignored" at exit
    (the lean verbs end the quick way: launcher/entry.py), and not a success."""
    _, env = dead_job
    for args in (["jobs"], ["jobs", "--json"]):
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run([sys.executable, "-c", "from launcher.entry import main; main()", *args],
                                  stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                                  env={**os.environ, **env, "PYTHONPATH": str(REPO)})
        finally:
            os.close(write)
        assert done.returncode == 1 and done.stderr == "", (args, done)


def test_a_real_jobs_status_jobs_and_logs_stay_lean_and_say_what_typer_says(tether, project, tmp_path):
    from scripts import COUNTER

    spec = project(f"""
        name: lean
        host: {{provider: ssh, address: testhost, root: {tmp_path / "root"}}}
        run: python3 train.py 3 0.01
    """, {"train.py": COUNTER})
    launched, modules = tether_process(tmp_path, "launch", str(spec))  # launch without typer too
    assert launched.returncode == 0 and "launched job" in launched.stdout, launched
    assert not [m for m in modules if m.split(".")[0] in ("typer", "click")], modules
    job = launched_id(launched)
    wait_state(tether, job, "SUCCEEDED")
    for bad in ([str(tmp_path / "nosuch.yaml")], [str(spec.parent)], [str(spec), "--host=", "--dry-run"]):
        refused, _ = tether_process(tmp_path, "launch", *bad)  # a folder, an empty --host: one line too
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, (bad, refused)
    for args in (["status", job], ["jobs"], ["logs", job, "-n", "5"], ["status", job, "--json"]):
        done, modules = tether_process(tmp_path, *args)
        assert done.returncode == 0, done
        assert not heavy_in(modules), (args, heavy_in(modules))
    lean_logs, _ = tether_process(tmp_path, "logs", job, "--tail", "5")
    assert lean_logs.stdout == tether("logs", job, "--tail", "5").stdout
    lean_status, _ = tether_process(tmp_path, "status", job, "--json")
    typer_status = json.loads(tether("status", job, "--json").stdout)
    assert {k: v for k, v in json.loads(lean_status.stdout).items() if "age" not in k} == \
        {k: v for k, v in typer_status.items() if "age" not in k}
    # A pull: the same files and words as the Typer app's, without typer, pydantic or pathspec.
    lean_dest, typer_dest = tmp_path / "pulled-lean", tmp_path / "pulled-typer"
    pulled, modules = tether_process(tmp_path, "pull", job, "--to", str(lean_dest))
    assert pulled.returncode == 0, pulled
    assert not [m for m in heavy_in(modules) if not m.startswith("launcher.transfer")], heavy_in(modules)
    typer_pulled = tether("pull", job, "--to", str(typer_dest))
    assert typer_pulled.exit_code == 0
    assert pulled.stdout.replace(str(lean_dest), "DEST") == typer_pulled.stdout.replace(str(typer_dest), "DEST")
    assert json.loads((lean_dest / "outputs" / "result.json").read_text()) == {"steps": 3}
    assert (lean_dest / "outputs" / "result.json").read_bytes() == (typer_dest / "outputs" / "result.json").read_bytes()


# The lean path's table against the Typer commands ------------------------------------------

def _typer_commands():
    import typer.main

    from launcher.cli import app

    return typer.main.get_command(app).commands


def test_the_lean_table_is_the_typer_commands_options():
    from launcher.cli import results, run
    from launcher.lean.verbs import VERBS

    commands = _typer_commands()
    for verb, spec in VERBS.items():
        params = {p.name: p for p in commands[verb].params}
        hints = typing.get_type_hints(inspect.unwrap(getattr(run, verb, None) or getattr(results, verb)))
        args = [p.name for p in commands[verb].params if p.param_type_name == "argument"]
        assert list(spec.args) == args, verb
        assert spec.required == sum(params[a].required for a in args), verb
        for opt in spec.opts:
            p = params[opt.name]
            assert set(opt.flags) == set(p.opts) | set(p.secondary_opts), (verb, opt)
            assert p.default == opt.default and p.multiple == opt.many, (verb, opt)
            assert bool(p.is_flag) == (opt.kind is bool), (verb, opt)
            kind = hints[opt.name]
            kinds = (kind, *typing.get_args(kind))
            if opt.many:  # Optional[List[str]]: the list's item
                kinds = tuple(k for lists in kinds for k in typing.get_args(lists))
            kinds = tuple(str if k is Path else k for k in kinds)  # typer takes any word as a Path
            assert opt.kind in kinds, (verb, opt, kind)


def _corpus() -> List[List[str]]:
    """Command lines the lean path reads, and some it must leave alone, many at random."""
    from launcher.lean.verbs import VERBS

    lines = [["status"], ["status", "j1"], ["status", "j1", "--json"], ["status", "--json", "j1"], ["jobs"],
             ["jobs", "--json"], ["logs", "j1"], ["logs", "j1", "-f", "-n", "5"], ["logs", "--tail=007", "j1"],
             ["logs", "j1", "--file", "setup", "--node", "1", "--follow"], ["logs", "j1", "--file=agent"],
             ["logs", "j1", "--tail", "-5"], ["logs", "j1", "-n=5"], ["logs", "j1", "-fn", "5"], ["status", "--watch"],
             ["status", "j1", "--", "x"], ["logs", "j1", "--tail", "+5"], ["logs", "j1", "--tail", " 5"],
             ["launch", "job.yaml"], ["launch", "job.yaml", "--host", "user@h:22", "-f"], ["launch", "--dry-run", "j.yaml"],
             ["launch", "j.yaml", "--host=local", "--follow"], ["launch"], ["launch", "a.yaml", "b.yaml"],
             ["pull", "j1"], ["pull", "j1", "--to", "d"], ["pull", "j1", "--path", "outputs/ckpt", "--to=d"],
             ["pull", "j1", "--path", "a", "--path", "b"], ["pull", "j1", "--backup", "latest"], ["pull"],
             ["pull", "j1", "--all-nodes"], ["pull", "--path=outputs/", "j1"]]
    words = sorted({f for v in VERBS.values() for o in v.opts for f in o.flags}) + [
        "j1", "j2", "5", "0", "x5", "--help", "--watch", "-w", "--every", "1.5", "--", "-", "--json=1", "--tail=3",
        "--node=2", "--file=stacks", "٣", "-n3", "job.yaml", "--host=h", "--backup", "outputs/", "--to=d"]
    rng = random.Random(14)
    for _ in range(400):
        lines.append([rng.choice(list(VERBS))] + [rng.choice(words) for _ in range(rng.randint(0, 5))])
    return lines


def test_every_line_the_lean_path_reads_typer_reads_the_same(monkeypatch, tmp_path):
    """For each line the lean path takes, the Typer app calls the same body with the same
    arguments (the bodies are lean/looks.py's: here they only record how they were called)."""
    from typer.testing import CliRunner

    from launcher.cli import app
    from launcher.lean import dispatch, launching, looks, pulling
    from launcher.lean.verbs import parse

    called = []
    for verb in ("jobs", "status", "logs", "launch", "pull"):
        home = {"launch": launching, "pull": pulling}.get(verb, looks)  # where the Typer command finds the body
        body = getattr(home, verb)

        def record(*a, _verb=verb, _body=body, **kw):
            bound = inspect.signature(_body).bind(*a, **kw)
            bound.apply_defaults()
            called.append((_verb, {k: v for k, v in bound.arguments.items() if k != "s"}))
            return 0
        monkeypatch.setattr(home, verb, record)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    read = 0
    for line in _corpus():
        lean = parse(line)
        if lean is None:
            continue
        read += 1
        called.clear()
        r = runner.invoke(app, line, catch_exceptions=False)
        assert r.exit_code == 0 and len(called) == 1, (line, r.output)
        verb, kwargs = lean
        sig = inspect.signature(dispatch.VERB_BODIES[verb])
        bound = sig.bind(None, **kwargs)
        bound.apply_defaults()
        assert called[0] == (verb, {k: v for k, v in bound.arguments.items() if k != "s"}), line
    assert read > 60  # the random lines did reach the lean path often


def test_output_into_a_closed_pipe_ends_quietly_as_typer_ends_it(tmp_path, dead_job):
    """`tether jobs | head -0`: exit 1 and no traceback, as click's handling of EPIPE did."""
    _, env = dead_job
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "launcher", "jobs"], stdout=write, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env, "PYTHONPATH": str(REPO)}, cwd=tmp_path, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 1 and done.stderr == "", done


def test_a_pulls_host_side_loads_only_light_parts(tmp_path):
    """`pull-files` (a pull waits for it) runs before argparse and the agent's other modules
    load (agent/__main__.py -> pull_files.py), as `status` does; one session lists, then sends."""
    import hashlib

    from agent.protocol import agent_argv

    job = tmp_path / "job"
    (job / "outputs").mkdir(parents=True)
    (job / "outputs" / "model.bin").write_bytes(b"weights" * 1000)
    from agent import job_status, protocol

    # Its own copy of the wire's name (importing protocol would load what it avoids).
    assert job_status.RECENT_ENV == protocol.STATUS_RECENT_ENV
    heavy = ("argparse", "agent.verbs", "agent.codetree", "agent.protocol", "tarfile", "dataclasses")
    requests = (b'{"list": ["outputs/"], "hashes": true}\n{"list": ["outputs/model.bin"]}\n'
                b'{"read": [{"path": "outputs/model.bin", "offset": 0, "sha256": true}]}\n')
    argv = agent_argv(sys.executable, str(REPO), "pull-files", str(job))
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], input=requests, capture_output=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines() if "|" in line}
    assert "agent.pull_files" in loaded and not loaded & set(heavy), loaded & set(heavy)
    hashed, sized, header, rest = done.stdout.split(b"\n", 3)
    sha = hashlib.sha256(b"weights" * 1000).hexdigest()
    assert json.loads(hashed) == {"files": [{"path": "outputs/model.bin", "size": 7000, "sha256": sha}], "refused": []}
    assert json.loads(sized) == {"files": [{"path": "outputs/model.bin", "size": 7000}], "refused": []}
    assert json.loads(header) == {"path": "outputs/model.bin", "offset": 0, "length": 7000}
    assert rest[:7000] == b"weights" * 1000 and json.loads(rest[7000:]) == {"sha256": sha}
