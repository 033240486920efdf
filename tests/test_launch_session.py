"""A launch's host side in one process (agent/launch_session.py) and the laptop's side of it
(launcher/transport/launch_session.py): real agent processes on this machine, real locks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.code_snapshot import make_now, wait_for_code
from agent.paths import JobDir, Root
from agent.protocol import JobFacts, JobPayload, code_digest
from launcher.errors import RemoteError, RuntimeGoneError
from launcher.transport.agent_client import AgentClient
from launcher.transport.bootstrap import local_runtime_dir
from launcher.transport.host import LocalHost
from launcher.transport import launch_session
from launcher.transport.launch_session import LaunchSession, Opening, PendingLaunch


def _client() -> AgentClient:
    return AgentClient(LocalHost(), sys.executable, local_runtime_dir())


def _payload(job_id: str, digest=None) -> JobPayload:
    return JobPayload(spec={"name": "p", "run": "sleep 30"},
                      job=JobFacts(id=job_id, project="p", command="sleep 30", code_digest=digest))


def _session(root, on_wait=lambda: None, known=()) -> LaunchSession:
    return Opening(_client(), str(root), "p", shipped=False).finish(list(known), on_wait)


def open_launch(host, root, cache) -> LaunchSession:
    """A launch's session as `tether launch` opens it (kept facts, else the probe)."""
    return PendingLaunch(host, "local", sys.executable, str(root), "p", cache).finish([], lambda: None)


def _root_with(tmp_path, name: str, text: str):
    """A tether root whose project p holds one file."""
    root = tmp_path / "root"
    (root / "code" / "p").mkdir(parents=True)
    (root / "code" / "p" / name).write_text(text)
    return root


def test_one_session_locks_answers_the_manifest_creates_and_starts(tmp_path):
    root = _root_with(tmp_path, "a.py", "print('hi')\n")
    session = _session(root)
    try:
        assert session.info.root == str(root) and session.info.executable == sys.executable
        files = session.manifest["files"]
        assert list(files) == ["a.py"] and session.manifest["digest"] == code_digest(files)
        created = session.create("job1", _payload("job1", code_digest(files)), pushed=False)
        assert wait_for_code(JobDir(created["job_dir"])) is None  # made by then, or waited for
        assert (root / "jobs" / "job1" / "code" / "a.py").read_text() == "print('hi')\n"
        started = session.start({"HIDDEN": "s3cret"})
        assert started == {"started": True}
    finally:
        session.close()
    job = json.loads((root / "jobs" / "job1" / "spec.json").read_text())
    assert job["job"]["id"] == "job1" and "s3cret" not in json.dumps(job)
    _stop(created["job_dir"])


def _stop(job_dir: str) -> None:
    _client().call("stop", job_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _client().status([job_dir])[0].get("state") in ("STOPPED", "FAILED", "SUCCEEDED"):
            return
        time.sleep(0.2)


def test_a_second_launch_of_the_project_waits_until_the_first_has_its_snapshot(tmp_path):
    root = tmp_path / "root"
    first = _session(root)
    waited = []
    try:
        opened = []
        import threading

        t = threading.Thread(target=lambda: opened.append(_session(root, lambda: waited.append(time.monotonic()))))
        t.start()
        time.sleep(1.5)
        assert waited and not opened  # told it waits, and it does
        first.create("job1", _payload("job1"), pushed=False)  # the snapshot: the lock goes
        t.join(30)
        assert opened, "the second launch never got the lock"
        assert (root / "jobs" / "job1" / "code").is_dir()  # whole before the next launch could sync
        opened[0].close()
    finally:
        first.close()


def test_a_launcher_that_goes_away_leaves_no_lock(tmp_path):
    root = tmp_path / "root"
    first = _session(root)
    first.close()  # the laptop died, or its connection did: the host's stdin ends
    waited = []
    second = _session(root, lambda: waited.append(1))
    second.close()
    assert not waited
    assert not (root / "jobs").exists() or not any((root / "jobs").iterdir())


def test_the_host_starts_before_the_laptop_has_scanned_and_locks_only_after(tmp_path):
    """The session is started, then the laptop scans; meanwhile the host's Python starts and
    introduces itself, but takes the project's lock only once it has the laptop's digests
    (a multi-node launch introduces every node before it locks any)."""
    import fcntl
    import hashlib

    root, cache = tmp_path / "root", tmp_path / "cache"
    open_launch(LocalHost(), root, cache).close()
    (root / "code" / "p").mkdir(parents=True, exist_ok=True)
    (root / "code" / "p" / "a.py").write_text("a = 1\n")
    pending = PendingLaunch(LocalHost(), "local", sys.executable, str(root), "p", cache)
    assert pending.opening is not None  # a known host: started at once
    assert pending.introduce().root == str(root)
    with open(root / "code" / ".p.lock", "a+") as lock:  # introduced, and the lock still free
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock, fcntl.LOCK_UN)
    digest = code_digest({"a.py": {"mode": 0o644, "sha256": hashlib.sha256(b"a = 1\n").hexdigest()}})
    session = pending.finish([digest], lambda: None)
    try:
        assert session.manifest == {"digest": digest}  # it knew: no manifest moved
        with open(root / "code" / ".p.lock", "a+") as lock, pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        session.close()


def test_a_launch_queued_behind_another_can_be_cancelled_at_once(tmp_path):
    import threading

    root = tmp_path / "root"
    first = _session(root)
    pending = PendingLaunch(LocalHost(), "local", sys.executable, str(root), "p", None)
    waited, outcome = threading.Event(), []

    def queue():
        try:
            pending.finish([], waited.set).close()
            outcome.append("locked")
        except Exception as exc:
            outcome.append(exc)

    t = threading.Thread(target=queue)
    t.start()
    try:
        assert waited.wait(60), "the second launch was never told it waits"
        pending.cancel()  # Ctrl-C, or another node failed: the queued host side is not waited for
        t.join(15)
        assert not t.is_alive() and outcome and outcome[0] != "locked"
    finally:
        first.close()
        t.join(30)


def test_a_host_that_stops_answering_is_given_up_with_one_line(tmp_path, monkeypatch):
    import os
    import signal

    root = tmp_path / "root"
    monkeypatch.setattr(launch_session, "ANSWER_S", 2.0)
    session = _session(root)
    os.kill(session._talk.stream.proc.pid, signal.SIGSTOP)  # the host's side (here, a local process) freezes
    try:
        with pytest.raises(RemoteError) as exc:
            session.create("job1", _payload("job1"), pushed=False)
        assert "no answer within 2s" in str(exc.value.what) and "\n" not in str(exc.value.what)
    finally:
        session.close()


def test_a_host_side_that_dies_mid_launch_is_said_in_one_line(tmp_path):
    root = tmp_path / "root"
    session = _session(root)
    session._talk.stream.proc.kill()  # the host's process killed (OOM, a dropped connection)
    session._talk.stream.proc.wait()
    with pytest.raises(RemoteError) as exc:
        session.create("job1", _payload("job1"), pushed=False)
    assert "creating the job failed on the host" in str(exc.value.what)
    session.close()


def test_a_root_the_host_cannot_lock_in_is_the_hosts_own_line(tmp_path):
    """A known host whose root's code folder cannot be made (here a file in its place): the
    host's error is what the user reads, not a broken pipe."""
    root, cache = tmp_path / "root", tmp_path / "cache"
    open_launch(LocalHost(), root, cache).close()
    shutil.rmtree(root / "code", ignore_errors=True)
    (root / "code").write_text("not a folder")
    with pytest.raises(RemoteError) as exc:
        open_launch(LocalHost(), root, cache)
    assert "before it held the project's lock" in str(exc.value.what)
    assert "Not a directory" in str(exc.value.what) or "File exists" in str(exc.value.what)


def test_a_bad_create_request_is_one_line_and_leaves_no_job_folder(tmp_path):
    root = tmp_path / "root"
    session = _session(root)
    try:
        bad = _payload("../escape")
        with pytest.raises(RemoteError) as exc:
            session.create("../escape", bad, pushed=False)
        assert "creating the job failed on the host" in str(exc.value.what)
        assert "\n" not in str(exc.value.what)
    finally:
        session.close()
    assert not (tmp_path / "escape").exists()
    assert not (root / "jobs").exists() or not any((root / "jobs").iterdir())


class CountingHost(LocalHost):
    def __init__(self) -> None:
        self.runs = 0

    def run(self, argv, **kw):
        self.runs += 1
        return super().run(argv, **kw)


def test_a_known_host_skips_the_probe_and_a_wiped_one_is_probed_again(tmp_path):
    """The first launch probes and ships the runtime, in one remote call; the next starts its
    session at once; a host whose runtime went (a wiped root) is probed and shipped to again,
    not refused."""
    root, cache = tmp_path / "root", tmp_path / "cache"
    host = CountingHost()

    def launch():
        s = open_launch(host, root, cache)
        s.close()
        return s.info

    first = launch()
    assert first.shipped and host.runs == 1  # the probe, which installed the runtime
    again = launch()
    assert not again.shipped and host.runs == 1 and again.runtime_dir == first.runtime_dir
    shutil.rmtree(root / "runtime")
    third = launch()
    assert third.shipped and host.runs == 2 and (root / "runtime").is_dir()
    assert sorted(p.name for p in (root / "runtime").iterdir()) == [Path(first.runtime_dir).name]  # no temp left


def test_a_probe_that_ships_nothing_never_reads_the_laptops_stdin(tmp_path):
    """`tether launch --dry-run` probes without shipping: the probe must not take the laptop's
    stdin (a terminal, left open), or the dry run would wait for Ctrl-D."""
    code = ("import sys\nfrom launcher.transport.bootstrap import prepare_host\n"
            "from launcher.transport.host import LocalHost\n"
            "print(prepare_host(LocalHost(), sys.executable, sys.argv[1], ship=False).shipped)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "root")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=60)  # stdin stays open, as a terminal's would
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
    assert proc.returncode == 0 and proc.stdout.read().strip() == b"True", proc.stderr.read()


def test_a_missing_runtime_is_said_not_guessed(tmp_path):
    """The agent's boot names a runtime folder that is not there instead of importing
    whatever else the host calls `agent`."""
    client = AgentClient(LocalHost(), sys.executable, str(tmp_path / "nothing"))
    done = LocalHost().run(client.argv("status", "x"))
    assert done.returncode != 0 and b"no tether runtime at" in done.stderr
    with pytest.raises(RuntimeGoneError):  # told apart by its exit status, not its words
        client.call("status", "x")


class FakeStream:
    """A host whose session answers lines given here (a hostile or broken host)."""

    def __init__(self, lines):
        import io
        self.stdout = io.BytesIO(b"".join(lines))
        self.stdin = io.BytesIO()

    def close_stdin(self):
        pass

    def kill(self):
        pass

    def wait(self):
        return 0

    def stderr_text(self):
        return ""


@pytest.mark.parametrize("lines", [
    [b'{"hello": {"python": [3, 11, 7], "executable": "/x", "root": "relative/root"}}\n'],
    [b'{"hello": {"python": "3.11", "executable": "/x", "root": "/r"}}\n'],
    [b'{"hello": {"python": [3, 11, 7], "executable": "/x", "root": "/r"}}\n', b'not json\n'],
    [b'{"hello": {"python": [3, 11, 7], "executable": "/x", "root": "/r"}}\n', b'{"locked": true}\n'],
    [b'{"hello": {"python": [3, 11, 7], "executable": "/x", "root": "/r"}}\n',
     b'{"ok": false, "error": "a line\\nanother"}\n'],
])
def test_a_host_answering_out_of_shape_is_refused_in_one_line(lines, monkeypatch):
    client = _client()
    monkeypatch.setattr(client, "stream", lambda *a, **kw: FakeStream(lines))
    with pytest.raises(RemoteError) as exc:
        Opening(client, "/r", "p", shipped=False).finish([], lambda: None)
    assert "\n" not in str(exc.value.what)


def _created_without_code(root, job_id: str, run: str) -> JobDir:
    """A job as a launch session leaves it when it answers: folder and spec, no code yet."""
    from agent.hostops import create_job

    code = Root(root).code("p")
    code.mkdir(parents=True, exist_ok=True)
    (code / "train.py").write_text("open('ran', 'w').write('yes')\n")
    payload = JobPayload(spec={"name": "p", "run": run}, job=JobFacts(id=job_id, project="p", command=run))
    doc = json.loads(json.dumps(payload.to_json()))  # as it arrives over the wire
    return JobDir(create_job(Root(root), "p", job_id, doc, snapshot_now=False)["job_dir"])


def test_the_agent_runs_the_workload_only_once_its_snapshot_is_whole(tmp_path):
    """The launch answers before the job's code is linked: the agent waits while the maker
    holds the job's code guard, then runs the code it made."""
    import fcntl

    from agent.hostops import start

    job = _created_without_code(tmp_path / "root", "job1", f"{sys.executable} train.py")
    with open(job.code_guard, "a+") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)       # the snapshot is being made
        assert start(job, {})["started"]
        time.sleep(1.0)
        assert not (job.code / "ran").exists() and not job.code.exists()
        make_now(Root(tmp_path / "root").code("p"), job)
    _wait_state(job, ("SUCCEEDED",))
    assert (job.code / "ran").read_text() == "yes"


def test_a_snapshot_that_failed_or_whose_maker_died_fails_the_job_saying_so(tmp_path):
    from agent.hostops import start

    died = _created_without_code(tmp_path / "root", "died", "true")
    (died.code_guard).touch()                   # its maker ended without a word
    assert start(died, {})["started"]
    doc = _wait_state(died, ("FAILED",))
    assert doc["failure"] == "infra" and "snapshot did not finish" in doc["reason"]

    failed = _created_without_code(tmp_path / "root", "failed", "true")
    failed.code_error.write_text("the job's code could not be copied on the host: No space left on device")
    assert start(failed, {})["started"]
    doc = _wait_state(failed, ("FAILED",))
    assert "No space left on device" in doc["reason"]


def _wait_state(job: JobDir, states) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            doc = json.loads(job.state.read_text())
        except (FileNotFoundError, ValueError):
            doc = {}
        if doc.get("state") in states:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"{job.path.name} never reached {states}: {doc}")


def _delta(files: dict, delete=()) -> bytes:
    """A change as sync.write_delta writes one, with names chosen by the test (a laptop
    that is not ours could send anything)."""
    import io
    import tarfile

    out = io.BytesIO()
    out.write(json.dumps({"delete": list(delete)}).encode() + b"\n")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _digest_of(files: dict) -> str:
    import hashlib

    return code_digest({k: {"mode": 0o644, "sha256": hashlib.sha256(v).hexdigest()} for k, v in files.items()})


def test_a_small_change_put_on_the_session_lands_and_its_digest_needs_no_second_scan(tmp_path):
    root = _root_with(tmp_path, "old.py", "old\n")
    session = _session(root)
    try:
        assert session.put(_delta({"a.py": b"a = 1\n", "pkg/b.py": b"b = 2\n"}, delete=["old.py"])) == \
            {"received": 2, "deleted": 1}
        want = _digest_of({"a.py": b"a = 1\n", "pkg/b.py": b"b = 2\n"})
        created = session.create("job1", _payload("job1", want), pushed=False)
        assert wait_for_code(JobDir(created["job_dir"])) is None
        assert (root / "jobs" / "job1" / "code" / "pkg" / "b.py").read_text() == "b = 2\n"
        assert not (root / "jobs" / "job1" / "code" / "old.py").exists()
    finally:
        session.close()


def test_a_put_whose_bytes_are_not_what_the_launch_meant_fails_the_create(tmp_path):
    """The laptop's digest is of its tree; what landed is hashed on the host: a file that
    changed while it was sent is caught before the job exists."""
    root = tmp_path / "root"
    session = _session(root)
    try:
        session.put(_delta({"a.py": b"a = 2\n"}))
        with pytest.raises(RemoteError, match="not what this launch sent"):
            session.create("job1", _payload("job1", _digest_of({"a.py": b"a = 1\n"})), pushed=False)
    finally:
        session.close()
    assert not (root / "jobs" / "job1").exists()


def test_code_sent_around_the_session_is_hashed_after_the_answer_and_linked_only_if_it_is_the_launchs(tmp_path):
    """Code that came by rsync or the tar stream ("pushed") is hashed on the snapshot's thread,
    after the create has its answer (a one-host launch): what does not hash to the launch's
    digest is never linked, and the job's agent is told why (it fails the job, as for any code
    error). A multi-node launch has it checked before the answer: the create fails, and the
    launch takes every node back at once."""
    root = _root_with(tmp_path, "a.py", "a = 2\n")
    session = _session(root)
    try:
        with pytest.raises(RemoteError, match="not what this launch sent"):
            session.create("job0", _payload("job0", _digest_of({"a.py": b"a = 1\n"})), pushed=True)
    finally:
        session.close()
    assert not (root / "jobs" / "job0").exists()
    session = _session(root)
    try:
        created = session.create("job1", _payload("job1", _digest_of({"a.py": b"a = 1\n"})), pushed=True,
                                 check_after=True)
        assert set(created) >= {"job_dir"} and "check_digest" not in created
        why = wait_for_code(JobDir(created["job_dir"]))
        assert why is not None and "not what this launch sent" in why
        assert not (root / "jobs" / "job1" / "code").exists()
    finally:
        session.close()
    session = _session(root)
    try:
        created = session.create("job2", _payload("job2", _digest_of({"a.py": b"a = 2\n"})), pushed=True,
                                 check_after=True)
        assert wait_for_code(JobDir(created["job_dir"])) is None
        assert (root / "jobs" / "job2" / "code" / "a.py").read_text() == "a = 2\n"
    finally:
        session.close()


@pytest.mark.parametrize("name", ["../escaped.py", "/tmp/abs.py", "a/../../escaped.py"])
def test_a_put_naming_a_path_outside_the_code_folder_is_refused_and_writes_nothing(tmp_path, name):
    root = tmp_path / "root"
    session = _session(root)
    try:
        with pytest.raises(RemoteError, match="refusing unsafe path"):
            session.put(_delta({name: b"x"}))
    finally:
        session.close()
    assert not (root / "code" / "escaped.py").exists() and not (tmp_path / "escaped.py").exists()
    assert not list((root / "code").rglob("*.py")) if (root / "code").exists() else True


def test_a_host_told_the_kept_digest_locks_and_hashes_while_the_laptop_scans(tmp_path):
    """A host this laptop synced before is told the kept digest before the laptop's scan: it
    takes the lock and hashes its copy meanwhile, and answers with the digest alone."""
    import fcntl
    import hashlib

    root, cache = tmp_path / "root", tmp_path / "cache"
    open_launch(LocalHost(), root, cache).close()
    (root / "code" / "p").mkdir(parents=True, exist_ok=True)
    (root / "code" / "p" / "a.py").write_text("a = 1\n")
    digest = code_digest({"a.py": {"mode": 0o644, "sha256": hashlib.sha256(b"a = 1\n").hexdigest()}})
    pending = PendingLaunch(LocalHost(), "local", sys.executable, str(root), "p", cache)
    pending.tell([digest])
    deadline = time.monotonic() + 30
    with open(root / "code" / ".p.lock", "a+") as lock:
        while True:  # held before finish is even called: the laptop is still scanning
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
            except BlockingIOError:
                break
            assert time.monotonic() < deadline, "the host never took the lock"
            time.sleep(0.05)
    session = pending.finish([digest, "another"], lambda: None)  # told already: not sent again
    try:
        assert session.manifest == {"digest": digest}
    finally:
        session.close()


def test_a_put_turning_a_file_into_a_folder_of_the_same_name_and_back_lands(tmp_path):
    """The laptop's `model.py`-style file became a folder `model/` (or the other way): the
    plan sends model/x.py and deletes model. rsync replaced the file with the folder; a put
    wrote before it deleted and failed on every launch after."""
    root = tmp_path / "root"
    (root / "code" / "p").mkdir(parents=True)
    (root / "code" / "p" / "model").write_text("a file\n")
    session = _session(root)
    try:
        assert session.put(_delta({"model/x.py": b"x = 1\n"}, delete=["model"])) == {"received": 1, "deleted": 1}
        assert session.put(_delta({"model": b"a file again\n"}, delete=["model/x.py"])) == \
            {"received": 1, "deleted": 1}
        created = session.create("job1", _payload("job1", _digest_of({"model": b"a file again\n"})), pushed=False)
        assert wait_for_code(JobDir(created["job_dir"])) is None
        assert (root / "jobs" / "job1" / "code" / "model").read_text() == "a file again\n"
    finally:
        session.close()


def test_a_put_through_a_symlinked_folder_on_the_host_makes_nothing_outside_the_code_folder(tmp_path):
    """A symlink to a folder elsewhere in the host's code folder: a put naming a path under
    it is refused before any folder is made there (mkdir ran before the check)."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "code" / "p").mkdir(parents=True)
    (root / "code" / "p" / "link").symlink_to(outside)
    session = _session(root)
    try:
        with pytest.raises(RemoteError, match="leaves the code folder"):
            session.put(_delta({"link/new/deeper/x.py": b"x"}))
    finally:
        session.close()
    assert list(outside.iterdir()) == []


def test_a_put_through_a_symlinked_folder_inside_the_code_folder_never_makes_a_job_of_other_code(tmp_path):
    """alias -> real inside the host's code folder (tether never syncs a symlink; something
    on the host made it): a put of alias/x.py landed in real/, the session's manifest said
    alias/x.py, the create took that digest as the code's, and the job's snapshot (which
    does not follow symlinks) had no alias/x.py. The put is refused instead."""
    root = tmp_path / "root"
    code = root / "code" / "p"
    (code / "real").mkdir(parents=True)
    (code / "real" / "keep.py").write_text("keep\n")
    (code / "alias").symlink_to("real")
    session = _session(root)
    try:
        with pytest.raises(RemoteError, match="a folder on its way is a symlink"):
            session.put(_delta({"alias/x.py": b"x = 1\n"}))
    finally:
        session.close()
    assert not (code / "real" / "x.py").exists()


@pytest.mark.parametrize("how", ["not zlib", "cut short", "not a tar"])
def test_a_put_that_is_not_a_whole_change_is_refused_in_one_line_and_writes_nothing(tmp_path, how):
    """A put's bytes that are not what the laptop's sync writes (zlib of a JSON line and a
    tar): the host's own line, not its traceback; a cut-short stream is not applied in part."""
    import base64
    import zlib

    good = zlib.compress(_delta({"a.py": b"a = 1\n" * 1000, "b.py": b"b = 2\n"}))
    raw = {"not zlib": b"not zlib", "cut short": good[:len(good) // 2],
           "not a tar": zlib.compress(b'{"delete": []}\n' + b"not a tar at all" * 40)}[how]
    root = tmp_path / "root"
    session = _session(root)
    try:
        with pytest.raises(RemoteError, match="the put") as caught:
            session._ask({"op": "put", "delta": base64.b64encode(raw).decode()}, "sending the change")
    finally:
        session.close()
    assert "Traceback" not in str(caught.value) and ".py\", line" not in str(caught.value)
    assert not (root / "code" / "p" / "a.py").exists()


def test_a_host_that_stops_reading_a_put_is_given_up_with_one_line(tmp_path, monkeypatch):
    """A put is megabytes: a host side that stops reading it (frozen, or hostile) filled the
    pipe and the laptop's write waited for ever; it is given up as one that stops answering."""
    import os
    import random
    import signal
    import threading

    root = tmp_path / "root"
    monkeypatch.setattr(launch_session, "ANSWER_S", 2.0)
    session = _session(root)
    os.kill(session._talk.stream.proc.pid, signal.SIGSTOP)
    big = random.Random(1).randbytes(4 * 1024 * 1024)  # as much as a put carries, not compressible
    outcome: list = []

    def put() -> None:
        try:
            session.put(_delta({"data.bin": big}))
            outcome.append("answered")
        except RemoteError as exc:
            outcome.append(str(exc.what))

    t = threading.Thread(target=put, daemon=True)
    t.start()
    t.join(30)
    try:
        assert outcome and "no answer within 2s" in outcome[0] and "\n" not in outcome[0], outcome
    finally:
        session._talk.stream.proc.kill()
        session.close()


def _refusal(fn) -> str:
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    return ""


def test_a_failed_launchs_folder_is_removed_only_once_no_launch_of_its_project_holds_the_lock(tmp_path):
    """The laptop gave up on a create (no answer in time) and asks for the job's folder to go;
    the host's session may still be making it (before any guard exists). The removal waits
    for the project's lock: refused while a session holds it, folder untouched; done after."""
    from agent.hostops import discard_job

    root = tmp_path / "root"
    session = _session(root)  # a real host-side process, holding p's lock (as one still creating)
    job = Root(root).job("job1")
    (job.code).mkdir(parents=True)
    (job.code / "train.py").write_text("print('x')\n")
    try:
        began = time.monotonic()
        with pytest.raises(ValueError, match="still holds its lock"):
            discard_job(job, "p", wait_s=0.5)
        assert time.monotonic() - began >= 0.5 and (job.code / "train.py").is_file()
    finally:
        session.close()  # its process ends: the lock is free
    # Off the main thread (no timer signal there) the wait is polled, and refuses the same.
    import threading

    session = _session(root)
    refused: list = []
    try:
        t = threading.Thread(target=lambda: refused.append(_refusal(lambda: discard_job(job, "p", wait_s=0.3))))
        t.start()
        t.join(30)
        assert refused and "still holds its lock" in refused[0] and job.path.is_dir(), refused
    finally:
        session.close()
    answer = _client().call("discard-job", str(job.path), "--project", "p", timeout=60)  # as undo_launch asks
    assert answer == {"discarded": True} and not job.path.exists()
