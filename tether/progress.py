"""The reporting API (agent/progress.py), under a name no project shadows.

It is loaded from its file, not imported as `agent.progress`: the script's own folder comes
first on sys.path, and a project with an `agent.py` of its own would win the name `agent`.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_NAME = "tether._agent_progress"


def _load():
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "agent", "progress.py")
    spec = importlib.util.spec_from_file_location(_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


_impl = _load()
report = _impl.report
checkpoint_requested = _impl.checkpoint_requested
stop_requested = _impl.stop_requested
checkpoint_dir = _impl.checkpoint_dir
output_dir = _impl.output_dir
resume_path = _impl.resume_path
attempt = _impl.attempt

__all__ = ["report", "checkpoint_requested", "stop_requested", "checkpoint_dir", "output_dir", "resume_path",
           "attempt"]
