"""A real OpenSSH server on 127.0.0.1 for tests: its own host key, client key and config."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sshd_descendants(pid: int) -> list:
    """The sshd processes below pid (one or two per open connection)."""
    children: dict = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"sshd"):
                    found.append(child)
                    todo.append(child)
            except OSError:
                continue
    return found


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def ensure_password_user(name: str, password: str) -> Path:
    """A local account that logs in by password (as a fresh cloud instance does); its home."""
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    home = Path(f"/home/{name}")
    subprocess.run(["rm", "-rf", str(home / ".ssh"), str(home / ".tether")], check=True)
    return home


@dataclass
class Sshd:
    dir: Path
    port: int = field(default_factory=free_port)
    proc: Optional[subprocess.Popen] = None
    password_user: Optional[str] = None   # also accept passwords, and keys from ~/.ssh
    sessions: set = field(default_factory=set)  # per-connection sshd processes seen
    extra_config: str = ""                # sshd_config lines after ours (a later same keyword loses)
    log_level: str = "ERROR"

    @property
    def client_key(self) -> Path:
        return self.dir / "client_ed25519"

    @property
    def host_key(self) -> Path:
        return self.dir / "host_ed25519"

    @property
    def address(self) -> str:
        return f"root@127.0.0.1:{self.port}"

    def setup(self) -> "Sshd":
        self.dir.mkdir(parents=True, exist_ok=True)
        keygen(self.client_key)
        keygen(self.host_key)
        (self.dir / "authorized_keys").write_text((self.dir / "client_ed25519.pub").read_text())
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        return self

    def config(self) -> Path:
        conf = self.dir / "sshd_config"
        conf.write_text(f"""
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.dir}/authorized_keys .ssh/authorized_keys
PasswordAuthentication {"yes" if self.password_user else "no"}
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
StrictModes no
UsePAM no
LogLevel {self.log_level}
MaxSessions 50
MaxStartups 50
""" + self.extra_config)
        return conf

    def start(self) -> "Sshd":
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config())],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10s")

    def stop(self) -> None:
        """Stops the listener. Sessions already open live on in their own sshd processes (which
        kill_sessions can still find)."""
        if self.proc and self.proc.poll() is None:
            self.sessions |= set(_sshd_descendants(self.proc.pid))
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill_sessions(self) -> None:
        """Drops every open connection to this server (its per-connection sshd processes, the
        listener's children); the listener, if it runs, goes on accepting new ones."""
        if self.proc and self.proc.poll() is None:
            self.sessions |= set(_sshd_descendants(self.proc.pid))
        for pid in self.sessions:
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd"):  # not a reused pid
                    os.kill(pid, 9)
            except (OSError, ProcessLookupError):
                continue
        self.sessions = set()

    def restart(self, new_host_key: bool = False) -> "Sshd":
        self.stop()
        if new_host_key:
            self.host_key.unlink()
            Path(str(self.host_key) + ".pub").unlink()
            keygen(self.host_key)
        return self.start()

    def ssh_config(self, alias: str) -> str:
        return (f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n  User root\n"
                f"  IdentityFile {self.client_key}\n")
