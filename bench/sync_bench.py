"""Code sync: `tether launch` through a real sshd on 127.0.0.1, its rsync fast path against
its tar stream (TETHER_NO_RSYNC=1), and against the peer: a bare `rsync -a` of the same
workdir over the same OpenSSH (what SkyPilot does for a workdir). Two cases: the first sync
of a workdir holding one big file, and a re-sync after 1 MB in its middle changed.

`python bench/sync_bench.py` runs this section alone and splices it into RESULTS.md.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

BIG_MB = int(os.environ.get("BENCH_SYNC_MB", "256"))
ROUNDS = int(os.environ.get("BENCH_SYNC_ROUNDS", "3"))
sys.path.insert(0, str(HERE))
from results import splice  # noqa: E402

TITLE = "## Code sync over SSH"


def _timed(argv: List[str], env: Dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    return time.monotonic() - began


def _change_middle(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(os.urandom(1 << 20))


def main() -> list:
    from sshd import Sshd

    tmp = Path(tempfile.mkdtemp(prefix="tether-sync-bench-"))
    server = Sshd(tmp / "sshd").setup().start()
    try:
        conf = tmp / "ssh_config"
        conf.write_text(server.ssh_config("benchhost"))
        ssh = (f"ssh -F {conf} -o UserKnownHostsFile={tmp / 'peer_known_hosts'} "
               "-o StrictHostKeyChecking=accept-new -o BatchMode=yes")
        times: Dict[str, List[float]] = {}
        for r in range(ROUNDS):
            for way in ("rsync", "tar", "peer"):
                work = tmp / f"work-{way}-{r}"
                (work / "data").mkdir(parents=True)
                (work / "train.py").write_text("print('hi')\n")
                with open(work / "data" / "big.bin", "wb") as f:
                    for _ in range(BIG_MB):
                        f.write(os.urandom(1 << 20))
                root = tmp / f"root-{way}-{r}"
                (work / "job.yaml").write_text(f"name: bench{r}\nhost: {{provider: ssh, address: benchhost, "
                                               f"root: {root}}}\nrun: python3 train.py\n")
                env = dict(os.environ, TETHER_HOME=str(tmp / f"home-{way}-{r}"), TETHER_SSH_CONFIG=str(conf),
                           PYTHONPATH=str(REPO))
                if way == "tar":
                    env["TETHER_NO_RSYNC"] = "1"
                if way == "peer":
                    argv = ["rsync", "-a", "-e", ssh, f"{work}/", f"benchhost:{root}/"]
                else:
                    argv = [sys.executable, "-m", "launcher", "launch", str(work / "job.yaml")]
                times.setdefault(f"{way} first", []).append(_timed(argv, env))
                times.setdefault(f"{way} nothing", []).append(_timed(argv, env))  # the fixed cost
                _change_middle(work / "data" / "big.bin")
                times.setdefault(f"{way} change", []).append(_timed(argv, env))
                shutil.rmtree(root, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)
                print(f"  sync {way} round {r}: first {times[f'{way} first'][-1]:.2f}s, "
                      f"1 MB changed {times[f'{way} change'][-1]:.2f}s", flush=True)
    finally:
        server.stop()
        server.kill_sessions()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        TITLE,
        "",
        f"A workdir of one {BIG_MB} MB file (plus two small ones), to a real sshd on 127.0.0.1; medians of "
        f"{ROUNDS} rounds, each way on a fresh root. tether's columns are whole `tether launch` runs minus "
        "a launch with nothing changed (its fixed cost: Python start, connecting, the manifests, creating "
        "and starting the job), which leaves what hashing and sending the files cost. The peer is a bare "
        "`rsync -a` of the workdir over the same OpenSSH (what SkyPilot does), minus its own no-change run.",
        "",
        "| case | tether, rsync path | tether, tar stream | bare rsync (peer) | rsync path / peer | "
        "rsync path / tar | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, label in (("first", "first sync"), ("change", "1 MB in the middle changed")):
        r, t, p = (med[f"{w} {case}"] - med[f"{w} nothing"] for w in ("rsync", "tar", "peer"))
        lines.append(f"| {label} | {r:.2f} s | {t:.2f} s | {p:.2f} s | {r / p:.2f} | {r / t:.2f} | "
                     "rsync path / tar <= 1 |")
    lines += ["", "Fixed cost of a launch with nothing to send: "
              f"{med['rsync nothing']:.2f} s (rsync path), {med['tar nothing']:.2f} s (tar stream); "
              f"a no-op bare rsync: {med['peer nothing']:.2f} s. tether also hashes every changed file "
              "(sha256) before sending, which the peer does not.", ""]
    return lines


if __name__ == "__main__":
    out = main()
    splice(TITLE, out)
    print("\n".join(out))
