"""`tether demo`: the example job from examples/demo, run for real on the local host."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from agent.protocol import JobState, StatusAnswer

from .errors import UsageError
from .hosts import agent_for
from .launch import launch
from .pull import pull
from .spec import HostSpec, load_spec
from .views import metrics_text, state_text
from .text import inert

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
    seen = {"step": None}

    def show(answer: StatusAnswer) -> None:
        if answer.step != seen["step"]:
            seen["step"] = answer.step
            console.print(f"   {state_text(answer.state)}  step {seen['step']}  {metrics_text(answer.metrics)}")

    with agent_for(rec, s.places) as client:
        channel = client.channel(rec.remote_root)
        answer = channel.wait_for_end(rec.id, timeout=600, on_answer=show)
        channel.close()
        state = answer.state
        s.registry.set_state(rec.id, state.value)
        console.print(f"   finished: {state_text(state)}  {inert(answer.reason or '')}")

        console.print(f"[bold]3. pull[/] outputs into {dest}/")
        result = pull(client, rec.job_dir, rec.artifacts, dest, console)
    for path in result.pulled + result.unchanged:
        console.print(f"   {dest / path}", markup=False)
    metrics = dest / "outputs" / "metrics.json"
    if metrics.is_file():
        console.print("   metrics.json: " + json.dumps(json.loads(metrics.read_text())), markup=False)
    console.print(f"\nnext: tether status {rec.id} · tether logs {rec.id} · tether jobs")
    return 0 if state == JobState.SUCCEEDED else 1
