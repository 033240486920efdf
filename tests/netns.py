"""Two "hosts" on one machine, for multi-node tests: two network namespaces on a bridge
(10.77.0.1 and 10.77.0.2; the bridge, 10.77.0.254, is how this "laptop" reaches them; a test
that moves a job to new hosts asks for four: 10.77.0.3 and 10.77.0.4 too), each
with its own real OpenSSH server on port 22 and its own tether root (a private mount: the same
path holds a different folder on each host, as on two machines). Needs root and `ip netns`;
the names are fixed, so a machine-wide lock makes tests take turns."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

from machine_lock import machine_lock
from sshd import SSHD, Sshd

BRIDGE, BRIDGE_IP = "t16br", "10.77.0.254"
NODES = (("t16n0", "t16v0", "10.77.0.1"), ("t16n1", "t16v1", "10.77.0.2"),
         ("t16n2", "t16v2", "10.77.0.3"), ("t16n3", "t16v3", "10.77.0.4"))


def unavailable() -> Optional[str]:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "multi-node tests need root to make network namespaces (CI runs them as root)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()[:200]}"
    return None


def sh(*argv: str, ns: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    done = subprocess.run(full, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: {done.stderr.strip()}")
    return done


@dataclass
class NodeHost:
    """One namespace: its sshd (in a private mount namespace) and its own tether root."""

    ns: str
    ip: str
    sshd: Sshd
    root_dir: Path           # this host's folder, mounted at the shared root path
    proc: Optional[subprocess.Popen] = None

    def ssh_config(self, alias: str) -> str:
        return (f"Host {alias}\n  HostName {self.ip}\n  Port 22\n  User root\n"
                f"  IdentityFile {self.sshd.client_key}\n")

    def pids(self) -> List[int]:
        out = sh("ip", "netns", "pids", self.ns, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]


@dataclass
class TwoHosts:
    dir: Path
    count: int = 2                      # hosts brought up (of NODES)
    root: Path = field(init=False)      # the tether root path, the same on both hosts
    extensions: Optional[Path] = None   # the workloads' TORCH_EXTENSIONS_DIR (the test's own)
    nodes: List[NodeHost] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.dir / "root"

    def up(self) -> "TwoHosts":
        self.down()  # what an interrupted run may have left
        self.root.mkdir(parents=True, exist_ok=True)
        (self.dir / "empty").write_text("")   # masks ~/.bashrc: a host's shell start-up prints nothing
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for ns, veth, ip in NODES[:self.count]:
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", BRIDGE, "up")
            sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
            self.nodes.append(self._start(ns, ip))
        return self

    def _start(self, ns: str, ip: str) -> NodeHost:
        server = Sshd(self.dir / f"sshd-{ns}", port=22).setup()
        conf = server.config()
        conf.write_text(conf.read_text().replace("ListenAddress 127.0.0.1", f"ListenAddress {ip}"))
        node = NodeHost(ns, ip, server, self.dir / f"root-{ns}")
        node.root_dir.mkdir()
        mounts = f"mount --bind {node.root_dir} {self.root} && mount --bind {self.dir / 'empty'} /root/.bashrc"
        node.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"{mounts} && exec {SSHD} -D -e -f {conf}"],
            stdout=subprocess.DEVNULL, stderr=open(server.dir / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((ip, 22), timeout=0.5):
                return node
            if node.proc.poll() is not None:
                raise RuntimeError(f"sshd in {ns} exited: {(server.dir / 'sshd.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"sshd in {ns} did not listen within 10s")

    def ssh_config(self) -> str:
        return "".join(n.ssh_config(f"node{k}") for k, n in enumerate(self.nodes))

    def block(self, k: int, port: int) -> None:
        """A firewall on host k drops TCP to port (nft, in that namespace only)."""
        ns = self.nodes[k].ns
        sh("nft", "add", "table", "inet", "t16", ns=ns)
        sh("nft", "add", "chain", "inet", "t16", "input", "{ type filter hook input priority 0 ; }", ns=ns)
        sh("nft", "add", "rule", "inet", "t16", "input", "tcp", "dport", str(port), "drop", ns=ns)

    def vanish(self, k: int) -> None:
        """Host k is gone: every process on it killed, its network down (its disk stays, for
        the test to look at)."""
        _kill_all(self.nodes[k].ns)
        sh("ip", "link", "set", "eth0", "down", ns=self.nodes[k].ns)

    def job_dir(self, k: int, job: str) -> Path:
        return self.nodes[k].root_dir / "jobs" / job

    def down(self) -> None:
        """Every process in the namespaces killed (sshd, agents, workloads), then the network."""
        for ns, veth, _ in NODES:
            _kill_all(ns)
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "link", "del", veth, check=False)
        for n in self.nodes:
            if n.proc is not None:
                n.proc.wait(10)
        sh("ip", "link", "del", BRIDGE, check=False)
        self.nodes = []


def _kill_all(ns: str) -> None:
    for _ in range(5):  # a process forking as it is killed: look again
        pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


@contextlib.contextmanager
def two_hosts(dir: Path, count: int = 2) -> Iterator[TwoHosts]:
    with machine_lock("netns-t16"):
        net = TwoHosts(dir, count)
        try:
            yield net.up()
        finally:
            net.down()
