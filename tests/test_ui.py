"""`tether ui` in a real browser (Debian's headless Chromium, driven by playwright) against real
jobs on the test sshd: what the pages show, the live log, stop from the page, the token and
same-origin locks, hostile names, a dead host, and 200 jobs over 5 hosts. Screenshots of every
page go to <pytest tmp>/screenshots-*/ (artifacts, not committed)."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from browser import chromium
from conftest import launched_id, wait_for, wait_state
from fleet import make_fleet
from scripts import COUNTER

from launcher.registry import Registry
from launcher.settings import places

REPO = Path(__file__).resolve().parent.parent


def spec_for(host_root, run, grace_s=5):
    return f"""
        name: counter
        workdir: .
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: {run}
        heartbeat: {{every_s: 0.5}}
        stop: {{grace_s: {grace_s}}}
    """


@pytest.fixture(autouse=True)
def nothing_left_running():
    """After each test: no browser or driver of ours, and no dashboard web server thread."""
    import psutil

    yield
    left = [p.name() for p in psutil.Process().children(recursive=True)
            if any(n in p.name() for n in ("chrom", "node", "playwright"))]
    assert not left, left
    assert not [t.name for t in threading.enumerate() if t.name.startswith("tether-ui-http")]


@pytest.fixture
def dashboard(tether_env):
    from launcher.dashboard import start

    running = start(places(), 0, every_s=1.0)
    yield running
    running.stop()
    assert not running.thread.is_alive()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _launch(tether, project, host_root, run) -> str:
    r = tether("launch", project(spec_for(host_root, run), {"train.py": COUNTER}))
    assert r.exit_code == 0, r
    return launched_id(r)


def _progress_lines(host_root: Path, job: str, metric: str = "loss") -> int:
    lines = (host_root / "jobs" / job / "progress.jsonl").read_text().splitlines()
    return sum(1 for line in lines if metric in json.loads(line))


def test_jobs_page_lists_the_job_and_its_page_draws_every_progress_line(tether, project, host_root,
                                                                        dashboard, shots):
    job = _launch(tether, project, host_root, "python3 train.py 25 0.02")
    wait_state(tether, job, "SUCCEEDED")
    with chromium() as page:
        page.goto(dashboard.url)
        assert "token" not in page.url  # it became a cookie and left the address bar
        row = page.wait_for_selector(f'tr[data-job="{job}"]:not(.asking):has(.s-SUCCEEDED)', timeout=20000)
        assert "counter" in row.inner_text() and "24" in row.inner_text()
        page.wait_for_function(f"() => document.querySelector('tr[data-job=\"{job}\"] .spark').textContent.length > 0")
        page.screenshot(path=str(shots / "jobs.png"))
        page.click(f'tr[data-job="{job}"] a')
        page.wait_for_selector('.chart[data-metric="loss"] canvas', timeout=20000)
        points = page.evaluate('window.tetherCharts["metrics/loss"].plot.data[0].length')
        assert points == _progress_lines(host_root, job) == 25
        assert page.evaluate('window.tetherCharts["metrics/loss"].plot.data[1][24]') == pytest.approx(1 / 25)
        page.wait_for_selector("#resources .chart canvas", timeout=20000)  # heartbeats over time
        page.wait_for_function("() => document.getElementById('log').textContent.includes('done')", timeout=20000)
        assert "SUCCEEDED" in page.inner_text("#state")
        assert "SUCCEEDED" in page.inner_text("#events")
        page.check('input[value="time"]')
        page.wait_for_function('() => window.tetherCharts["metrics/loss"].axis === "time"')
        page.check('input[value="step"]')
        page.screenshot(path=str(shots / "job.png"), full_page=True)


def test_the_log_tail_is_live_and_stop_from_the_page_stops_the_job(tether, project, host_root, dashboard, shots):
    job = _launch(tether, project, host_root, "python3 train.py 3000 0.1")
    wait_state(tether, job, "RUNNING")
    last_step = "(() => { const m = [...document.getElementById('log').textContent.matchAll(/step (\\d+)/g)];" \
                " return m.length ? +m[m.length - 1][1] : -1; })()"
    with chromium() as page:
        page.goto(dashboard.url)
        page.goto(f"http://127.0.0.1:{dashboard.port}/job/{job}")
        page.wait_for_function(f"() => {last_step} >= 0", timeout=20000)
        first = page.evaluate(last_step)
        page.wait_for_function(f"() => {last_step} >= {first + 5}", timeout=20000)  # new lines, no reload
        page.on("dialog", lambda d: d.accept())
        page.click("#stop")
        page.wait_for_function("() => document.getElementById('said').textContent.includes('asked job')", timeout=20000)
        wait_state(tether, job, "STOPPED", timeout=60)
        page.wait_for_selector("#state .s-STOPPED", timeout=30000)
        page.screenshot(path=str(shots / "job-stopped.png"), full_page=True)
    assert (host_root / "jobs" / job / "outputs" / "stopped.txt").exists()  # it got SIGTERM, as with tether stop


class _Evil(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_no_token_no_data_and_cross_origin_actions_are_refused(tether, project, host_root, dashboard):
    job = _launch(tether, project, host_root, "python3 train.py 3000 0.1")
    wait_state(tether, job, "RUNNING")
    base = f"http://127.0.0.1:{dashboard.port}"
    for path in ("/", f"/job/{job}", "/api/jobs", f"/api/job/{job}", f"/api/job/{job}/log", "/static/common.js"):
        assert httpx.get(base + path).status_code == 403, path
    assert httpx.get(base + "/api/jobs", headers={"X-Tether-Token": "guess"}).status_code == 403
    cookie = {"tether_token": dashboard.token}
    assert httpx.get(base + "/api/jobs", cookies=cookie).status_code == 200
    assert httpx.get(base + "/api/jobs", cookies=cookie,
                     headers={"Host": f"rebound.example:{dashboard.port}"}).status_code == 403  # DNS rebinding
    stop = f"{base}/api/job/{job}/stop"
    token = {"X-Tether-Token": dashboard.token}
    assert httpx.post(stop, headers={**token, "Origin": "http://evil.example"}).status_code == 403
    assert httpx.post(stop, headers=token).status_code == 403                    # no Origin at all
    assert httpx.post(stop, cookies=cookie, headers={"Origin": base}).status_code == 403  # the cookie alone
    assert httpx.request("OPTIONS", stop, headers={"Origin": "http://evil.example"}).status_code == 403

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with chromium() as page:
            page.goto(dashboard.url)  # the browser now holds the dashboard's cookie
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            seen = page.evaluate("""async ([base, job, token]) => {
                const out = {};
                const tryit = async (name, f) => { try { out[name] = (await f()).status; } catch (e) { out[name] = "blocked"; } };
                await tryit("read", () => fetch(base + "/api/jobs", {credentials: "include"}));
                await tryit("stop", () => fetch(base + "/api/job/" + job + "/stop",
                    {method: "POST", credentials: "include", headers: {"X-Tether-Token": token}}));
                await tryit("form", () => fetch(base + "/api/job/" + job + "/stop",
                    {method: "POST", mode: "no-cors", credentials: "include"}));
                return out; }""", [base, job, dashboard.token])
    finally:
        evil.shutdown()
        evil.server_close()
    assert seen["read"] == "blocked" and seen["stop"] == "blocked", seen   # nothing read, no preflight passed
    time.sleep(1.5)
    assert wait_state(tether, job, "RUNNING")["state"] == "RUNNING"          # and nothing stopped it
    tether("stop", job, "--no-wait")


HOSTILE = r'''
import time
from agent import progress
NAME = "<img src=x onerror=\"document.title='pwned'\">"
for s in range(6):
    progress.report(s, **{NAME: s * 2, "loss": 1.0 / (s + 1)})
    print("<script>document.title='pwned'</script> \x1b]0;owned\x07 step", s, flush=True)
    time.sleep(0.05)
'''


def test_hostile_metric_names_and_log_lines_stay_text(tether, project, host_root, dashboard, shots):
    r = tether("launch", project(spec_for(host_root, "python3 train.py"), {"train.py": HOSTILE}))
    job = launched_id(r)
    wait_state(tether, job, "SUCCEEDED")
    with chromium() as page:
        page.goto(dashboard.url)
        page.wait_for_selector(f'tr[data-job="{job}"]', timeout=20000)
        page.goto(f"http://127.0.0.1:{dashboard.port}/job/{job}")
        page.wait_for_selector('.chart[data-metric^="<img"] canvas', timeout=20000)
        page.wait_for_function("() => document.getElementById('log').textContent.includes('<script>')", timeout=20000)
        assert page.title().startswith("tether")
        assert page.evaluate("document.querySelectorAll('main img, main script').length") == 0
        assert "<img src=x" in page.inner_text(".chart[data-metric^='<img'] .u-title")
        assert "\x1b" not in page.evaluate("document.getElementById('log').textContent")
        page.screenshot(path=str(shots / "job-hostile.png"), full_page=True)


def test_a_dead_host_shows_unreachable_without_stalling_the_others(tether, project, host_root, dashboard):
    job = _launch(tether, project, host_root, "python3 train.py 3 0.01")
    wait_state(tether, job, "SUCCEEDED")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts TCP, never says a word of SSH: a host that hangs
    registry = Registry(places().registry)
    try:
        rec = registry.resolve(job)
        registry.add(dataclasses.replace(rec, id="deadhost", created=rec.created + 1, endpoint={
            "kind": "ssh", "host": "127.0.0.1", "port": silent.getsockname()[1], "user": "root",
            "connect_timeout_s": 15, "retry_s": 60}))
    finally:
        registry.close()
    try:
        cookie = {"tether_token": dashboard.token}
        url = f"http://127.0.0.1:{dashboard.port}/api/jobs"

        def states():
            began = time.monotonic()
            rows = httpx.get(url, cookies=cookie, timeout=30).json()["jobs"]
            assert time.monotonic() - began < 4  # the page never waits on the silent host
            return {r["id"]: r["state"] for r in rows}

        seen = wait_for(lambda: (s := states()).get("deadhost") == "UNREACHABLE" and s, 30, what="UNREACHABLE")
        assert seen[job] == "SUCCEEDED"
    finally:
        silent.close()


def test_jobs_page_renders_200_finished_jobs_over_5_hosts(tether, tmp_path, monkeypatch, shots):
    """The 2 s render time is measured by bench/ui_bench.py; here: every row is there."""
    from launcher.dashboard import start

    config = tmp_path / "fleet_ssh_config"
    monkeypatch.setenv("TETHER_SSH_CONFIG", str(config))
    hosts, total = make_fleet(tmp_path / "fleet", config, tether, n_hosts=5, per_host=40)
    running = start(places(), 0)
    try:
        assert total == 200
        with chromium() as page:
            began = time.monotonic()
            page.goto(running.url)
            page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr:not(.asking) .s-SUCCEEDED').length === 200",
                                   timeout=30000)
            took = time.monotonic() - began
            assert page.evaluate("document.querySelectorAll('#jobs tbody tr').length") == 200
            page.screenshot(path=str(shots / "jobs-200.png"), full_page=True)
        print(f"200 jobs over 5 hosts rendered in {took:.2f}s")
    finally:
        running.stop()
        for h in hosts:
            h.stop()
            h.kill_sessions()


def test_tether_ui_prints_its_address_and_stops_on_ctrl_c(tether_env):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "ui", "--no-browser"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("tether dashboard: http://127.0.0.1:") and "?token=" in line, line
        url = line.split(": ", 1)[1].strip()
        first = httpx.get(url)
        assert first.status_code == 303 and "tether_token" in first.headers["set-cookie"]
        assert "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
        assert httpx.get(url.split("?")[0]).status_code == 403
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "dashboard stopped" in rest


def test_tether_ui_without_its_extra_names_it(tether, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `pip install 'tether[ui]'` had not run
    r = tether("ui", "--no-browser")
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: the dashboard needs uvicorn — pip install 'tether[ui]'"


def test_a_multi_node_jobs_page_draws_a_row_per_node_as_text(tether, project, host_root, dashboard, shots,
                                                            tmp_path, monkeypatch):
    """Two real jobs on the test host joined in the registry as one job's node 0 and node 1
    (the namespaces' two hosts are the multi-node tests' own); node 1's host says something
    hostile in its state.json. The page shows node 0's curves and log, then node 1's when
    picked, and pulls node 1's outputs."""
    monkeypatch.chdir(tmp_path)  # where the page's pull puts them
    first = _launch(tether, project, host_root, "python3 train.py 5 0.01")
    second = _launch(tether, project, host_root, "python3 train.py 3 0.01")
    for job in (first, second):
        wait_state(tether, job, "SUCCEEDED")
    said = host_root / "jobs" / second / "state.json"
    doc = json.loads(said.read_text())
    said.write_text(json.dumps({**doc, "reason": '<img src=x onerror="document.body.dataset.owned=1">done'}))
    registry = Registry(places().registry)
    try:
        recs = [registry.resolve(j) for j in (first, second)]
        registry.add(dataclasses.replace(recs[0], id="twonodes", created=recs[1].created + 1, final=None, nodes=[
            {"endpoint": r.endpoint, "remote_root": r.remote_root, "job_dir": r.job_dir, "python": r.python,
             "runtime_dir": r.runtime_dir} for r in recs]))
    finally:
        registry.close()
    with chromium() as page:
        page.goto(dashboard.url)
        page.goto(f"http://127.0.0.1:{dashboard.port}/job/twonodes")
        page.wait_for_selector('#nodes tr[data-node="1"]', timeout=20000)
        cells = page.eval_on_selector_all("#nodes tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert [c[:4] for c in cells] == [["node 0", cells[0][1], "SUCCEEDED", "4"],
                                          ["node 1", cells[1][1], "SUCCEEDED", "2"]], cells
        assert all("127.0.0.1" in c[1] for c in cells) and all(c[5].endswith("ago") for c in cells), cells
        assert cells[1][6] == '<img src=x onerror="document.body.dataset.owned=1">done'
        assert page.evaluate("document.querySelectorAll('main img').length") == 0
        assert page.evaluate("document.body.dataset.owned") is None
        page.wait_for_selector('.chart[data-metric="loss"] canvas', timeout=20000)  # node 0's curves
        loss_points = "() => { const c = document.querySelector('.chart[data-metric=\"loss\"]');" \
                      " return c ? c.dataset.points : null; }"
        log_says = "(() => document.getElementById('log').textContent)()"
        page.wait_for_function(f"() => ({loss_points})() === '5' && /step 4/.test({log_says})", timeout=20000)
        page.screenshot(path=str(shots / "job-nodes.png"), full_page=True)
        page.select_option("#node", "1")  # node 1's own curves, log and backups
        page.wait_for_function(f"() => ({loss_points})() === '3' && /step 2/.test({log_says})"
                               f" && !/step 4/.test({log_says})", timeout=20000)
        page.screenshot(path=str(shots / "job-node-1.png"), full_page=True)
        page.on("dialog", lambda d: d.accept())
        page.click("#pull")  # node 1's outputs, into node-1/ of the folder the dashboard runs in
        page.wait_for_function("() => document.getElementById('said').textContent.includes('pulled 1 file')",
                               timeout=30000)
        assert json.loads((tmp_path / "counter-twonodes" / "node-1" / "outputs" / "result.json").read_text()) \
            == {"steps": 3}
        page.goto(f"http://127.0.0.1:{dashboard.port}/job/{first}")
        page.wait_for_selector("body[data-loaded]", timeout=20000)
        assert page.is_hidden("#nodes")  # a one-host job has no node rows
    base, cookie = f"http://127.0.0.1:{dashboard.port}", {"tether_token": dashboard.token}
    for path in ("/api/job/twonodes?node=x", "/api/job/twonodes/log?node=-1", "/api/job/twonodes/backups?node=%C2%B2"):
        assert "node is a node's number" in httpx.get(base + path, cookies=cookie).json()["error"], path
    for path in ("/api/job/twonodes?node=2", "/api/job/twonodes/log?node=7", f"/api/job/{first}?node=1"):
        answer = httpx.get(base + path, cookies=cookie)
        assert answer.status_code == 400 and ("has nodes 0 to 1" in answer.json()["error"]
                                              or "runs on one host" in answer.json()["error"]), (path, answer.text)
