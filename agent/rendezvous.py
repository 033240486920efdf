"""One node of a multi-node job: its rendezvous facts (from spec.json's `node`), the variables
the workload gets, and the network interface that reaches the master.

torch's own rendezvous does the joining (torchrun --nnodes/--node_rank/--master_addr/
--master_port); tether only hands each node the facts and checks, before training, that the
master port can be reached (peers.py), so a firewall is reported rather than a hang.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
import subprocess
from dataclasses import dataclass
from typing import Dict, Optional

from .peer_wire import SILENT_S

ADDR = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}")   # an IP or a host name, nothing a shell reads
TOKEN = re.compile(r"[0-9a-f]{0,64}")
IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,15}")


@dataclass(frozen=True)
class NodePlan:
    rank: int
    count: int
    master_addr: str
    master_port: int
    join_timeout_s: float = 120.0    # how long a node waits for the others before the job fails
    token: str = ""                  # the job's own: node 0 answers only agents that know it
    silence_s: float = SILENT_S      # a peer heard nothing from this long has failed (host.node_silence_s)

    @property
    def control_port(self) -> int:
        """tether's own port beside torch's: the agents' probe, abort and restart messages."""
        return self.master_port + 1

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_json(cls, doc: object) -> Optional["NodePlan"]:
        """None for a one-node job; a ValueError naming the field for a bad one."""
        if doc is None:
            return None
        if not isinstance(doc, dict):
            raise ValueError("node: expected an object")
        rank, count, port = doc.get("rank"), doc.get("count"), doc.get("master_port")
        addr = doc.get("master_addr")
        if not (isinstance(count, int) and count >= 1 and isinstance(rank, int) and 0 <= rank < count):
            raise ValueError(f"node: rank {rank!r} of {count!r} nodes is not a node of the job")
        if not (isinstance(port, int) and 1024 <= port < 65535):
            raise ValueError(f"node: master_port {port!r} is not a port from 1024 to 65534")
        if not (isinstance(addr, str) and ADDR.fullmatch(addr)):
            raise ValueError(f"node: master_addr {addr!r} is not an address")
        timeout, token = doc.get("join_timeout_s", 120.0), doc.get("token", "")
        if not (isinstance(token, str) and TOKEN.fullmatch(token)):
            raise ValueError("node: token is not a hex string")
        silence = doc.get("silence_s", SILENT_S)  # absent from an older launcher's spec.json
        if isinstance(silence, bool) or not isinstance(silence, (int, float)) or not 3 <= silence <= 600:
            raise ValueError(f"node: silence_s {str(silence)[:20]!r} is not from 3 to 600 seconds")
        return cls(rank, count, addr, port, float(timeout) if isinstance(timeout, (int, float)) else 120.0, token,
                   float(silence))

    def torchrun_args(self) -> str:
        """What a `run:` script passes to torchrun (static rendezvous on the master)."""
        return shlex.join([f"--nnodes={self.count}", f"--node_rank={self.rank}",
                           f"--master_addr={self.master_addr}", f"--master_port={self.master_port}"])

    def env(self) -> Dict[str, str]:
        """The workload's variables. Without a socket interface gloo binds the address the host
        name resolves to (often 127.0.0.1) and the peer is refused."""
        out = {"TETHER_NODE_RANK": str(self.rank), "TETHER_NUM_NODES": str(self.count),
               "TETHER_MASTER_ADDR": self.master_addr, "TETHER_MASTER_PORT": str(self.master_port),
               "TETHER_TORCHRUN_ARGS": self.torchrun_args()}
        ifname = interface_to(self.master_addr)
        if ifname:
            out.update(GLOO_SOCKET_IFNAME=ifname, NCCL_SOCKET_IFNAME=ifname)
        return out


def _ip(cmd: list) -> str:
    try:
        return subprocess.run(["ip", *cmd], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def interface_to(addr: str) -> Optional[str]:
    """The interface this host reaches addr through; on the master itself (a `local` route,
    which would say `lo`), the interface that holds the address. None where `ip` is missing."""
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(addr))
    except (OSError, ValueError):
        return None
    if ip.is_loopback:
        return None
    route = _ip(["-o", "route", "get", str(ip)]).split()
    dev = route[route.index("dev") + 1] if "dev" in route[:-1] else None
    if route[:1] == ["local"] or dev == "lo":
        dev = _holder_of(str(ip))
    return dev if dev and IFNAME.fullmatch(dev) else None


def _holder_of(ip: str) -> Optional[str]:
    """`ip -o addr`: `3: veth0    inet 10.77.0.1/24 ...`: the interface with that address."""
    for line in _ip(["-o", "addr"]).splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6") and parts[3].split("/")[0] == ip:
            return parts[1].split("@")[0]
    return None


def reach(addr: str, port: int, timeout: float) -> Optional[str]:
    """None when a TCP connection to addr:port opens; else why not, in words."""
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return None
    except socket.timeout:
        return "timed out"
    except OSError as exc:
        return exc.strerror or str(exc)
