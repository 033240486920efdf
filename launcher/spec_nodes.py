"""Which providers can run one job on several hosts, and why the others cannot: said in one
line when the spec is read, before anything is rented."""

from __future__ import annotations

from typing import List, Optional

ONE_NODE = {
    "local": "the local provider is this one machine",
    "vast": "Vast.ai rents unrelated machines that are not guaranteed to reach each other's ports",
    "novita": "Novita instances are not guaranteed to reach each other (no private network between them)",
    "kaggle": "a Kaggle kernel is a single session",
    "colab": "a Colab notebook is a single session",
}


def nodes_problem(provider: str, nodes: int, addresses: List[str]) -> Optional[str]:
    """None when `nodes` hosts can be had this way; else what is wrong, in words."""
    if nodes == 1:
        return None
    if provider in ONE_NODE:
        return (f"nodes: {nodes} cannot run on {provider}: {ONE_NODE[provider]}; "
                "use provider ssh with one address per node")
    if len(addresses) != nodes:
        return f"nodes: {nodes} needs one address per node in host.address (got {len(addresses)})"
    return None


def checked_silence(seconds: float) -> float:
    """host.node_silence_s: how long a node may be heard nothing from before the job fails.
    Below 3 s a busy host's pause fails a healthy job; beyond 10 min a dead one is found late."""
    if not 3 <= seconds <= 600:  # NaN too
        raise ValueError(f"{seconds:g} is not from 3 to 600 seconds: how long a node may be silent before the "
                         "job fails (default 15)")
    return seconds
