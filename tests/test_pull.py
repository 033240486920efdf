"""Pull: verified, resumable, and nothing lands outside the destination."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import launched_id, wait_state
from fake_pull_host import ListingClient

from launcher.errors import ExitCode, UnsafePathError
from launcher.transfer.pull import PART_SUFFIX, safe_destination

REPO = Path(__file__).resolve().parent.parent

WRITE = """
import os
from agent import progress
out = progress.output_dir()
os.makedirs(os.path.join(out, "model"), exist_ok=True)
open(os.path.join(out, "model", "weights.bin"), "wb").write(bytes(range(256)) * 4096)
open(os.path.join(out, "notes.txt"), "w").write("fine")
os.symlink("/etc/passwd", os.path.join(out, "escape"))
"""


@pytest.fixture
def finished_job(tether, project, host_root):
    spec = project(f"""
        name: pulljob
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: python3 write.py
        artifacts: [outputs/, logs/workload.log]
    """, {"write.py": WRITE})
    job = launched_id(tether("launch", spec))
    wait_state(tether, job, "SUCCEEDED")
    return job


def test_pull_verifies_and_refuses_symlinks(tether, finished_job, tmp_path):
    dest = tmp_path / "dest"
    r = tether("pull", finished_job, "--to", dest)
    assert r.exit_code == 0, r
    data = (dest / "outputs" / "model" / "weights.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(bytes(range(256)) * 4096).hexdigest()
    assert (dest / "outputs" / "notes.txt").read_text() == "fine"
    assert (dest / "logs" / "workload.log").exists()
    assert not (dest / "outputs" / "escape").exists()
    assert "not pulled: outputs/escape (is a symlink)" in r.stdout


def test_only_a_rented_hosts_pull_waits_for_the_disk(tether, finished_job, tmp_path, monkeypatch):
    """A pull that may let a rented host go (autodown) is on disk before it returns; one from a
    host of your own is not made to wait for every dirty page of the machine."""
    import launcher.transfer.pull as pulling
    from launcher.registry import Registry
    from launcher.settings import places

    synced = []
    monkeypatch.setattr(pulling.os, "sync", lambda: synced.append(1))
    assert tether("pull", finished_job, "--to", tmp_path / "owned").exit_code == 0
    assert synced == []
    registry = Registry(places(os.environ).registry)
    try:
        registry.set_instance(registry.resolve(finished_job).id, {"provider": "vast", "id": "1"})
    finally:
        registry.close()
    assert tether("pull", finished_job, "--to", tmp_path / "rented").exit_code == 0
    assert synced == [1]


def test_pull_resumes_a_partial_file(tether, finished_job, tmp_path):
    dest = tmp_path / "dest"
    full = bytes(range(256)) * 4096
    part = dest / "outputs" / "model" / ("weights.bin" + PART_SUFFIX)
    part.parent.mkdir(parents=True)
    part.write_bytes(full[: len(full) // 3])
    r = tether("pull", finished_job, "--to", dest)
    assert r.exit_code == 0, r
    assert (dest / "outputs" / "model" / "weights.bin").read_bytes() == full
    assert not part.exists()


def test_corrupt_partial_file_is_caught_then_pull_again_works(tether, finished_job, tmp_path):
    dest = tmp_path / "dest"
    part = dest / "outputs" / "model" / ("weights.bin" + PART_SUFFIX)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 1000)  # not the file's first bytes
    r = tether("pull", finished_job, "--to", dest)
    assert r.exit_code == ExitCode.FAILED
    assert "does not match its sha256" in r.stderr
    assert not (dest / "outputs" / "model" / "weights.bin").exists()
    assert tether("pull", finished_job, "--to", dest).exit_code == 0
    assert (dest / "outputs" / "model" / "weights.bin").read_bytes() == bytes(range(256)) * 4096


def test_symlink_in_destination_is_not_followed(tether, finished_job, tmp_path):
    dest = tmp_path / "dest"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest.mkdir()
    (dest / "outputs").symlink_to(elsewhere)
    r = tether("pull", finished_job, "--to", dest)
    assert r.exit_code == ExitCode.FAILED
    assert "points elsewhere" in r.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "~/x", "a\\..\\x", ""])
def test_unsafe_paths_from_a_host_are_refused(tmp_path, bad):
    with pytest.raises(UnsafePathError):
        safe_destination(tmp_path, bad)


def test_safe_path(tmp_path):
    assert safe_destination(tmp_path, "outputs/model/w.bin") == tmp_path / "outputs" / "model" / "w.bin"


def test_a_host_listing_files_it_was_not_asked_for_writes_none_of_them(tmp_path):
    """The laptop mirror asks for backups/NAME/: a host answering another backup's files (or
    code/ beside outputs/) would overwrite them in the destination."""
    from rich.console import Console

    from launcher.transfer.pull import pull

    host = ListingClient([{"path": "backups/20260101T000009-step9/MANIFEST.json", "size": 2},
                    {"path": "backups/20260101T000006-step6x/a", "size": 2}, {"path": "code/x.py", "size": 2}])
    got = pull(host, "/j", ["backups/20260101T000006-step6/", "outputs"], tmp_path, Console(file=io.StringIO()))
    assert got.pulled == [] and len(got.refused) == 3 and all("not asked for" in r for r in got.refused), got
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tether-pulled"]


def test_names_a_workload_chose_reach_the_terminal_inert(tether, project, host_root, tmp_path):
    """A file name is the workload's: pulled as it is, but printed without its escape
    sequences (a title, a clipboard write, a cleared screen)."""
    names = ["title\x1b]0;pwned\x07.txt", "clear\x1b[2J.txt", "clip\x1b]52;c;cHduZWQ=\x07", "[bold red]boom.txt"]
    spec = project(f"""
        name: hostilenames
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: python3 names.py
    """, {"names.py": "import os\nfrom agent import progress\nout = progress.output_dir()\n"
                      f"for name in {names!r}:\n    open(os.path.join(out, name), 'w').write(name)\n"})
    job = launched_id(tether("launch", spec))
    wait_state(tether, job, "SUCCEEDED")
    r = tether("pull", job, "--to", tmp_path / "got")
    assert r.exit_code == 0, r
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "pulled 4 file(s)" in r.stdout
    assert "  outputs/[bold red]boom.txt\n" in r.stdout   # as named: not taken for rich's markup
    for name in names:
        assert (tmp_path / "got" / "outputs" / name).read_text() == name



OLD_RUNTIME_REFUSAL = (  # what a runtime from before `pull-files` (ec78013's agent) prints for it
    "usage: python -m agent [-h]\n                       {run,manifest,...,list-files,read-files,...}\n"
    "python -m agent: error: argument verb: invalid choice: 'pull-files' (choose from 'run', 'manifest', "
    "'list-files', 'read-files', 'serve')\n")


class _OlderRuntime:
    """A job launched by an older tether: its runtime has `list-files` and `read-files` (the
    same list_tree and send_files as today's), and refuses `pull-files` as its argparse did."""

    def __init__(self, top) -> None:
        self.top = top
        self.asked: list = []
        self.not_next_time: list = []

    def stream(self, verb: str, *args, **kw):
        from agent.pull_files import send_files

        self.asked.append(verb)
        if verb == "pull-files":
            return _Command(2, OLD_RUNTIME_REFUSAL)
        assert verb == "read-files" and args == ("/j",)
        return _Command(0, "", lambda stdin, out: send_files(self.top, json.loads(stdin), out))

    def not_early(self, verb: str, *args) -> None:
        self.not_next_time.append((verb, *args))

    def call(self, verb: str, *args, env=None, **kw):
        from agent.pull_files import list_tree

        self.asked.append(verb)
        assert verb == "list-files" and args[0] == "/j"
        return list_tree(self.top, list(args[1:]), hashes=(env or {}).get("TETHER_LIST_SIZES_ONLY") != "1")


class _Command:
    """A remote command's pipes: its stdout is what answer(stdin, out) writes once stdin is closed."""

    def __init__(self, code: int, stderr: str, answer=None) -> None:
        self.code, self.stderr, self.answer = code, stderr, answer
        self.stdin, self.stdout = io.BytesIO(), io.BytesIO()

    def close_stdin(self) -> None:
        if self.answer is not None and not self.stdin.closed:
            out = io.BytesIO()
            self.answer(self.stdin.getvalue(), out)
            self.stdout = io.BytesIO(out.getvalue())
        self.stdin.close()

    def wait(self) -> int:
        return self.code

    def stderr_text(self) -> str:
        return self.stderr

    def kill(self) -> None:
        pass


def test_a_job_launched_by_an_older_tether_is_pulled_with_its_runtimes_two_commands(tmp_path):
    """Its runtime refuses `pull-files`: the pull lists and reads with the commands that
    runtime has, and the files arrive whole (the unchanged one hashed on the host, not sent)."""
    from rich.console import Console

    from launcher.transfer.pull import pull

    top = tmp_path / "job"
    (top / "outputs" / "ckpt").mkdir(parents=True)
    for name, data in (("model.bin", b"w" * 5000), ("ckpt/a.pt", b"a" * 300), ("ckpt/b.pt", b"b" * 7)):
        (top / "outputs" / name).write_bytes(data)
    dest = tmp_path / "got"
    (dest / "outputs").mkdir(parents=True)
    (dest / "outputs" / "model.bin").write_bytes(b"w" * 5000)
    host = _OlderRuntime(top)
    got = pull(host, "/j", ["outputs"], dest, Console(file=io.StringIO()))
    assert sorted(got.pulled) == ["outputs/ckpt/a.pt", "outputs/ckpt/b.pt"] and got.unchanged == ["outputs/model.bin"]
    assert host.asked == ["pull-files", "list-files", "list-files", "read-files"]
    assert host.not_next_time == [("pull-files", "/j")]   # the next pull of it does not start it first
    for name in ("model.bin", "ckpt/a.pt", "ckpt/b.pt"):
        assert (dest / "outputs" / name).read_bytes() == (top / "outputs" / name).read_bytes()


def test_a_pull_session_that_fails_says_what_the_host_said(tmp_path):
    """Not an older runtime: the host's own words, in one line, and nothing written."""
    from launcher.errors import RemoteError
    from launcher.transfer.pull import pull
    from rich.console import Console

    class Broken(_OlderRuntime):
        def stream(self, verb, *args, **kw):
            self.asked.append(verb)
            return _Command(2, "Traceback...\nPermissionError: [Errno 13] Permission denied: '/j/outputs'\n")

    host = Broken(tmp_path)
    with pytest.raises(RemoteError, match="listing the files to pull failed on the host: .*Permission denied"):
        pull(host, "/j", ["outputs"], tmp_path / "got", Console(file=io.StringIO()))
    assert host.asked == ["pull-files"] and [p.name for p in (tmp_path / "got").iterdir()] == [".tether-pulled"]


# A host command that goes on: deaf to SIGTERM and SIGHUP, and to the end of its stdin.
STUBBORN = "import signal, time; [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGHUP)]; time.sleep(60)"


class _Hanging:
    """A host whose pull session is a real process that never answers, and ignores the end
    of its stdin: the pull must not wait for it forever."""

    def __init__(self) -> None:
        from launcher.transport.host import ProcessStream

        self.stream = ProcessStream([sys.executable, "-c", STUBBORN])

    def stream_for(self, *a, **kw):
        return self.stream


def test_a_host_that_never_answers_the_listing_is_ended_and_said(tmp_path, monkeypatch):
    from launcher.errors import RemoteError
    from launcher.transfer import host_files, pull as pulling
    from rich.console import Console

    monkeypatch.setattr(host_files, "LISTING_S", 0.5)
    host = _Hanging()
    client = type("C", (), {"stream": lambda self, *a, **kw: host.stream})()
    with pytest.raises(RemoteError, match="no answer from the host within 0s|no answer from the host within 1s"):
        pulling.pull(client, "/j", ["outputs"], tmp_path / "got", Console(file=io.StringIO()))
    assert host.stream.proc.wait() == -signal.SIGKILL   # killed, not waited for


def test_a_host_that_does_not_end_after_the_pull_is_ended(tmp_path, monkeypatch):
    """Nothing wanted: the session is told so (the end of its stdin); one that goes on
    anyway is killed after ENDING_S, and the pull still returns."""
    from launcher.transfer import host_files, pull as pulling
    from launcher.transport.host import ProcessStream
    from rich.console import Console

    monkeypatch.setattr(host_files, "ENDING_S", 0.5)
    stubborn = ProcessStream([sys.executable, "-c", "import sys; sys.stdin.readline(); "
                              "print('{\"files\": [], \"refused\": []}', flush=True); " + STUBBORN])
    client = type("C", (), {"stream": lambda self, *a, **kw: stubborn})()
    got = pulling.pull(client, "/j", ["outputs"], tmp_path / "got", Console(file=io.StringIO()))
    assert got.pulled == [] and stubborn.proc.wait() == -signal.SIGKILL   # killed, not waited for


@pytest.mark.parametrize("listing, why", [
    (b'{"files": 5}\n', "not {files"),
    (b"[" * 100000 + b"\n", "not JSON"),
    (b'{"files": [], "refused": []', "the session ended"),   # cut: no newline, then the end
])
def test_a_malformed_listing_is_one_line_not_a_traceback(tmp_path, listing, why):
    from launcher.errors import RemoteError
    from launcher.transfer import pull as pulling
    from launcher.transport.host import ProcessStream
    from rich.console import Console

    answer = ProcessStream([sys.executable, "-c", f"import sys; sys.stdin.readline(); sys.stdout.buffer.write({listing!r})"])
    client = type("C", (), {"stream": lambda self, *a, **kw: answer})()
    with pytest.raises(RemoteError) as got:
        pulling.pull(client, "/j", ["outputs"], tmp_path / "got", Console(file=io.StringIO()))
    assert why in str(got.value) or (why == "the session ended" and "exit code 0" in str(got.value)), got.value


def test_the_host_side_reads_nothing_outside_the_job_folder_whatever_it_is_asked(tmp_path):
    """A workload may swap a folder for a symlink between the listing and the read, and the
    requests are checked as any input: each refusal is a one-line error in its frame."""
    from agent.pull_files import session

    top, secret = tmp_path / "job", tmp_path / "secret"
    (top / "outputs").mkdir(parents=True)
    secret.mkdir()
    (secret / "key").write_text("TOPSECRET")
    (top / "outputs" / "lnk").symlink_to(secret)
    os.mkfifo(top / "outputs" / "fifo")   # opened to read, it would wait for a writer forever
    (top / "outputs" / "ok.txt").write_text("fine")
    requests = [{"path": "outputs/lnk/key"}, {"path": "outputs/lnk"}, {"path": "outputs/fifo"},
                {"path": "../secret/key"}, {"path": "outputs/ok.txt", "offset": -5},
                {"path": "outputs/ok.txt", "offset": 1e400}, {"path": "outputs/ok.txt", "offset": True},
                {"path": "outputs/ok.txt", "offset": 2}]
    out = io.BytesIO()
    session(top, io.BytesIO(json.dumps({"read": requests}).encode() + b"\n"), out)
    lines = out.getvalue().split(b"\n")
    assert b"TOPSECRET" not in out.getvalue()
    errors = [json.loads(line) for line in lines[:7]]
    assert all(set(e) == {"path", "error"} for e in errors), errors
    assert "not inside the job's folder" in errors[0]["error"] and "whole number" in errors[4]["error"]
    assert json.loads(lines[7]) == {"path": "outputs/ok.txt", "offset": 2, "length": 2} and lines[8] == b"ne"


@pytest.mark.parametrize("request_line", [b"{}", b"[1]", b"[" * 100000, b'{"list": "outputs"}', b'{"read": 5}',
                                          b"not json"])
def test_a_malformed_pull_request_ends_the_host_side_with_one_line(tmp_path, request_line):
    from agent.protocol import agent_argv


    (tmp_path / "job").mkdir()
    done = subprocess.run(agent_argv(sys.executable, str(REPO), "pull-files", str(tmp_path / "job")),
                          input=request_line + b"\n", capture_output=True, timeout=60)
    assert done.returncode == 2 and done.stdout == b"", done
    assert len(done.stderr.decode().strip().splitlines()) == 1 and b"Traceback" not in done.stderr, done.stderr[-300:]


def test_a_host_that_stops_sending_mid_file_ends_the_pull_and_keeps_what_came(tmp_path, monkeypatch):
    """Alive but silent (ssh's keepalives would be answered): the pull is ended after
    STALL_S with one line, the host side killed, and the bytes that came kept to resume."""
    from launcher.errors import RemoteError
    from launcher.transfer import pull as pulling
    from launcher.transport.host import ProcessStream
    from rich.console import Console

    monkeypatch.setattr(pulling, "STALL_S", 0.5)
    listing = json.dumps({"files": [{"path": "outputs/big.bin", "size": 10}], "refused": []})
    host = ProcessStream([sys.executable, "-c", "import sys, os\n"
                          f"sys.stdin.readline(); print({listing!r}, flush=True); sys.stdin.readline()\n"
                          "os.write(1, b'{\"path\": \"outputs/big.bin\", \"offset\": 0, \"length\": 10}\\n12345')\n"
                          + STUBBORN])
    client = type("C", (), {"stream": lambda self, *a, **kw: host})()
    with pytest.raises(RemoteError, match="the host sent nothing for 0s"):
        pulling.pull(client, "/j", ["outputs"], tmp_path / "got", Console(file=io.StringIO()))
    assert host.proc.wait() == -signal.SIGKILL
    assert (tmp_path / "got" / "outputs" / ("big.bin" + PART_SUFFIX)).read_bytes() == b"12345"
