"""The harness of bench/speed_bench.py: its own sshd and tether home (Bench), timing a command
(run_timed), and the A B A B pairing of tether against the raw tool (paired -> Row)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from delay_proxy import DelayProxy  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_SPEED_ROUNDS", "5"))
TREE_FILES = int(os.environ.get("BENCH_TREE_FILES", "10000"))
BIG_MB = int(os.environ.get("BENCH_PULL_MB", "512"))
# The host's Python by its path: on this machine `python3` is a pyenv shim (a shell script
# costing 0.2-0.3 s a call), which a GPU host's python3 is not.
HOST_PYTHON = os.environ.get("BENCH_HOST_PYTHON") or shutil.which("python3", path="/usr/bin:/bin") or "python3"


@dataclass
class Row:
    what: str
    ours: List[float]
    peer: List[float]
    peer_label: str
    goal: float                  # ours/peer at most this (or, for throughput, time ratio at most 1/goal)
    goal_text: str
    note: str = ""
    ratios: List[float] = field(default_factory=list)
    unit: str = "s"

    def line(self) -> str:
        r = statistics.median(self.ratios)
        met = "met" if r <= self.goal else "not met"
        return (f"| {self.what} | {spread(self.ours, self.unit)} | {self.peer_label}: {spread(self.peer, self.unit)} | "
                f"{r:.2f} ({min(self.ratios):.2f}-{max(self.ratios):.2f}) | {self.goal_text} | {met} |")


def spread(xs: List[float], unit: str = "s") -> str:
    k = 1000.0 if unit == "ms" else 1.0
    return f"{k * statistics.median(xs):.2f} {unit} ({k * min(xs):.2f}-{k * max(xs):.2f})"


def run_timed(argv: List[str], env: Dict[str, str], cwd: Optional[Path] = None, check: bool = True) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cwd)
    took = time.monotonic() - began
    if check and done.returncode != 0:
        raise RuntimeError(f"{argv[:5]} failed ({done.returncode}): {done.stdout[-400:]} {done.stderr[-400:]}")
    return took


def paired(what: str, ours: Callable[[], float], peer: Callable[[], float], peer_label: str, goal: float,
           goal_text: str, rounds: int = ROUNDS, before: Optional[Callable[[], None]] = None) -> Row:
    """A B A B ...: one warm-up pair, then rounds counted."""
    row = Row(what, [], [], peer_label, goal, goal_text)
    for i in range(rounds + 1):
        if before:
            before()
        a = ours()
        if before:
            before()
        b = peer()
        if i:
            row.ours.append(a)
            row.peer.append(b)
            row.ratios.append(a / b)
    print(f"  {what}: {spread(row.ours)} vs {spread(row.peer)}", flush=True)
    return row


def compile_sources() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(REPO / p) for p in ("launcher", "agent",
                    "provisioning", "workloads"))], check=True, capture_output=True)


def installed_tether(tmp: Path) -> Path:
    """`tether` as a user's `pip install` leaves it: a console script in a venv whose
    site-packages holds tether and its dependencies. The checkout's own venv has tether as an
    editable install, whose import hook (pathlib, urllib and more) costs every command 15 ms
    at start; here tether's folder and the dependencies are plain path entries instead."""
    import sysconfig

    venv = tmp / "tether-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "tether.pth").write_text(f"{REPO}\n{sysconfig.get_paths()['purelib']}\n")
    script = venv / "bin" / "tether"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom launcher.entry import main\n\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return script


# A launch's host session (`<python> -c <boot> <root>/runtime/<version> launch ROOT PROJECT`,
# agent/protocol.py's agent_argv) and the laptop's ssh that carries it: both end once the host
# has done what it does after the launch returned.
LAUNCH_SESSION = "/runtime/[^ ]+ launch "


class Bench:
    def __init__(self, tmp: Path) -> None:
        from sshd import Sshd

        self.tmp = tmp
        self.server = Sshd(tmp / "sshd").setup().start()
        self.proxy = DelayProxy(self.server.port, delay_s=0.025)   # 50 ms round trip
        self.conf = tmp / "ssh_config"
        self.conf.write_text(self.server.ssh_config("benchhost") + self.server.ssh_config("farhost").replace(
            f"Port {self.server.port}", f"Port {self.proxy.port}"))
        self.home = tmp / "home"
        self.env = dict(os.environ, TETHER_HOME=str(self.home), TETHER_SSH_CONFIG=str(self.conf),
                        COLUMNS="120")
        # tether as pip installs it: with its bytecode. This machine sets PYTHONDONTWRITEBYTECODE,
        # under which every command compiled tether's sources again (50-60 ms a status read).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        compile_sources()
        self.bin = installed_tether(tmp)
        self.python = str(self.bin.parent / "python")
        self.root = tmp / "root"
        self.control = tmp / "peer-ctl"
        self.ssh = ["ssh", "-F", str(self.conf), "-o", f"UserKnownHostsFile={tmp / 'peer_known_hosts'}",
                    "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes"]
        self.helpers: List[subprocess.Popen] = []

    def settle(self) -> None:
        """Before a measured run: tether's host side of the last launch has finished what it
        does after the launch returned (the job's code snapshot; the hash check of code sent
        by rsync), and the disk has written back what either tool wrote, so neither tool's
        run pays for the other's (one core each, one disk)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and subprocess.run(
                ["pgrep", "-f", "--", LAUNCH_SESSION], capture_output=True).returncode == 0:
            time.sleep(0.05)
        subprocess.run(["sync"], check=False)

    def tether(self, *args: str, env: Optional[Dict[str, str]] = None) -> List[str]:
        return [str(self.bin), *args]

    def run_tether(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run(self.tether(*args), env={**self.env, **extra}, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"tether {args} failed: {done.stdout[-600:]} {done.stderr[-600:]}")
        return done

    def launch(self, workdir: Path, host: str = "benchhost", root: Optional[Path] = None) -> str:
        out = self.run_tether("launch", str(workdir / "job.yaml")).stdout
        return next(line.split()[2] for line in out.splitlines() if line.startswith("launched job "))

    def project(self, workdir: Path, run: str, host: str = "benchhost", root: Optional[Path] = None,
                name: str = "bench", extra: str = "") -> Path:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "job.yaml").write_text(
            f"name: {name}\nhost: {{provider: ssh, address: {host}, root: {root or self.root}, python: {HOST_PYTHON}}}\n"
            f"run: {run}\n{extra}")
        return workdir

    def wait_state(self, job: str, states=("SUCCEEDED", "FAILED", "STOPPED"), timeout: float = 300) -> None:
        import json
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = json.loads(self.run_tether("status", job, "--json").stdout)
            if doc.get("state") in states:
                return
            time.sleep(0.5)
        raise RuntimeError(f"job {job} did not reach {states}")

    def close(self) -> None:
        """Every job still running is stopped, then the connections and servers go."""
        import json

        from launcher.transport.openssh import close_shared, control_dir
        listed = subprocess.run(self.tether("jobs", "--json"), env=self.env, capture_output=True, text=True)
        try:
            live = [j["id"] for j in json.loads(listed.stdout) if j.get("state") in ("PENDING", "SETUP", "RUNNING")]
        except (ValueError, KeyError, TypeError):
            live = []
        for job in live:
            subprocess.run(self.tether("stop", job), env=self.env, capture_output=True)
        for p in self.helpers:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(self.ssh + ["-o", f"ControlPath={self.control}", "-O", "exit", "benchhost"],
                       capture_output=True)
        control = control_dir(self.home)
        close_shared(control)  # its status keepers end with the connections they used
        self.proxy.close()
        self.server.stop()
        self.server.kill_sessions()
        subprocess.run(["pkill", "-f", f"launcher.transport.keeper .*{self.tmp}"], check=False)
        time.sleep(0.5)
        shutil.rmtree(control, ignore_errors=True)  # the sockets' folder in /tmp
