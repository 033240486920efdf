"""`tether plot` writes a PNG of a real job's curves; `tether status` draws the loss as a
sparkline and says the ETA when the workload reports max_steps."""

from __future__ import annotations

import sys

from conftest import launched_id, status_json, wait_for, wait_state
from scripts import COUNTER

PACED = """
import sys, time
from agent import progress
total = int(sys.argv[1])
for step in range(total):
    progress.report(step, loss=2.0 / (step + 1), lr=1e-3, max_steps=total)
    if progress.stop_requested():
        sys.exit(0)
    time.sleep(0.1)
"""


def _spec(host_root, run):
    return f"""
        name: plotted
        workdir: .
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: {run}
        heartbeat: {{every_s: 0.5}}
        stop: {{grace_s: 5}}
    """


def test_plot_writes_a_png_of_the_curves(tether, project, host_root, tmp_path):
    import matplotlib.image

    job = launched_id(tether("launch", project(_spec(host_root, "python3 train.py 30 0.01"), {"train.py": COUNTER})))
    wait_state(tether, job, "SUCCEEDED")
    out = tmp_path / "loss.png"
    r = tether("plot", job, "-o", out, "--metric", "loss")
    assert r.exit_code == 0, r
    assert f"wrote {out}: loss (30 point(s))" in r.stdout
    img = matplotlib.image.imread(str(out))
    height, width = img.shape[:2]
    assert width >= 800 and height >= 300
    ink = (img[..., :3] < 0.9).any(axis=2).mean()
    assert 0.01 < ink < 0.5, ink  # drawn on, not blank, not a solid block
    blue = ((abs(img[..., 0] - 0x25 / 255) < 0.1) & (abs(img[..., 1] - 0x63 / 255) < 0.1)
            & (abs(img[..., 2] - 0xEB / 255) < 0.1)).sum()
    assert blue > 200, blue  # the curve itself

    wrong = tether("plot", job, "--metric", "nope")
    assert wrong.exit_code == 2 and "no metric 'nope'" in wrong.stderr and "it has: loss" in wrong.stderr


def test_plot_without_matplotlib_names_the_extra(tether, project, host_root, monkeypatch):
    job = launched_id(tether("launch", project(_spec(host_root, "python3 train.py 3 0.01"), {"train.py": COUNTER})))
    wait_state(tether, job, "SUCCEEDED")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    r = tether("plot", job)
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: tether plot needs matplotlib — pip install 'tether[plot]'"


def test_status_shows_the_loss_as_a_sparkline_and_the_eta(tether, project, host_root):
    job = launched_id(tether("launch", project(_spec(host_root, "python3 train.py 400"), {"train.py": PACED})))
    wait_for(lambda: (status_json(tether, job).get("step") or 0) >= 12, 60, what="a dozen steps")
    out = tether("status", job).stdout
    loss = next(line for line in out.splitlines() if line.startswith("loss "))
    assert any(c in loss for c in "▁▂▃▄▅▆▇█"), out
    assert loss.split()[1][0] == "█"  # the loss falls: the first cell is the highest
    step = next(line for line in out.splitlines() if line.startswith("step "))
    assert "/400" in step and "it/s" in step and "ETA" in step, out  # the agent's rate and time left
    tether("stop", job)


def test_status_watch_redraws_until_the_job_ends(tether, project, host_root):
    """`status --watch` keeps reading the host and redraws the status; it returns by itself,
    with exit 0, once the job it watches has ended (on the shared connection each round)."""
    job = launched_id(tether("launch", project(_spec(host_root, "python3 train.py 60"), {"train.py": PACED})))
    r = tether("status", job, "--watch", "--every", "0.3")
    assert r.exit_code == 0, r
    assert "SUCCEEDED" in r.stdout
    steps = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) >= 3 and len(set(steps)) >= 2, r.stdout  # redrawn, and it moved between draws
