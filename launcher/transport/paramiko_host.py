"""An SSH host through paramiko: the fallback where the system has no OpenSSH `ssh`. One
connection, opened lazily, reopened with backoff when it drops; host keys through tether's
TrustOnFirstUse policy."""

from __future__ import annotations

import errno
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import paramiko

from provisioning.base import SshEndpoint

from launcher.errors import AuthError, HostKeyChangedError, RemoteError, UnreachableError
from launcher.transport.host import Completed, Stream, command_label, user_command
from launcher.transport.hostkeys import TrustOnFirstUse


class _SshStream:
    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan
        self.stdin = chan.makefile_stdin("wb")
        self.stdout = chan.makefile("rb")
        self._err = b""
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        f = self.chan.makefile_stderr("rb")
        self._err = f.read()

    def read_some(self) -> bytes:
        """Straight from the channel: a line printed on the host is here as soon as it arrives
        (the file object's read would wait for a whole block)."""
        return self.chan.recv(65536)

    def close_stdin(self) -> None:
        self.stdin.flush()
        self.chan.shutdown_write()

    def wait(self) -> int:
        if self.chan.closed and not self.chan.exit_status_ready():
            return -1  # killed by us: no status will ever come
        rc = self.chan.recv_exit_status()
        self._t.join(5)
        return rc

    def stderr_text(self) -> str:
        return self._err.decode(errors="replace")

    def kill(self) -> None:
        self.chan.close()


class SshHost:
    """One paramiko connection, opened lazily, reopened with backoff when it drops."""

    def __init__(self, endpoint: SshEndpoint, known_hosts: Path, *,
                 connect_timeout_s: float = 15.0, retry_s: float = 60.0) -> None:
        self.endpoint = endpoint
        self.name = str(endpoint)
        self.known_hosts = known_hosts
        self.connect_timeout_s, self.retry_s = connect_timeout_s, retry_s
        self._client: Optional[paramiko.SSHClient] = None
        self.on_retry: Optional[Callable[[str], None]] = None  # told of each retry (launch shows them)

    def _connected(self) -> paramiko.Transport:
        if self._client is not None:
            t = self._client.get_transport()
            if t is not None and t.is_active():
                return t
            self.close()
        deadline = time.monotonic() + self.retry_s
        delay = 0.5
        while True:
            try:
                self._client = self._connect_once()
                transport = self._client.get_transport()
                assert transport is not None
                transport.set_keepalive(15)
                return transport
            except (HostKeyChangedError, paramiko.AuthenticationException) as exc:
                self.close()
                if isinstance(exc, HostKeyChangedError):
                    raise
                raise AuthError(f"authentication to {self.name} failed ({exc})",
                                "check host.identity_file, your ssh-agent, or ~/.ssh/config") from None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                self.close()
                cause = connect_failure(exc, self.connect_timeout_s)
                where = f"{self.endpoint.host} port {self.endpoint.port}"
                left = deadline - time.monotonic()
                if left <= 0:
                    tried = f"; tether retried for {self.retry_s:.0f}s" if self.retry_s else ""
                    raise UnreachableError(f"cannot reach {where}: {cause}",
                                           f"check the address and that sshd runs there{tried}") from None
                wait = min(delay, left)
                if self.on_retry is not None:
                    self.on_retry(f"{where}: {cause}; retrying in {wait:.0f}s ({left:.0f}s left)")
                time.sleep(wait)
                delay = min(delay * 2, 10.0)

    def _connect_once(self) -> paramiko.SSHClient:
        ep = self.endpoint
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(TrustOnFirstUse(self.known_hosts, ep.known_hosts_name))
        sock = paramiko.ProxyCommand(ep.proxy_command) if ep.proxy_command else None
        key_filename = str(Path(ep.identity_file).expanduser()) if ep.identity_file else None
        try:
            client.connect(
                ep.host, port=ep.port, username=ep.user, key_filename=key_filename,
                timeout=self.connect_timeout_s, banner_timeout=self.connect_timeout_s,
                auth_timeout=self.connect_timeout_s, sock=sock,
                look_for_keys=key_filename is None, allow_agent=True,
            )
        except BaseException:
            client.close()
            raise
        return client

    def _open(self, argv: Sequence[str]) -> paramiko.Channel:
        command = shlex.join(argv)
        for attempt in (0, 1):  # a connection found dead is reopened once, then it is an error
            transport = self._connected()
            try:
                chan = transport.open_session(timeout=self.connect_timeout_s)
                chan.exec_command(command)
                return chan
            except (paramiko.SSHException, EOFError, OSError):
                self.close()
                if attempt:
                    raise UnreachableError(f"lost the connection to {self.name}",
                                           "check the network and retry") from None
        raise AssertionError("unreachable")

    def run(self, argv: Sequence[str], *, input: Optional[bytes] = None, timeout: float = 120) -> Completed:
        chan = self._open(argv)
        chan.settimeout(timeout)
        if input:
            writer = threading.Thread(target=self._feed, args=(chan, input), daemon=True)
            writer.start()
        else:
            chan.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                got = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if not got:
                    if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    if chan.closed and chan.eof_received:
                        break
                    if time.monotonic() > deadline:
                        raise RemoteError(f"{command_label(argv)} did not finish within {timeout:.0f}s on {self.name}")
                    time.sleep(0.005)
            rc = chan.recv_exit_status()
        except socket.timeout:
            raise RemoteError(f"{command_label(argv)} timed out on {self.name}") from None
        finally:
            chan.close()
        return Completed(argv, rc, bytes(out), bytes(err))

    @staticmethod
    def _feed(chan: paramiko.Channel, data: bytes) -> None:
        try:
            chan.sendall(data)
            chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def stream(self, argv: Sequence[str]) -> Stream:
        return _SshStream(self._open(argv))

    def openssh_argv(self) -> List[str]:
        """OpenSSH's options for this host, checking its key against tether's known_hosts
        (for `tether ssh`, and as rsync's remote shell)."""
        ep = self.endpoint
        argv = ["ssh", "-p", str(ep.port), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={ep.known_hosts_name}"]
        if ep.identity_file:
            argv += ["-i", str(Path(ep.identity_file).expanduser())]
        if ep.proxy_command:
            argv += ["-o", f"ProxyCommand={ep.proxy_command}"]
        return argv

    @property
    def destination(self) -> str:
        ep = self.endpoint
        return f"{ep.user}@{ep.host}" if ep.user else ep.host

    def shell_argv(self, remote_argv: Optional[Sequence[str]], cwd: str) -> List[str]:
        """An OpenSSH command line that checks the key against tether's known_hosts."""
        argv = self.openssh_argv()
        if not remote_argv:
            argv.append("-t")
        return argv + [self.destination, f"cd {shlex.quote(cwd)} && {user_command(remote_argv)}"]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def connect_failure(exc: BaseException, timeout_s: float) -> str:
    """Why a connection failed, in words ("connection refused"), never "[Errno None] ..."."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
        return connect_failure(next(iter(exc.errors.values())), timeout_s)
    if isinstance(exc, socket.gaierror):
        return "the name does not resolve (check the address)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout_s:.0f}s"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route to the host"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, EOFError) or "Error reading SSH protocol banner" in str(exc):
        return "the connection closed before SSH started (is it an SSH server?)"
    text = str(exc).strip()
    return text if text and "Errno None" not in text else type(exc).__name__


