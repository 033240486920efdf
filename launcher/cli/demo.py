"""`tether demo`: the example job from examples/demo, run for real on the local host."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Optional

from agent.protocol import JobState, StatusAnswer

from launcher.errors import UsageError
from launcher.jobs.launch import launch
from launcher.spec import HostSpec, load_spec
from launcher.show.tables import metrics_text, state_text
from launcher.text import inert

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo" / "job.yaml"


UI_STEPS = 600  # with the dashboard: long enough (about a minute) to watch the curve grow


def run_demo(s, dest: Path, root: Optional[str] = None, ui: bool = False) -> int:
    if not EXAMPLE.is_file():
        raise UsageError(f"the demo job is not at {EXAMPLE}", "run the demo from a source checkout of tether")
    console = s.console
    override = HostSpec(provider="local", root=root) if root else None
    loaded = load_spec(EXAMPLE, os.environ, override)
    if ui:
        loaded = dataclasses.replace(loaded, spec=loaded.spec.model_copy(
            update={"run": f"python train.py --steps {UI_STEPS}"}))
    console.print(f"[bold]1. launch[/] {EXAMPLE.relative_to(EXAMPLE.parent.parent.parent)} on the local host")
    done = launch(loaded, s.places, s.registry, console)
    assert done is not None
    rec = done.record
    console.print(f"   job {rec.id} started; the agent runs detached in {rec.job_dir}")
    dashboard = _open_dashboard(s, rec.id) if ui else None

    console.print("[bold]2. watch[/] (what `tether status` reads from the host)")
    seen = {"step": None}

    def show(answer: StatusAnswer) -> None:
        if answer.step != seen["step"]:
            seen["step"] = answer.step
            console.print(f"   {state_text(answer.state)}  step {seen['step']}  {metrics_text(answer.metrics)}")

    handle = s.handle(rec.id)
    answer = handle.wait_stopped(600, on_answer=show)  # until it ends, showing each new step
    state = answer.state
    console.print(f"   finished: {state_text(state)}  {inert(answer.reason or '')}")

    console.print(f"[bold]3. pull[/] outputs into {dest}/")
    result = handle.pull(dest, None, console)
    for path in result.pulled + result.unchanged:
        console.print(f"   {dest / path}", markup=False)
    metrics = dest / "outputs" / "metrics.json"
    if metrics.is_file():
        console.print("   metrics.json: " + json.dumps(json.loads(metrics.read_text())), markup=False)
    console.print(f"\nnext: tether status {rec.id} · tether logs {rec.id} · tether plot {rec.id} · tether ui")
    if dashboard is not None:
        _keep_open(console, dashboard)
    return 0 if state == JobState.SUCCEEDED else 1


def _open_dashboard(s, job_id: str):
    """`tether ui` on the demo job's page, while it trains."""
    import webbrowser

    from launcher.dashboard import start

    running = start(s.places)
    url = running.url.replace("/?token=", f"/job/{job_id}?token=")
    s.console.print(f"   its live page: {url}", markup=False, soft_wrap=True)
    webbrowser.open(url)
    return running


def _keep_open(console, running) -> None:
    console.print("the dashboard stays up until Ctrl-C")
    try:
        while running.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
