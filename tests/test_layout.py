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
    # The causal-lm options have one schema, the workload's, standard library only.
    schema = "workloads.causal_lm.config"
    bad = [(f, m) for f, m, _ in imports("launcher") if root(m) in {"agent", "workloads"}
           and not any(m.startswith(a + ".") for a in allowed) and (str(f), m) not in shipping
           and not m.startswith(schema + ".")]
    assert not bad, bad


def test_the_workload_schema_the_launcher_reads_is_standard_library_only():
    path = REPO / "workloads" / "causal_lm" / "config.py"
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = [a.name for n in top if isinstance(n, ast.Import) for a in n.names] + \
        [n.module for n in top if isinstance(n, ast.ImportFrom)]
    assert all(root(x) in sys.stdlib_module_names | {"__future__"} for x in modules), modules


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


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _launcher_graph():
    """module -> the launcher modules it imports (anywhere in it, lazily or not)."""
    modules = {_module(p) for p in (REPO / "launcher").rglob("*.py")}
    graph = {}
    for path in sorted((REPO / "launcher").rglob("*.py")):
        me = _module(path)
        graph[me] = set()
        for _, name, _ in imports_of(path):
            while name and name not in modules:  # launcher.x.y.Name -> launcher.x.y
                name = name.rpartition(".")[0]
            if name and name != me:
                graph[me].add(name)
    return graph


def imports_of(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("launcher"):
            for a in node.names:
                yield path, f"{node.module}.{a.name}", True
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("launcher"):
                    yield path, a.name, True


def test_launcher_has_no_import_cycles():
    graph = _launcher_graph()
    # A package importing its own modules (to re-export them) is its face, not a cycle.
    for mod in graph:
        graph[mod] = {m for m in graph[mod] if not mod.startswith(m + ".")}
    seen, stack, cycles = set(), [], []

    def visit(mod):
        if mod in stack:
            cycles.append(stack[stack.index(mod):] + [mod])
            return
        if mod in seen:
            return
        seen.add(mod)
        stack.append(mod)
        for dep in sorted(graph.get(mod, ())):
            visit(dep)
        stack.pop()

    for mod in sorted(graph):
        visit(mod)
    assert not cycles, cycles


def test_kinds_of_job_are_reached_only_through_their_handles():
    """Outside launcher/backends/, a kind of job is never named: only the package's face
    (handle_for, observe, ...) is imported; and the CLI never reaches a host itself."""
    graph = _launcher_graph()
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if d.startswith("launcher.backends.") and not m.startswith("launcher.backends")]
    assert not bad, bad
    cli = [(m, d) for m, deps in graph.items() for d in deps
           if m.startswith("launcher.cli") and d.startswith("launcher.transport")]
    assert not cli, cli


def test_no_module_over_400_lines_and_no_function_over_60():
    """DESIGN's style rule, checked: small modules with one job each, functions that fit a screen."""
    big, long = [], []
    for package in ("agent", "launcher", "provisioning", "workloads", "tether"):
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text()
            if len(text.splitlines()) > 400:
                big.append((str(path.relative_to(REPO)), len(text.splitlines())))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        node.end_lineno - node.lineno + 1 > 60:
                    long.append((str(path.relative_to(REPO)), node.name, node.end_lineno - node.lineno + 1))
    assert not big, big
    assert not long, long
