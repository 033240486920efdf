"""DESIGN's table of who may import whom, checked on the source itself: the agent is shipped
to hosts with only a system Python, and the launcher may read the agent's names but not its code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = {"agent", "launcher", "provisioning", "workloads", "tether"}
# Optional on the host: imported only inside a function or a try block, never at module level.
AGENT_OPTIONAL = {"psutil", "huggingface_hub"}


def imports(package: str):
    """(file, module, top_level) for every absolute import in a package."""
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                yield path.relative_to(REPO), name, id(node) in top


def root(name: str) -> str:
    return name.split(".")[0]


def test_agent_imports_only_itself_and_the_standard_library():
    bad = [(f, m) for f, m, _ in imports("agent")
           if root(m) not in sys.stdlib_module_names | {"agent"} | AGENT_OPTIONAL]
    assert not bad, bad
    unguarded = [(f, m) for f, m, top in imports("agent") if root(m) in AGENT_OPTIONAL and top]
    assert not unguarded, unguarded


def test_launcher_reads_only_the_agents_names():
    # runtime.py imports the agent and workloads packages only to find the files it ships.
    allowed = {"agent.paths", "agent.protocol"}
    shipping = {("launcher/transport/bootstrap.py", "agent"), ("launcher/transport/bootstrap.py", "workloads"),
                ("launcher/transport/bootstrap.py", "tether")}
    bad = [(f, m) for f, m, _ in imports("launcher") if root(m) in {"agent", "workloads"}
           and not any(m.startswith(a + ".") for a in allowed) and (str(f), m) not in shipping]
    assert not bad, bad


def test_provisioning_and_workloads_stay_in_their_lanes():
    assert not [(f, m) for f, m, _ in imports("provisioning") if root(m) in OURS - {"provisioning"}]
    bad = [(f, m) for f, m, _ in imports("workloads")
           if root(m) in OURS - {"workloads"} and root(m) != "tether"]
    assert not bad, bad


def test_scripts_reach_the_agent_only_by_a_name_no_project_shadows():
    """`tether` is a workload's import name: it loads agent/progress.py from its file, never
    by the name `agent`, which a project's own agent.py would take."""
    assert not [(f, m) for f, m, _ in imports("tether") if root(m) in OURS - {"tether"}]
    assert not [(f, m) for f, m, _ in imports("workloads") if root(m) == "agent"]
