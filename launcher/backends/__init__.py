"""The kinds of job, one handle each; `handle_for` is the one place that looks at which kind a
record is. Everything outside this package imports from here only:

    agent.py         a job under tether's agent on a host reached over SSH (or this machine)
    kaggle.py        a job in a Kaggle batch kernel (kaggle_kernel.py launches one)
    notebook.py      a job in a Colab notebook nothing can reach
    nodes.py         a job on several hosts: one AgentJob per node
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import dataclasses
import importlib
from typing import Any

from launcher.backends.base import Context, JobHandle, StopAsked, Unsupported
from launcher.jobs.view import JobView
from launcher.registry import JobRecord, Registry
from launcher.settings import Places

# Each kind's module is imported when a job of that kind is met: a status of agent jobs never
# loads the Kaggle client.
_KINDS = {"agent": ("launcher.backends.agent", "AgentJob"),
          "kaggle": ("launcher.backends.kaggle", "KaggleKernelJob"),
          "notebook": ("launcher.backends.notebook", "NotebookJob"),
          "nodes": ("launcher.backends.nodes", "NodesJob")}
_ELSEWHERE = {"observe_on": "launcher.backends.agent", "quota_line": "launcher.backends.kaggle",
              "launch_kernel": "launcher.backends.kaggle_kernel", "colab_notebook": "launcher.backends.notebook",
              "notebook_record": "launcher.backends.notebook"}


def _kind(rec: JobRecord) -> Any:
    module, name = _KINDS[rec.kind]
    return getattr(importlib.import_module(module), name)


def __getattr__(name: str) -> Any:  # the functions re-exported from the kinds' modules, lazily
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(name)


def handle_for(rec: JobRecord, ctx: Context) -> JobHandle:
    return _kind(rec)(rec, ctx)


def reaches_host(rec: JobRecord) -> bool:
    """Whether an agent on a host tether connects to runs it (the dashboard pools those)."""
    return _kind(rec).reaches_host


def home_record(rec: JobRecord, node: Optional[int] = None) -> JobRecord:
    """The record of the host that holds a job's progress, events and logs: node 0's for a
    multi-node job (rank 0's curves), the job's own otherwise; node: node K's (the dashboard's
    pick), checked against the job's nodes."""
    if node is not None:
        from launcher.backends.nodes import check_node, node_record

        check_node(rec, node)
        return node_record(rec, rec.nodes[node])  # type: ignore[index]
    home = getattr(_kind(rec), "home_record", None)
    return home(rec) if home is not None else rec


def label_of(rec: JobRecord) -> str:
    """Where a job runs, in words: `user@host:port`, `local`, `kaggle:user/slug`, ..."""
    return _kind(rec).label_of(rec)


def observe(records: List[JobRecord], places: Places, registry: Registry, environ: Mapping[str, str],
            recent: int = 0) -> List[JobView]:
    """Every job as it is now: each kind asks in its own way (the agent's, one command per
    host); the registry remembers what was seen. recent: progress rows too, where a kind can."""
    ctx = Context(places, registry, environ)
    kept = {} if len(records) == 1 else {r.id: v for r in records if (v := _kept_view(r)) is not None}
    by_kind: Dict[type, list] = {}
    for r in records:
        if r.id not in kept:
            h = handle_for(r, ctx)
            by_kind.setdefault(type(h), []).append(h)
    views: Dict[str, JobView] = {}
    for kind, handles in by_kind.items():
        views.update(kind.observe_all(handles, recent))
    for v in views.values():
        if v.state.value != "UNREACHABLE":
            registry.set_state(v.record.id, v.state.value, v.answer.step)
        if _may_keep(v):
            registry.set_final(v.record.id, v.answer.to_json())
    views.update(kept)
    return [views[r.id] for r in records]


def _may_keep(v: JobView) -> bool:
    """An ended job whose answer can no longer change, and for which the laptop has nothing
    left to do (no backups to mirror here, nothing to publish, no instance to end)."""
    r = v.record
    return (v.state.value in ("SUCCEEDED", "FAILED", "STOPPED") and r.kind == "agent" and r.mirror != "laptop"
            and not ((r.spec or {}).get("publish") or {}).get("repo") and not r.instance_alive)


def _kept_view(r: JobRecord) -> "JobView | None":
    """The view of an ended job from its kept answer, its ages moved on by the time since."""
    import time
    from agent.protocol import StatusAnswer

    kept = r.kept_answer
    if kept is None:
        return None
    try:
        answer = StatusAnswer.from_json(kept["answer"])
    except ValueError:
        return None
    since = max(0.0, time.time() - float(kept.get("at") or time.time()))
    answer = dataclasses.replace(answer, **{k: getattr(answer, k) + since for k in
                                            ("heartbeat_age_s", "last_output_age_s", "last_progress_age_s")
                                            if getattr(answer, k) is not None})
    return JobView(r, answer.state, reason=answer.reason, answer=answer, spend_usd=answer.spend_usd or r.spend,
                   host=label_of(r))


__all__ = ["Context", "JobHandle", "StopAsked", "Unsupported", "handle_for", "home_record", "label_of", "reaches_host", "observe", "observe_on",
           "launch_kernel", "colab_notebook", "notebook_record", "quota_line"]
