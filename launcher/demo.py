"""`tether demo`: the example job from examples/demo, run for real on the local host."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

from agent.protocol import JobState

from .agent_client import AgentClient
from .errors import UsageError
from .hosts import host_for_record
from .launch import launch
from .pull import pull
from .spec import HostSpec, load_spec
from .views import metrics_text, state_text

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "demo" / "job.yaml"


def run_demo(s, dest: Path, root: Optional[str] = None) -> int:
    if not EXAMPLE.is_file():
        raise UsageError(f"the demo job is not at {EXAMPLE}", "run the demo from a source checkout of tether")
    console = s.console
    override = HostSpec(provider="local", root=root) if root else None
    loaded = load_spec(EXAMPLE, os.environ, override)
    console.print(f"[bold]1. launch[/] {EXAMPLE.relative_to(EXAMPLE.parent.parent.parent)} on the local host")
    done = launch(loaded, s.places, s.registry, console)
    assert done is not None
    rec = done.record
    console.print(f"   job {rec.id} started; the agent runs detached in {rec.job_dir}")

    console.print("[bold]2. watch[/] (what `tether status` reads from the host)")
    client = AgentClient(host_for_record(rec, s.places), rec.python, rec.runtime_dir)
    channel = client.channel(rec.remote_root)
    last_step = None
    answer: dict = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        answer = channel.ask("status", jobs=[rec.id])[0]
        state = JobState(answer["state"])
        if answer.get("step") != last_step:
            last_step = answer.get("step")
            console.print(f"   {state_text(state)}  step {last_step}  {metrics_text(answer.get('metrics') or {})}")
        if state.is_terminal or state == JobState.LOST:
            break
        time.sleep(0.5)
    channel.close()
    state = JobState(answer["state"])
    s.registry.set_state(rec.id, state.value)
    console.print(f"   finished: {state_text(state)}  {answer.get('reason') or ''}")

    console.print(f"[bold]3. pull[/] outputs into {dest}/")
    result = pull(client, rec.job_dir, rec.artifacts, dest, console)
    client.host.close()
    for path in result.pulled + result.unchanged:
        console.print(f"   {dest / path}", markup=False)
    metrics = dest / "outputs" / "metrics.json"
    if metrics.is_file():
        console.print("   metrics.json: " + json.dumps(json.loads(metrics.read_text())), markup=False)
    console.print(f"\nnext: tether status {rec.id} · tether logs {rec.id} · tether jobs")
    return 0 if state == JobState.SUCCEEDED else 1
