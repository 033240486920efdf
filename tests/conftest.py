from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Optional

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from fake_hub import FakeHub  # noqa: E402
from sshd import SSHD, Sshd  # noqa: E402

from launcher.cli import app  # noqa: E402


def _pids_under(folder: Path) -> list[int]:
    """Processes started under `folder`: its path in their command line, or their working
    directory inside it (a workload started as `python3 train.py` names no path)."""
    mine, found = str(folder) + "/", []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd") + "/"
        except OSError:  # gone, or a zombie: nothing left to write anywhere
            continue
        if mine in cmdline or cwd.startswith(mine):
            found.append(int(entry.name))
    return found


def kill_all_under(folder: Path, timeout: float = 10) -> list[int]:
    """SIGKILL everything running under `folder` and wait until none is left, so that nothing
    writes there afterwards. Returns the pids still there after `timeout` (none, normally)."""
    import signal

    deadline = time.monotonic() + timeout
    while (pids := _pids_under(folder)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    return pids


def wipe_host(root: Path) -> None:
    """A host's processes and then its disk go away, as when a rented machine vanishes."""
    left = kill_all_under(root)
    assert not left, f"processes under {root} outlived SIGKILL: {left}"
    shutil.rmtree(root)


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test(tmp_path):
    """Whatever a test started under its own folder (an agent on a fake rented host waiting to
    be torn down, a workload) is killed when the test ends: nothing keeps running after it."""
    yield
    kill_all_under(tmp_path)
    _remove_control_folders(tmp_path)


def _remove_control_folders(tmp_path: Path) -> None:
    """The /tmp folders of the shared connections (and ciphers.py's list) of tether homes this
    test made under its folder: their connections closed, the folders removed. Found by the
    home's path (openssh.control_dir), so another test's, running beside it, is never touched."""
    from launcher.transport.openssh import close_shared, shared_control_path

    for folder in [tmp_path, *tmp_path.glob("*"), *tmp_path.glob("*/*")]:
        if not folder.is_dir() or folder.is_symlink():
            continue
        control = shared_control_path(folder)
        if not control.is_dir():
            continue
        close_shared(control)
        for leftover in [*control.glob("k-*"), *control.glob("ssh-ciphers-*")]:
            leftover.unlink(missing_ok=True)
        try:
            control.rmdir()
        except OSError:
            pass


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory) -> Sshd:
    """One real OpenSSH server for the session (tests that restart it get their own)."""
    assert Path(SSHD).exists(), "openssh-server is required: .ci/run installs it"
    server = Sshd(tmp_path_factory.mktemp("sshd")).setup().start()
    yield server
    server.stop()
    server.kill_sessions()


@pytest.fixture
def own_sshd(tmp_path) -> Sshd:
    """A server of this test's own, free to restart, rekey or kill."""
    server = Sshd(tmp_path / "sshd").setup().start()
    yield server
    server.stop()
    server.kill_sessions()


def cannot_run_here(why: str) -> None:
    """A test needing what this machine lacks (root, namespaces): skipped here, failed under CI,
    which has it, so nothing is skipped there for a missing tool."""
    (pytest.fail if os.environ.get("CI") else pytest.skip)(why)


@pytest.fixture
def tether_env(tmp_path, monkeypatch, sshd_server):
    """tether's laptop state in a temp folder, with an ~/.ssh/config alias 'testhost'."""
    home = tmp_path / "tether-home"
    monkeypatch.setenv("TETHER_HOME", str(home))
    conf = tmp_path / "ssh_config"
    conf.write_text(sshd_server.ssh_config("testhost"))
    monkeypatch.setenv("TETHER_SSH_CONFIG", str(conf))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield home
    from launcher.transport.openssh import close_shared, control_dir

    control = control_dir(home)
    close_shared(control)  # the shared SSH connections this test's tether opened
    kill_all_under(home)   # status keepers (their command lines name this home's known_hosts)
    for leftover in [*control.glob("k-*"), *control.glob("ssh-ciphers-*")]:  # a killed keeper's socket; ciphers.py's
        leftover.unlink(missing_ok=True)
    try:
        control.rmdir()  # and their folder in /tmp, once empty
    except OSError:
        pass


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    """The local stand-in for the Hub, with the real client pointed at it (no xet) and its token."""
    fake = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", fake.token)
    yield fake
    fake.stop()


class Result:
    def __init__(self, r):
        self.exit_code = r.exit_code
        self.stdout = r.stdout
        self.stderr = r.stderr
        self.exception = r.exception

    def __repr__(self) -> str:
        return f"<exit {self.exit_code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}>"


@pytest.fixture
def tether(tether_env) -> Callable[..., Result]:
    """Runs the tether CLI in-process, like httpie's test runner."""
    runner = CliRunner()

    def run(*args: str, input: Optional[str] = None) -> Result:
        r = runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
        return Result(r)

    return run


@pytest.fixture
def project(tmp_path) -> Callable[..., Path]:
    """Writes a workdir with files and a job.yaml; returns the spec path."""

    def make(spec: str, files: Optional[dict] = None, name: str = "proj") -> Path:
        work = tmp_path / name
        work.mkdir(exist_ok=True)
        for rel, content in (files or {}).items():
            p = work / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(content)) if isinstance(content, str) else p.write_bytes(content)
        path = work / "job.yaml"
        path.write_text(textwrap.dedent(spec))
        return path

    return make


@pytest.fixture
def host_root(tmp_path) -> Path:
    return tmp_path / "host-root"


def wait_for(predicate: Callable[[], object], timeout: float = 60, every: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_events(root: Path, job: str, kind: Optional[str] = None) -> list:
    """The events a host's job folder holds (of one kind): none yet while its agent starts."""
    path = root / "jobs" / job / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if kind is None or e["event"] == kind]


def status_json(tether, job: str) -> dict:
    r = tether("status", job, "--json")
    if r.exit_code != 0:  # the reason first: the whole answer is cut short in pytest's report
        try:
            why = json.loads(r.stdout).get("reason")
        except ValueError:
            why = None
        raise AssertionError(f"status exit {r.exit_code}: {why!r}\n{r!r}")
    return json.loads(r.stdout)


def wait_state(tether, job: str, states, timeout: float = 60) -> dict:
    states = {states} if isinstance(states, str) else set(states)
    box = {}

    def check():
        box["s"] = status_json(tether, job)
        return box["s"]["state"] in states

    try:
        wait_for(check, timeout, what=f"job {job} to reach {states}")
    except AssertionError:
        raise AssertionError(f"job {job} never reached {states}; last: {box.get('s')}")
    return box["s"]


@pytest.fixture
def rsync_sync(monkeypatch):
    """Every change goes around the launch session (rsync, or the tar stream where rsync
    fails), as a big one does: the tests of that path make small ones."""
    from launcher.transfer import sync

    monkeypatch.setattr(sync, "SMALL_FILES", -1)


def launched_id(result: Result) -> str:
    for line in result.stdout.splitlines():
        if line.startswith("launched job "):
            return line.split()[2]
    raise AssertionError(f"no job id in launch output: {result!r}")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny Llama saved with save_pretrained and a small JSONL data set (tests/tiny_lm.py):
    what the causal-lm workload loads in place of a downloaded model."""
    from tiny_lm import make_data, make_model  # torch and transformers: only for tests that ask

    root = tmp_path_factory.mktemp("lm")
    make_model(root / "model")
    make_data(root / "data" / "train.jsonl")
    return root


def finished_ssh_job(tether, project, host_root: Path, name: str) -> str:
    """A one-host job on the test sshd that echoed a line and SUCCEEDED: its id."""
    spec = project(f"""
        name: {name}
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: echo done
    """)
    job = launched_id(tether("launch", spec))
    wait_state(tether, job, "SUCCEEDED")
    return job


def shutil_which(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is required"
    return path


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
