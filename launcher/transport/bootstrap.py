"""Bootstrap: find the host's Python, resolve the tether root, ship the agent runtime once per
version. Runs before the agent exists on the host, so its scripts are `python -c` programs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import agent
import tether
import workloads

from launcher import __version__
from launcher.errors import RemoteError
from launcher.transport.host import Host

MIN_PYTHON = (3, 9)

# Prints the Python version, the absolute root and the runtime versions already there; given
# a runtime version that is not there, first unpacks the tar on stdin into runtime/<version>,
# atomically (temp folder, then rename). One remote call for both: a first launch's probe and
# shipping cost one round trip. It drops the working directory from sys.path first (`sys` is
# built in): a file there named like a module it imports must not run.
_PROBE = r"""
import sys; sys.path.pop(0)
import json, os
root = os.path.abspath(os.path.expanduser(sys.argv[1]))
rt = os.path.join(root, "runtime")
have = sorted(d for d in os.listdir(rt) if not d.startswith(".")) if os.path.isdir(rt) else []
ship = sys.argv[2] if len(sys.argv) > 2 else ""
shipped = bool(ship) and ship not in have and sys.version_info >= (3, 9)  # an older one is refused after
if shipped:
    import tarfile, tempfile, shutil
    dest = os.path.join(rt, ship)
    os.makedirs(rt, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".install-", dir=rt)
    with tarfile.open(fileobj=getattr(sys.stdin, "buffer", sys.stdin), mode="r|gz") as tar:
        for m in tar:
            if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                sys.exit("refusing runtime member %r" % m.name)
            tar.extract(m, tmp)
    try:
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp)
        if not os.path.isdir(dest):
            raise
elif ship:
    getattr(sys.stdin, "buffer", sys.stdin).read()  # offered, not needed: read, so the sender is never cut off
print(json.dumps({"python": list(sys.version_info[:3]), "root": root, "runtimes": have,
                  "executable": sys.executable, "shipped": shipped}))
"""


@dataclass(frozen=True)
class HostInfo:
    python: str            # the command that runs it
    executable: str        # its absolute path on the host (what `python` in run: becomes)
    version: tuple
    root: str              # absolute tether root
    runtime_dir: str
    shipped: bool          # the runtime was sent this time (first use of this version)


def _package_files():
    for pkg in (agent, workloads, tether):
        top = Path(pkg.__file__).parent
        for p in sorted(top.rglob("*.py")):
            yield p, f"{top.name}/{p.relative_to(top).as_posix()}"


def local_runtime_dir() -> str:
    """Where this laptop's own agent package lives, for running an agent verb here."""
    return str(Path(agent.__file__).resolve().parent.parent)


def runtime_version() -> str:
    """tether's version plus a hash of the shipped sources, so an edited agent ships again."""
    h = hashlib.sha256()
    for p, name in _package_files():
        h.update(name.encode())
        h.update(p.read_bytes())
    return f"{__version__}-{h.hexdigest()[:12]}"


def runtime_tarball() -> bytes:
    """gzip's own default level: 36 -> 17 ms to build (a first launch waits for it) for 1% more bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for p, name in _package_files():
            info = tarfile.TarInfo(name)
            data = p.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def prepare_host(host: Host, python: str, root: str, ship: bool = True) -> HostInfo:
    """Probe the host and ship the runtime unless this version is there already, in one call
    (ship=False: then runtime_dir is only usable if shipped is False, i.e. it was there)."""
    rt_version = runtime_version()
    probe = host.run([python, "-c", _PROBE, root] + ([rt_version] if ship else []),
                     input=runtime_tarball() if ship else b"", timeout=300)  # never the terminal as stdin
    if probe.returncode == 127 or (probe.returncode != 0 and b"not found" in probe.stderr):
        raise RemoteError(f"no '{python}' on {host.name}",
                          "install Python 3.9+ there, or name it with host.python in the spec")
    probe.check("probing the host's Python (and installing the agent runtime)")
    info = json.loads(probe.stdout)
    version = tuple(info["python"])
    if version[:2] < MIN_PYTHON:
        raise RemoteError(f"{python} on {host.name} is Python {'.'.join(map(str, version))}",
                          "tether's agent needs Python 3.9+; set host.python to a newer one")
    return HostInfo(python=python, executable=str(info.get("executable") or python), version=version,
                    root=info["root"], runtime_dir=f"{info['root']}/runtime/{rt_version}",
                    shipped=rt_version not in info["runtimes"])
