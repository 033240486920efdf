"""Where users wait: `tether status`, `jobs`, `launch`, `pull` and `logs -f`, each side by side
with the raw tool doing the same over the same OpenSSH, in one run, to a real sshd on
127.0.0.1 (and through a 50 ms-latency proxy for pull). Each pair runs A B A B ...; a ratio
is taken pair by pair and the median quoted, with min and max, so drift of a shared machine
falls on both sides.

`python bench/speed_bench.py` runs this section alone and splices it into RESULTS.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from results import splice  # noqa: E402
from speed_harness import BIG_MB, ROUNDS, TREE_FILES, Bench, Row, paired, run_timed, spread  # noqa: E402

TITLE = "## Where users wait: tether against OpenSSH and rsync"


def status_rows(b: Bench) -> List[Row]:
    work = b.project(b.tmp / "status-work", "python3 -c 'import time; time.sleep(3600)'", name="sleeper",
                     extra="heartbeat: {every_s: 1}\n")
    job = b.launch(work)
    time.sleep(2)
    heartbeat = str(b.root / "jobs" / job / "heartbeat.json")
    fresh_env = {**b.env, "TETHER_SSH_PERSIST_S": "0"}   # no shared connection: a handshake each time
    cold = paired("status of one running job, no connection open",
                  lambda: run_timed(b.tether("status", job), fresh_env),
                  lambda: run_timed(b.ssh + ["-o", "ControlPath=none", "benchhost", "cat", heartbeat], b.env),
                  "`ssh host cat heartbeat.json`", 1.0, "<= 1.0x")
    subprocess.run(b.ssh + ["-o", "ControlMaster=yes", "-o", f"ControlPath={b.control}", "-o", "ControlPersist=600",
                            "-N", "-f", "benchhost"], check=True)
    _keeper_up(b, job)
    warm = paired("status of one running job, connection open (tether: its shared connection and status keeper)",
                  lambda: run_timed(b.tether("status", job), b.env),
                  lambda: run_timed(b.ssh + ["-o", f"ControlPath={b.control}", "benchhost", "cat", heartbeat], b.env),
                  "the same `ssh` over a ControlMaster", 1.5, "<= 1.5x")
    b.run_tether("stop", job)
    return [cold, warm]


def _keeper_up(b: Bench, job: str) -> None:
    """A first status read, then its keeper listening (launcher/transport/keeper.py), as it is
    for a user's second read within TETHER_SSH_PERSIST_S."""
    from launcher.transport.keeper import alive
    from launcher.transport.openssh import control_dir

    b.run_tether("status", job)
    deadline = time.monotonic() + 30
    while not [p for p in control_dir(b.home).glob("k-*") if alive(str(p))]:
        if time.monotonic() > deadline:
            raise RuntimeError("no status keeper after a status read")
        time.sleep(0.1)


def jobs_rows(b: Bench) -> List[Row]:
    """20 running jobs on 5 hosts; then the fifth host's sshd is frozen (SIGSTOP: it accepts
    TCP and never speaks). Running jobs, so every host is asked."""
    from sshd import Sshd

    from launcher.transport.openssh import close_shared, control_dir

    servers = [b.server] + [Sshd(b.tmp / f"sshd-{i}").setup().start() for i in range(1, 5)]
    conf = b.conf.read_text() + "".join(s.ssh_config(f"host{i}") for i, s in enumerate(servers[1:], 1))
    b.conf.write_text(conf)
    jobs = []
    dead = servers[-1]
    try:
        for h in ("benchhost", "host1", "host2", "host3", "host4"):
            for j in range(4):
                work = b.project(b.tmp / f"jobs-{h}-{j}", "sleep 600", host=h, root=b.tmp / f"root-{h}",
                                 name=f"j{h}{j}")
                yaml = (work / "job.yaml").read_text().replace("root:", "connect_timeout_s: 3, root:")
                (work / "job.yaml").write_text(yaml)
                jobs.append(b.launch(work))
        close_shared(control_dir(b.home))
        dead.kill_sessions()
        os.kill(dead.proc.pid, signal.SIGSTOP)
        return [paired("`tether jobs`, 20 running jobs on 5 hosts, one frozen (connect timeout 3 s)",
                       lambda: run_timed(b.tether("jobs"), b.env),
                       lambda: run_timed(b.tether("status", jobs[-1]), b.env, check=False),  # exit 3: unreachable
                       "the slowest host's `tether status` (the frozen one)", 1.3, "<= 1.3x", rounds=3)]
    finally:
        if dead.proc is not None:
            os.kill(dead.proc.pid, signal.SIGCONT)
        for job in jobs:
            subprocess.run(b.tether("stop", job), env=b.env, capture_output=True)
        for s in servers[1:]:
            s.stop()
            s.kill_sessions()


def make_tree(work: Path, files: int) -> None:
    for i in range(files):
        d = work / "src" / f"pkg{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i % 100:03d}.py").write_text(f"# module {i}\n" + "x = 1\n" * (20 + i % 200))


def launch_rows(b: Bench) -> List[Row]:
    work = b.project(b.tmp / "tree", "\"true\"", name="tree")
    make_tree(work, TREE_FILES)
    peer_dest = b.tmp / "rsync-dest"
    rsync = ["rsync", "-az", "-e", " ".join(b.ssh), f"{work}/", f"benchhost:{peer_dest}/"]
    roots = iter(range(10 ** 6))

    def first_ours() -> float:
        root = b.tmp / f"tree-root-{next(roots)}"
        (work / "job.yaml").write_text(re.sub(r"root: [^}]*}", f"root: {root}}}", (work / "job.yaml").read_text()))
        return run_timed(b.tether("launch", str(work / "job.yaml")), b.env)

    def first_peer() -> float:
        shutil.rmtree(peer_dest, ignore_errors=True)
        return run_timed(rsync, b.env)

    rows = [paired(f"first launch of a {TREE_FILES:,}-file workdir", first_ours, first_peer, "`rsync -az`",
                   1.3, "<= 1.3x", rounds=3, before=b.settle)]
    launch = lambda: run_timed(b.tether("launch", str(work / "job.yaml")), b.env)  # noqa: E731
    rows.append(paired("launch, nothing changed", launch, lambda: run_timed(rsync, b.env), "`rsync -az` no-op",
                       1.5, "<= 1.5x", before=b.settle))
    edits = iter(range(10 ** 6))

    def edit() -> None:
        b.settle()
        with open(work / "src" / "pkg050" / "mod050.py", "a") as f:
            f.write(f"y = {next(edits)}\n")

    rows.append(paired("launch after a one-file edit", launch, lambda: run_timed(rsync, b.env), "`rsync -az`",
                       1.5, "<= 1.5x", before=edit))
    rows[-1].note = _bytes_after_edit(b, work, edit) + "\n- " + _launch_profile(b, work)
    return rows


def _launch_profile(b: Bench, work: Path) -> str:
    """Where a no-change launch's time goes (bench/launch_profile.py), medians of 3."""
    import json
    runs = []
    for _ in range(3):
        done = subprocess.run([b.python, str(HERE / "launch_profile.py"), str(work / "job.yaml")], env=b.env,
                              capture_output=True, text=True)
        line = next(x for x in done.stderr.splitlines() if x.startswith("PHASES "))
        runs.append(json.loads(line[len("PHASES "):]))
    names = [name for name, _ in runs[0]]
    med = {n: statistics.median(dict(r).get(n, 0.0) for r in runs) for n in names}
    return ("where a no-change launch's time goes now (medians of 3): "
            + "; ".join(f"{n} {med[n]:.2f} s" for n in names))


def _bytes_after_edit(b: Bench, work: Path, edit: Callable[[], None]) -> str:
    """Bytes on the wire (both ways, SSH's included) for one edit, through the counting proxy."""
    yaml = (work / "job.yaml").read_text()
    (work / "job.yaml").write_text(yaml.replace("address: benchhost", "address: farhost"))
    dest = b.tmp / "rsync-far"
    rsync = ["rsync", "-az", "-e", " ".join(b.ssh), f"{work}/", f"farhost:{dest}/"]
    try:
        b.proxy.delay_s = 0.0
        run_timed(b.tether("launch", str(work / "job.yaml")), b.env)
        run_timed(rsync, b.env)
        edit()
        b.proxy.reset_counts()
        run_timed(b.tether("launch", str(work / "job.yaml")), {**b.env, "TETHER_SSH_PERSIST_S": "0"})
        ours = b.proxy.sent_up + b.proxy.sent_down
        b.proxy.reset_counts()
        run_timed(rsync, b.env)
        peer = b.proxy.sent_up + b.proxy.sent_down
    finally:
        (work / "job.yaml").write_text(yaml)
        b.proxy.delay_s = 0.025
    return (f"bytes on the wire for the one-file edit, handshake included: tether {ours:,}, rsync {peer:,} "
            f"({ours / peer:.2f}x; goal <= 1.1x: {'met' if ours <= 1.1 * peer else 'not met'})")


def pull_rows(b: Bench) -> List[Row]:
    big = BIG_MB
    script = ("import os\nfrom agent import progress\nout = progress.output_dir()\n"
              f"with open(os.path.join(out, 'model.bin'), 'wb') as f:\n"
              f"    for _ in range({big}): f.write(os.urandom(1 << 20))\n"
              "os.makedirs(os.path.join(out, 'ckpt'), exist_ok=True)\n"
              "for i in range(50):\n"
              "    with open(os.path.join(out, 'ckpt', 'shard-%02d.bin' % i), 'wb') as f: f.write(os.urandom(4 << 20))\n")
    rows = []
    for host, label in (("benchhost", ""), ("farhost", ", 50 ms round trip")):
        work = b.project(b.tmp / f"pull-work-{host}", "python3 make.py", host=host, name=f"pull{host}")
        (work / "make.py").write_text(script)
        job = b.launch(work)
        b.wait_state(job)
        outputs = b.root / "jobs" / job / "outputs"
        dests = iter(range(10 ** 6))

        def fresh() -> Path:
            d = b.tmp / f"pulled-{next(dests)}"
            return d

        def ours(path: str) -> float:
            return run_timed(b.tether("pull", job, "--to", str(fresh()), "--path", path), b.env)

        def peer(path: str, ssh_options: tuple = ()) -> float:
            d = fresh()
            d.mkdir()
            ssh = " ".join(b.ssh + list(ssh_options))
            return run_timed(["rsync", "-aW", "-e", ssh, f"{host}:{outputs / path}", f"{d}/"], b.env)

        def scp(path: str) -> float:
            d = fresh()
            d.mkdir()
            return run_timed(["scp", "-q", "-O", "-F", str(b.conf), "-o", f"UserKnownHostsFile={b.tmp / 'peer_known_hosts'}",
                         "-o", "StrictHostKeyChecking=accept-new", "-r", f"{host}:{outputs / path}", f"{d}/"], b.env)

        def clean() -> None:
            for d in b.tmp.glob("pulled-*"):
                shutil.rmtree(d, ignore_errors=True)

        rounds = 3
        rows.append(paired(f"pull of one {big} MiB file{label}", lambda: ours("outputs/model.bin"),
                           lambda: peer("model.bin"), "`rsync -W`", 1 / 0.95, ">= 0.95x throughput",
                           rounds=rounds, before=clean))
        if not label:
            rows[-1].note = _same_cipher_note(lambda: ours("outputs/model.bin"),
                                              lambda: peer("model.bin", ("-c", AES_GCM)), clean, big)
            s = paired(f"pull of one {big} MiB file (against scp)", lambda: ours("outputs/model.bin"),
                       lambda: scp("model.bin"), "`scp`", 1 / 0.95, ">= 0.95x throughput", rounds=rounds,
                       before=clean)
            rows.append(s)
        rows.append(paired(f"pull of a 50-file checkpoint folder (200 MiB){label}", lambda: ours("outputs/ckpt"),
                           lambda: peer("ckpt"), "`rsync -W`", 1 / 0.95, ">= 0.95x throughput",
                           rounds=rounds, before=clean))
        clean()
    return rows


AES_GCM = "aes128-gcm@openssh.com"


def _same_cipher_note(ours: Callable[[], float], peer: Callable[[], float], clean: Callable[[], None], big: int) -> str:
    """tether's ssh asks for AES-GCM first where the laptop has AES instructions
    (launcher/transport/ciphers.py); the peers above use OpenSSH's order. The same pull against
    rsync given that cipher too, so the table says how much of the pull's figure is the cipher."""
    from launcher.transport.ciphers import has_aes_instructions

    if not has_aes_instructions():
        return "tether's ssh used OpenSSH's cipher order here (no AES instructions), as the peers did"
    row = paired(f"pull of one {big} MiB file, rsync with tether's cipher", ours, peer, "rsync", 1.0, "", rounds=3,
                 before=clean)
    return (f"the cipher: tether's ssh lists AES-GCM first where the laptop has AES instructions (this one has; "
            f"launcher/transport/ciphers.py), while rsync and scp above use OpenSSH's order (chacha20-poly1305 "
            f"first). Given the same cipher (`-e 'ssh -c {AES_GCM}'`), `rsync -W` of the {big} MiB file took "
            f"{spread(row.peer)} against tether's {spread(row.ours)}: ratio {statistics.median(row.ratios):.2f} "
            f"({min(row.ratios):.2f}-{max(row.ratios):.2f})")


def log_rows(b: Bench) -> List[Row]:
    """A print on the host, timed to the moment it is on the laptop: each line carries the
    host's time.time() (same machine, same clock)."""
    printer = ("import time\nfor i in range(40):\n    print('t=%.6f' % time.time(), flush=True)\n"
               "    time.sleep(0.3)\n")
    work = b.project(b.tmp / "logs-work", "python3 printer.py", name="printer")
    (work / "printer.py").write_text(printer)

    def latency(argv: List[str]) -> List[float]:
        proc = subprocess.Popen(argv, env=b.env, stdout=subprocess.PIPE, text=True, start_new_session=True)
        b.helpers.append(proc)
        seen: List[float] = []
        timer = threading.Timer(25, lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGTERM))
        timer.start()
        for line in proc.stdout:
            m = re.search(r"t=(\d+\.\d+)", line)
            if m:
                seen.append(time.time() - float(m.group(1)))
            if len(seen) >= 30:
                break
        timer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        return seen[5:]   # the first lines are history, not live

    ours, peer, ratios = [], [], []
    for _ in range(2):
        job = b.launch(work)
        a = latency(b.tether("logs", job, "-f", "-n", "0"))
        b.wait_state(job)
        job = b.launch(work)
        time.sleep(0.5)
        p = latency(b.ssh + ["benchhost", "tail", "-n", "0", "-F", str(b.root / "jobs" / job / "logs" / "workload.log")])
        b.wait_state(job)
        ours.append(statistics.median(a))
        peer.append(statistics.median(p))
        ratios.append(ours[-1] / peer[-1])
    row = Row("log line latency, `tether logs -f` (median of 25 lines a round)", ours, peer, "`ssh host tail -F`",
              1.2, "<= 1.2x", ratios=ratios, unit="ms")
    print(f"  logs: {spread(ours, 'ms')} vs {spread(peer, 'ms')}", flush=True)
    return [row]


# What the same bench measured before: the launch session and the lean status path (commit
# 440c693), then the run this section replaced (d1a36ef), for the before/after.
BEFORE = ("Before (440c693, 2026-12-07, quiet): a no-change launch 2.8-3.4 s against rsync's 0.50-0.57 s "
          "(about 6x): Python start and imports 0.28 s; scan 0.32 s; then five remote Python starts: probe "
          "0.20 s, launch lock and the rest 0.95 s, manifest 0.40 s, create-job 0.79 s, start 0.42 s. The "
          "one-file edit moved the host's whole manifest (1.35 MB, 7.6x rsync's bytes). `tether status JOB` "
          "with a connection open 0.50 s, `tether jobs` 0.61 s (the CLI loaded typer, pydantic and paramiko). "
          "Then (d1a36ef, 06:39 the same day, load 0.8): status 1.60x and 2.78x, a no-change launch 3.05x "
          "(1.75 s), after a one-file edit 3.78x (2.21 s), logs -f 1.46x; a no-change launch's time went to "
          "imports 0.19 s, scan 0.24 s, the session not hidden by the scan 0.32 s, the job's 10,000-link "
          "snapshot 0.34 s, the agent's start 0.11 s, the rest 0.36 s. Those runs also compiled tether's "
          "sources on every command (this machine sets PYTHONDONTWRITEBYTECODE; the bench now runs tether "
          "with its bytecode, as pip installs it), which cost a status read 50-60 ms. Then (e6e1505, 10:32 the "
          "same day): status 1.38x and 2.43x, logs -f 1.34x, a no-change launch 1.40x (0.67 s), after a one-file "
          "edit 1.68x (0.75 s), a first launch 3.72x (3.90 s), pulls over loopback 1.22x and 1.39x. Then (68eba36, "
          "12:53, a slower hour): status 1.41x and 2.24x (0.34 s with the connection open), logs -f 1.25x, a "
          "no-change launch 1.66x, after an edit 1.87x, a first launch 2.23x, pulls over loopback 1.15x and 1.61x. "
          "Then (d54784e, 15:57, the status keeper and the quick exit): status 1.30x and 1.17x, logs -f 1.14x, a "
          "first launch 1.23x, a no-change launch 1.34x, after an edit 1.43x; pulls over loopback, with OpenSSH's "
          "cipher order and the pull through the Typer app: 1.12x (rsync), 1.18x (scp) and 1.37x (50 files). "
          "Then (89a2f75, 17:39, the pull lean, started early and over AES-GCM): status 1.16x and 1.08x, logs -f "
          "1.26x, a first launch 1.78x, a no-change launch 1.44x, after an edit 1.43x; pulls over loopback 0.82x "
          "(rsync), 0.95x (scp) and 1.01x (50 files), at 50 ms 0.99x and 0.92x. Then (80edec4, 20:25, the pull "
          "in one host command): status 1.20x and 1.05x, logs -f 1.30x, a first launch 1.97x, a no-change launch "
          "1.60x, after an edit 1.46x; pulls over loopback 0.79x (rsync), 0.75x (scp) and 0.96x (50 files), at "
          "50 ms 0.98x and 0.91x.")

# What stands between each goal not met and its figure: measured by hand on this machine
# (2026-12-07, 20:00-20:40), beside the runs above. Kept here so the bench writes it with them.
FLOORS = (
    "What stands between the goals not met and their figures (measured beside these runs, 2026-12-07):\n"
    "- Status with no connection open: the host's side costs nothing measurable (the status command's own "
    "ssh line took 389 ms where `ssh host cat` took 396), so tether is the handshake plus its own Python: "
    "the ssh starts ~23 ms after tether does (Python's start is 18 ms; before the fork of the ssh, "
    "transport/spawned.py, it was ~40 ms: subprocess loads locale, re and threading), and the answer is "
    "drawn in 12-17 ms (7-9 as JSON). That is ~1.1x of a 0.4 s handshake at best. The handshake itself is "
    "mostly the key exchange: OpenSSH 9.2's default, sntrup761x25519 (post-quantum), against "
    "curve25519-sha256 measured 0.73x of the default `ssh host cat`. tether keeps OpenSSH's choice (it "
    "would trade post-quantum protection for 0.1 s); a user's KexAlgorithms line in ~/.ssh/config applies, "
    "and OpenSSH 9.9 and later offer mlkem768x25519-sha256, post-quantum and fast.\n"
    "- `tether logs -f`: one process more between ssh and the terminal than `ssh host tail -F` (tether "
    "unframes the stream so that it can resume it after a drop, with no line lost or doubled), 0.1-0.2 ms "
    "a line on the peer's 0.6: the runs give 1.14-1.46x.\n"
    "- A first launch (a new root): three steps run in turn before a byte of code moves: tether's imports "
    "(0.3 s, half of it pydantic for the spec), the probe that ships the runtime (0.35-0.4 s), then the "
    "launch session (0.35-0.45 s: its first imports compile the new runtime, 0.13 s against 0.06 s "
    "compiled); rsync has one handshake. Not done: the probe becoming the session (one command: it "
    "unpacks, then execs the session on the same channel), ~0.15-0.2 s; and the disk of this machine "
    "makes the row's spread (1.21-2.24x in one run).\n"
    "- A no-change launch sits at its goal (1.34-1.60x over the runs): tether's imports (0.3 s) and the "
    "host's manifest of 10,000 files (walked after the laptop has said which manifests it knows) are in "
    "turn; the host cannot walk first without the project's lock, which a launch takes only then.")


def main() -> list:
    tmp = Path(tempfile.mkdtemp(prefix="tether-speed-bench-"))
    load_before = os.getloadavg()[0]
    b = Bench(tmp)
    rows: List[Row] = []
    try:
        for section in (status_rows, log_rows, launch_rows, pull_rows, jobs_rows):
            rows += section(b)
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [TITLE, "",
             "One run, a real sshd on 127.0.0.1, OpenSSH and rsync as the peers over the same keys; each pair "
             f"run in turn (A B A B, a warm-up pair first), {ROUNDS} rounds unless the row says fewer; "
             "times are medians (min-max), the ratio is tether / peer taken pair by pair (median, min-max). "
             "For throughput, a ratio <= 1.05 is >= 0.95x the peer's. tether runs as pip installs it: a console "
             "script in a venv, with its bytecode (not the checkout's editable install, whose import hook costs "
             "every command 15 ms). Before each measured launch (either tool's), the last launch's host side has "
             "finished what it does after the launch returned (the job's snapshot, the check of code sent by "
             "rsync) and the disk is synced. "
             f"Run {time.strftime('%Y-%m-%d %H:%M')}, load average {load_before:.1f} before and "
             f"{os.getloadavg()[0]:.1f} after (2 cores; anything above 1 is other work inflating tether's "
             "Python side more than the peers' C).", "",
             "| wait | tether | raw tool | ratio | goal | |", "|---|---|---|---|---|---|"]
    lines += [r.line() for r in rows]
    lines += [""] + [f"- {r.note}" for r in rows if r.note] + ["", BEFORE, "", FLOORS, ""]
    return lines


if __name__ == "__main__":
    out = main()
    splice(TITLE, out)
    print("\n".join(out))
