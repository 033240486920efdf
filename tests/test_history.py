"""The agent's history verb: only new lines travel, thinning keeps every spike, hostile lines
are data, the heartbeat samples stay under their cap, and a long run is answered from the
summary the agent keeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from agent.history import HistoryKeeper, Summary, append_sample, history, main_history
from agent.paths import JobDir
from agent.protocol import downsample

REPO = Path(__file__).resolve().parent.parent


def _job(tmp_path: Path) -> JobDir:
    job = JobDir(tmp_path / "jobs" / "j1")
    job.make_dirs()
    return job


def _append(path: Path, lines) -> None:
    with open(path, "a") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def test_only_new_lines_travel_after_the_first_read(tmp_path):
    job = _job(tmp_path)
    _append(job.progress, [{"step": i, "time": 1000.0 + i, "loss": 1 / (i + 1)} for i in range(10)])
    first = history(job, {"progress": ""}, 2000)["progress"]
    assert first["reset"] and [r["step"] for r in first["rows"]] == list(range(10))
    _append(job.progress, [{"step": 10, "loss": 0.05}, {"step": 10, "checkpoint": "step-10"}])
    then = history(job, {"progress": first["cursor"]}, 2000)["progress"]
    assert not then["reset"] and [(r["n"], r["step"], r["m"]) for r in then["rows"]] == [(10, 10, {"loss": 0.05})]
    again = history(job, {"progress": then["cursor"]}, 2000)["progress"]
    assert again["rows"] == [] and again["cursor"] == then["cursor"]


def test_a_replaced_file_is_read_again_from_its_start(tmp_path):
    job = _job(tmp_path)
    _append(job.progress, [{"step": i, "loss": 1.0} for i in range(5)])
    cursor = history(job, {"progress": ""}, 2000)["progress"]["cursor"]
    tmp = job.path / "p.tmp"
    _append(tmp, [{"step": 0, "loss": 9.0}])
    os.replace(tmp, job.progress)
    got = history(job, {"progress": cursor}, 2000)["progress"]
    assert got["reset"] and [r["m"]["loss"] for r in got["rows"]] == [9.0]


def test_hostile_lines_are_skipped_not_trusted(tmp_path):
    job = _job(tmp_path)
    _append(job.progress, [
        "not json", "[1, 2]", '{"step": "7", "loss": "0.5"}', '{"step": true, "loss": NaN}',
        {"step": 1, "loss": 0.5, "<img src=x onerror=alert(1)>": 2, "note": "text is not a metric"},
        json.dumps({"step": 2, "loss": 0.4, "pad": "x" * 100_000}),
        json.dumps({"step": 3, **{f"m{i}": i for i in range(100)}}),
    ])
    rows = history(job, {"progress": ""}, 2000)["progress"]["rows"]
    assert [r["step"] for r in rows] == [1, 3]
    assert rows[0]["m"] == {"loss": 0.5, "<img src=x onerror=alert(1)>": 2}  # a name is data: escaped where shown
    assert len(rows[1]["m"]) == 32


def test_thinning_keeps_every_bucket_minimum_and_maximum():
    rows = [{"n": i, "step": i, "time": None, "m": {"loss": 1.0, "lr": 0.1}} for i in range(100_000)]
    rows[31_337]["m"]["loss"] = 50.0     # a spike
    rows[77_001]["m"]["lr"] = -3.0       # a dip in another metric
    thin = downsample(rows, 1000)
    assert len(thin) <= 1000
    assert max(r["m"]["loss"] for r in thin) == 50.0 and min(r["m"]["lr"] for r in thin) == -3.0
    assert thin[0]["n"] == 0 and thin[-1]["n"] == 99_999
    assert downsample(downsample(thin, 300), 100)[0]["n"] == 0
    assert max(r["m"]["loss"] for r in downsample(thin, 100)) == 50.0


def test_the_agent_keeps_a_summary_so_a_long_run_answers_fast(tmp_path):
    job = _job(tmp_path)
    with open(job.progress, "w") as f:
        for i in range(200_000):
            f.write(f'{{"step": {i}, "time": {1e9 + i}, "loss": {1 + (i % 97) / 97}}}\n')
    keeper = HistoryKeeper(job)
    while True:  # what the agent does at each heartbeat, READ_BYTES at a time
        keeper.tick({"ram_used_gb": 1.5}, None, None, final=True)
        if keeper.summary.cursor.offset == job.progress.stat().st_size:
            break
    _append(job.progress, [{"step": 200_000, "loss": 0.25}])
    began = time.monotonic()
    got = history(job, {"progress": ""}, 2000)["progress"]
    took = time.monotonic() - began
    assert len(got["rows"]) <= 2000 and got["rows"][-1]["step"] == 200_000 and not got["more"]
    assert min(r["m"]["loss"] for r in got["rows"]) == 0.25
    assert took < 1.0, took  # the summary and one line, not 200k lines
    assert Summary.load(job.progress_summary).cursor.lines == 200_000


def test_heartbeat_samples_stay_under_their_cap_and_keep_the_whole_run(tmp_path):
    path = tmp_path / "heartbeats.jsonl"
    for i in range(400):
        append_sample(path, {"time": float(i), "ram_used_gb": 1.0}, cap=4000)
    assert path.stat().st_size <= 4000
    times = [json.loads(line)["time"] for line in path.read_text().splitlines()]
    assert times[0] == 0.0 and times[-1] >= 390 and times == sorted(times)
    path.write_bytes(b"y" * 1_000_000 + b"\n")  # grown by a workload (same user)
    append_sample(path, {"time": 500.0}, cap=4000)
    assert path.read_text() == '{"time":500.0}\n'  # only the newest bytes are read and kept


def test_the_verb_answers_several_jobs_in_one_call(tmp_path):
    job = _job(tmp_path)
    _append(job.progress, [{"step": 0, "loss": 1.0}])
    _append(job.heartbeats, [{"time": 5.0, "ram_used_gb": 2.0, "gpu0_util_percent": 97}])
    _append(job.events, [{"time": 6.0, "event": "backup-done", "name": "20240101T000000-step0", "step": 0}])
    request = {"max_rows": 100, "jobs": [
        {"job_dir": str(job.path), "progress": "", "heartbeats": "", "events": ""},
        {"job_dir": str(tmp_path / "jobs" / "gone"), "progress": ""}]}
    done = subprocess.run([sys.executable, "-m", "agent", "history"], input=json.dumps(request).encode(),
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)), check=True)
    here, gone = json.loads(done.stdout)
    assert here["heartbeats"]["rows"][0]["m"] == {"ram_used_gb": 2.0, "gpu0_util_percent": 97}
    assert here["events"]["rows"][0]["event"] == "backup-done"
    assert gone == {"job_dir": str(tmp_path / "jobs" / "gone"), "exists": False}
    assert main_history({"jobs": []}) == []


def test_the_laptop_takes_a_host_answer_as_data():
    from launcher.jobs.history import JobHistory

    hist = JobHistory(max_rows=16)
    hist.apply({"exists": True, "progress": {"reset": True, "cursor": "1:2:3" * 50, "more": "yes", "rows": [
        {"n": 0, "step": 0, "time": 1.0, "m": {"loss": 1.0, "x" * 500: 2, "bad": "1", "nan": float("nan")}},
        {"n": "1", "m": {"loss": 1}}, {"n": 2, "step": True, "time": "now", "m": {"loss": 0.5}}, "junk", None]},
        "events": {"reset": True, "rows": [{"time": 3.0, "event": "stalled", "quiet_s": 9.5, "x": {"nested": 1}},
                                            {"event": "no time"}]}})
    rows = hist.progress.rows
    assert [(r["n"], r["step"], r["time"]) for r in rows] == [(0, 0, 1.0), (2, None, None)]
    assert rows[0]["m"] == {"loss": 1.0, "x" * 64: 2}
    assert len(hist.progress.cursor) == 64 and hist.progress.more is False
    assert hist.events.rows == [{"time": 3.0, "event": "stalled", "quiet_s": 9.5}]
    hist.apply({"progress": {"reset": False, "rows": [{"n": i, "step": i, "m": {"loss": i}} for i in range(3, 100)]}})
    assert len(hist.progress.rows) <= 16 and hist.progress.rows[-1]["n"] == 99  # thinned as it grows


def test_sparkline_and_eta():
    from launcher.show.curves import markers
    from launcher.show.trend import eta_s, sparkline

    assert sparkline([3, 2, 1, 0]) == "█▆▄▁"[0] + sparkline([3, 2, 1, 0])[1:] and len(sparkline(list(range(100)), 10)) == 10
    rows = [{"n": i, "step": i, "time": 100.0 + i / 2, "m": {"loss": 1.0}} for i in range(100)]  # 2 steps/s
    assert eta_s(rows, 99, 199) == 50.0
    assert eta_s(rows, 99, None) is None and eta_s(rows, 99, True) is None and eta_s(rows, 99, 50) is None
    events = [{"time": 120.2, "event": "child-started", "attempt": 1}, {"time": 130.0, "event": "backup-done",
                                                                        "step": 7, "name": "20240101T000000-step7"}]
    got = [(m.kind, m.step) for m in markers(events, rows)]
    assert got == [("restart", 40), ("backup", 7)]  # a restart at the step its time had reached
