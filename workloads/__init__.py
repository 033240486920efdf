"""Workloads the agent runs: see DESIGN.md, the workload contract."""
