"""An SSH host through the system's OpenSSH `ssh`, one connection per host shared by every
tether command (ControlMaster, kept TETHER_SSH_PERSIST_S after the last use, 300 by default):
a status is then one command over an open connection, not a handshake. OpenSSH also brings
what users set in ~/.ssh/config (ProxyJump, IdentitiesOnly, agent forwarding, ...). Host keys
are checked against tether's own known_hosts under the endpoint's name, trusted on first
use, a changed one refused, on every path, the shared connection's included."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Mapping, Optional, Sequence

from launcher.errors import AuthError, HostKeyChangedError, RemoteError, UnreachableError
from launcher.home import private_folder
from launcher.transport import ciphers, prestarted
from launcher.transport.spawned import Spawned
from launcher.transport.host import Completed, ProcessStream, Stream, child_environ, command_label, user_command

if TYPE_CHECKING:  # not loaded at run time: `tether status` builds this before pydantic loads (early.py)
    from provisioning.base import SshEndpoint

PERSIST_ENV = "TETHER_SSH_PERSIST_S"


def shared_control_path(data: Path) -> Path:
    """The shared connections' folder of the tether home `data` (control_dir makes it)."""
    key = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tether-ssh-{os.getuid()}-{key}"


def control_dir(data: Path) -> Path:
    """Where the shared connections' sockets live: short (a socket path has ~100 bytes), one
    folder per tether home and user, private."""
    folder = shared_control_path(data)
    folder.mkdir(mode=0o700, exist_ok=True)
    if not private_folder(str(folder)):
        # Made by someone else (a shared /tmp): its sockets cannot be trusted, ours not put there.
        # A folder of this command's own instead: nothing is shared, nothing is spoofed.
        return Path(tempfile.mkdtemp(prefix=f"{OWN_PREFIX}{os.getuid()}-"))
    return folder


OWN_PREFIX = "tether-own-ssh-"   # control_dir's folder for one command (the shared one was not safe)


def is_shared(control: Path) -> bool:
    """The folder is the one every command shares (not a command's own: nothing kept there
    would be found again)."""
    return not control.name.startswith(OWN_PREFIX)


def openssh_argv(ep: SshEndpoint, known_hosts: Path, ssh_config: Optional[Path], *, connect_timeout_s: float,
                 persist_s: int = 0, control: Optional[Path] = None, trust_new: bool = True,
                 fresh: bool = False) -> List[str]:
    """`ssh` with tether's host-key rules and this endpoint's settings; -F the user's config, so
    what it says of the host applies, with what tether must decide given on top."""
    config = ssh_config if ssh_config and ssh_config.is_file() else None
    argv = ["ssh", "-F", str(config or "/dev/null"),
            "-p", str(ep.port), "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"StrictHostKeyChecking={'accept-new' if trust_new else 'yes'}",
            "-o", f"HostKeyAlias={ep.known_hosts_name}", "-o", "HashKnownHosts=no", "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, int(connect_timeout_s))}",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"]
    cipher_order = ciphers.preferred(config, cache=control if control is not None and is_shared(control) else None)
    if cipher_order:
        argv += ["-o", f"Ciphers={cipher_order}"]
    if ep.user:
        argv += ["-l", ep.user]
    if ep.identity_file:
        argv += ["-i", str(Path(ep.identity_file).expanduser())]
    if ep.proxy_command:
        argv += ["-o", f"ProxyCommand={ep.proxy_command}"]
    if ep.proxy_jump:
        argv += ["-J", ep.proxy_jump]
    if control is not None and persist_s > 0:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C", "-o", f"ControlPersist={persist_s}"]
    elif fresh:  # a connection of its own: not even one the user's ssh config shares
        argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    return argv


# What OpenSSH says (exit status 255) when the connection itself failed, in words; and
# whether waiting may help (before the command ran: safe to try again).
_CONNECT = [
    (re.compile(r"Connection refused"), "connection refused (nothing listens on that port)", True),
    (re.compile(r"[Cc]onnection timed out|Operation timed out"), "no answer", True),
    (re.compile(r"Could not resolve hostname"), "the name does not resolve (check the address)", False),
    (re.compile(r"No route to host|Network is unreachable"), "no route to the host", True),
    (re.compile(r"kex_exchange_identification|Connection closed by .* port|Connection reset"),
     "the connection closed before SSH started (is it an SSH server?)", True),
]


class OpenSshHost:
    def __init__(self, endpoint: SshEndpoint, known_hosts: Path, *, ssh_config: Optional[Path] = None,
                 control: Optional[Path] = None, connect_timeout_s: float = 15.0, retry_s: float = 60.0,
                 environ: Mapping[str, str] = os.environ, fresh: bool = False) -> None:
        """fresh: every command on a connection of its own (control is then None)."""
        self.endpoint, self.known_hosts, self.ssh_config = endpoint, known_hosts, ssh_config
        self.name = str(endpoint)
        self.connect_timeout_s, self.retry_s = connect_timeout_s, retry_s
        self.persist_s = int(environ.get(PERSIST_ENV, "300") or 0)
        self.control = control
        self.fresh = fresh
        self.on_retry: Optional[Callable[[str], None]] = None  # told of each retry (launch shows them)

    @property
    def destination(self) -> str:
        ep = self.endpoint
        return ep.config_host or ep.host

    def openssh_argv(self, trust_new: bool = True) -> List[str]:
        return openssh_argv(self.endpoint, self.known_hosts, self.ssh_config, connect_timeout_s=self.connect_timeout_s,
                            persist_s=self.persist_s, control=self.control, trust_new=trust_new, fresh=self.fresh)

    @property
    def same_lines_next_time(self) -> bool:
        """The next tether command builds the same command lines: not through a control folder
        of this command's own (what early.py remembers from here would never match)."""
        return self.control is None or self.persist_s <= 0 or is_shared(self.control)

    def command_line(self, argv: Sequence[str]) -> List[str]:
        """The local `ssh` command line that runs argv there."""
        return self.openssh_argv() + ["--", self.destination, shlex.join(argv)]

    _argv = command_line

    def run(self, argv: Sequence[str], *, input: Optional[bytes] = None, timeout: float = 120) -> Completed:
        deadline, delay = time.monotonic() + self.retry_s, 0.5
        early = prestarted.take(self.command_line(argv))  # tether status began it before loading
        if early is not None and not prestarted.is_process(early):  # asked of a keeper instead
            answer = early.answer()  # a few seconds at most (transport/keeper.py)
            if answer is not None:
                return Completed(argv, 0, answer, b"")
            early = None  # no answer there: the command itself, as always
        while True:
            try:
                if early is not None:
                    p, early = _finish(early, input, timeout), None
                else:
                    p = subprocess.run(self._argv(argv), input=input, capture_output=True, timeout=timeout,
                                       env=child_environ())
            except subprocess.TimeoutExpired:
                raise RemoteError(f"{command_label(argv)} did not finish within {timeout:.0f}s on {self.name}") from None
            if p.returncode != 255:
                return Completed(argv, p.returncode, p.stdout, p.stderr)
            cause, transient = self._failure(p.stderr.decode(errors="replace"))
            left = deadline - time.monotonic()
            if not transient or left <= 0:
                tried = f"; tether retried for {self.retry_s:.0f}s" if transient and self.retry_s else ""
                raise UnreachableError(f"cannot reach {self.endpoint.host} port {self.endpoint.port}: {cause}",
                                       f"check the address and that sshd runs there{tried}")
            wait = min(delay, left)
            if self.on_retry is not None:
                self.on_retry(f"{self.endpoint.host} port {self.endpoint.port}: {cause}; retrying in {wait:.0f}s "
                              f"({left:.0f}s left)")
            time.sleep(wait)
            delay = min(delay * 2, 10.0)

    def _failure(self, stderr: str):
        """(why, may waiting help) for an exit status 255; raises at once for a refused key."""
        name = self.endpoint.known_hosts_name
        if "IDENTIFICATION HAS CHANGED" in stderr or "Host key verification failed" in stderr:
            raise HostKeyChangedError(
                f"host key for {name} has changed since tether first trusted it",
                "if the host was rebuilt, forget the old key with "
                f"`ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(self.known_hosts))}` and retry")
        if "Permission denied" in stderr:
            raise AuthError(f"authentication to {self.name} failed",
                            "check host.identity_file, your ssh-agent, or ~/.ssh/config")
        for pattern, words, transient in _CONNECT:
            if pattern.search(stderr):
                return words, transient
        last = [line for line in stderr.strip().splitlines() if line.strip()]
        return (f"the connection was lost ({last[-1][:200]})" if last else "the connection was lost"), False

    def stream(self, argv: Sequence[str]) -> Stream:
        full = self._argv(argv)
        early = prestarted.take(full)  # a launch's session, begun before tether loaded
        if early is not None and (not prestarted.is_process(early) or early.stdin is None
                                  or early.poll() is not None):
            early.kill()     # not one to talk to (gone already: start it afresh)
            early.wait()
            early = None
        return ProcessStream(full, started=early)

    def shell_argv(self, remote_argv: Optional[Sequence[str]], cwd: str) -> List[str]:
        """OpenSSH for `tether ssh`: the key must already be known (it was, at launch)."""
        argv = self.openssh_argv(trust_new=False)
        if not remote_argv:
            argv.append("-t")
        return argv + ["--", self.destination, f"cd {shlex.quote(cwd)} && {user_command(remote_argv)}"]

    def close(self) -> None:
        """The shared connection stays for the next command (ControlPersist ends it)."""


def _finish(proc: Spawned, input: Optional[bytes], timeout: float) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def close_shared(control: Path) -> None:
    """Ends every shared connection under control (tests do this; a user need not)."""
    for sock in control.glob("*"):
        if sock.name.startswith("k-") or not sock.is_socket():  # a status keeper's (transport/keeper.py): it
            continue                                               # ends with the connection; ciphers.py's list
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, timeout=10)
