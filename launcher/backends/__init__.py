"""The kinds of job, one handle each; `handle_for` is the one place that looks at which kind a
record is. Everything outside this package imports from here only:

    agent.py         a job under tether's agent on a host reached over SSH (or this machine)
    kaggle.py        a job in a Kaggle batch kernel (kaggle_kernel.py launches one)
    notebook.py      a job in a Colab notebook nothing can reach
"""

from __future__ import annotations

from typing import Dict, List, Mapping

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
          "notebook": ("launcher.backends.notebook", "NotebookJob")}
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


def label_of(rec: JobRecord) -> str:
    """Where a job runs, in words: `user@host:port`, `local`, `kaggle:user/slug`, ..."""
    return _kind(rec).label_of(rec)


def observe(records: List[JobRecord], places: Places, registry: Registry, environ: Mapping[str, str],
            recent: int = 0) -> List[JobView]:
    """Every job as it is now: each kind asks in its own way (the agent's, one command per
    host); the registry remembers what was seen. recent: progress rows too, where a kind can."""
    ctx = Context(places, registry, environ)
    by_kind: Dict[type, list] = {}
    for r in records:
        h = handle_for(r, ctx)
        by_kind.setdefault(type(h), []).append(h)
    views: Dict[str, JobView] = {}
    for kind, handles in by_kind.items():
        views.update(kind.observe_all(handles, recent))
    for v in views.values():
        if v.state.value != "UNREACHABLE":
            registry.set_state(v.record.id, v.state.value, v.answer.step)
    return [views[r.id] for r in records]


__all__ = ["Context", "JobHandle", "StopAsked", "Unsupported", "handle_for", "label_of", "reaches_host", "observe", "observe_on",
           "launch_kernel", "colab_notebook", "notebook_record", "quota_line"]
