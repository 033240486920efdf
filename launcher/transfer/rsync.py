"""The rsync fast path of code sync: where both ends have rsync, the files the manifests
found changed travel through it, so a big file that changed a little sends only its changed
blocks. Never a requirement: any failure (no rsync here or there, an old one) leaves the
tar stream to do the work. A file the host has rsync writes under a temp name and renames
into place, as `agent receive` does, so running jobs' hard-linked snapshots keep their bytes;
a file new to the host has no such link, and is created in place (a first launch of 10,000
files: 0.8 s less than through a temp folder), never written over one that is there after
all (--ignore-existing: that one goes by rename). One cut short is in the host's next
manifest with the wrong hash, so the next launch sends it again, by rename.
Host keys are checked as for `tether ssh`: OpenSSH against tether's known_hosts, strictly."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import AbstractSet, Any, Callable, List, Mapping, Optional, Protocol, Sequence, Set

from launcher.transport.host import Host, child_environ


class SendFile(Protocol):
    """A file to send (sync.LocalFile is one): its path under the workdir and its size."""

    rel: str
    size: int

DISABLE_ENV = "TETHER_NO_RSYNC"  # set to 1 to always use the tar stream


def usable(host: Host, environ: Mapping[str, str]) -> bool:
    return (hasattr(host, "openssh_argv") and not environ.get(DISABLE_ENV)
            and shutil.which("rsync") is not None and shutil.which("ssh") is not None)


def send(host: Any, workdir: Path, code_dir: str, temp_dir: str, files: Sequence[SendFile],
         on_bytes: Callable[[int], None], timeout_s: float = 24 * 3600,
         new: AbstractSet[str] = frozenset()) -> Optional[str]:
    """Sends files (under workdir) into code_dir on the host. None when done, else
    why rsync could not (the caller then sends them its own way). The manifests already
    found these files changed: --ignore-times, so rsync's own size+mtime check never skips
    one whose content changed with both kept. new: the paths the host's manifest does not
    have, written in place first (--inplace --ignore-existing: one that is there after all,
    under another case on a case-insensitive disk, behind a folder the host could not list,
    is skipped, and goes with the others); the others by a temp file in temp_dir (outside
    the synced folder, cleared by the next launch if this one is killed), renamed into place."""
    fresh = [f for f in files if f.rel in new]
    rest = [f for f in files if f.rel not in new]
    if fresh:
        sent: Set[str] = set()
        problem = _rsync(host, workdir, code_dir, ["--inplace", "--ignore-existing"], fresh, on_bytes, timeout_s, sent)
        if problem is not None:
            return problem
        rest += [f for f in fresh if f.rel not in sent]
    if rest:
        return _rsync(host, workdir, code_dir, [f"--temp-dir={temp_dir}"], rest, on_bytes, timeout_s, set())
    return None


def _rsync(host: Any, workdir: Path, code_dir: str, how: List[str], files: Sequence[SendFile],
           on_bytes: Callable[[int], None], timeout_s: float, sent: Set[str]) -> Optional[str]:
    """One rsync of files; sent: the names it wrote (its --out-format lines)."""
    remote_shell = shlex.join(host.openssh_argv() + ["-o", "BatchMode=yes",
                                                      "-o", f"ConnectTimeout={int(host.connect_timeout_s)}"])
    dest_host = host.destination
    if ":" in host.endpoint.host:  # an IPv6 address
        dest_host = dest_host.replace(host.endpoint.host, f"[{host.endpoint.host}]")
    argv = ["rsync", "--times", "--perms", "--ignore-times", *how, "--from0", "--files-from=-", "--protect-args",
            "--out-format=%n", "--timeout=300", "-e", remote_shell, f"{workdir}/", f"{dest_host}:{code_dir}/"]
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                    env=dict(child_environ(), LC_ALL="C"))
        except OSError as exc:
            return f"rsync did not start ({exc})"
        assert proc.stdin is not None and proc.stdout is not None
        threading.Thread(target=_feed, args=(proc.stdin, [f.rel for f in files]), daemon=True).start()
        sizes = {f.rel: f.size for f in files}
        for line in proc.stdout:  # one name per file sent: the progress bar moves by its size
            name = line.decode(errors="replace").rstrip("\n")
            sent.add(name)
            on_bytes(sizes.pop(name, 0))
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return "rsync timed out"
        errors.seek(0)
        err = errors.read().decode(errors="replace").strip()
    if rc != 0:
        return f"rsync exited {rc}: {err.splitlines()[-1] if err else 'no message'}"
    return None


def _feed(stdin, rels: List[str]) -> None:
    try:
        stdin.write(b"\0".join(r.encode() for r in rels))
        stdin.close()
    except OSError:
        pass  # rsync exited early: its status says why
