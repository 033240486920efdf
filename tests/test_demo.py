"""`make demo`'s job, run for real: torch training on the local host, pulled back."""

from __future__ import annotations

import json


def test_demo_end_to_end(tether, tmp_path):
    dest = tmp_path / "result"
    r = tether("demo", "--to", dest, "--root", tmp_path / "root")
    assert r.exit_code == 0, r
    assert "SUCCEEDED" in r.stdout and "metrics.json" in r.stdout
    metrics = json.loads((dest / "outputs" / "metrics.json").read_text())
    assert abs(metrics["weight"] - 3) < 0.1 and abs(metrics["bias"] + 2) < 0.1
    assert (dest / "outputs" / "model.pt").stat().st_size > 0
    assert "SUCCEEDED" in tether("jobs").stdout
