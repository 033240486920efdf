"""Resource thresholds (spec `watch:`): a crossing becomes one event, and stays listed in the
heartbeat's warnings until it clears."""

from __future__ import annotations

from typing import Any, Dict, List

from .book import StatusBook
from .plan import RunPlan


class ResourceWatch:
    def __init__(self, plan: RunPlan, book: StatusBook) -> None:
        self.plan, self.book = plan, book
        self.active: Dict[str, str] = {}

    def check(self, res: Dict[str, Any]) -> List[str]:
        now: Dict[str, str] = {}
        p = self.plan
        free = res.get("disk_free_gb")
        if p.min_disk_free_gb is not None and free is not None and free < p.min_disk_free_gb:
            now["disk"] = f"disk free {free} GB is below {p.min_disk_free_gb} GB"
        used, total = res.get("ram_used_gb"), res.get("ram_total_gb")
        if p.max_ram_percent is not None and used is not None and total:
            pct = 100.0 * used / total
            if pct > p.max_ram_percent:
                now["ram"] = f"RAM {pct:.0f}% used, above {p.max_ram_percent:g}%"
        for g in res.get("gpus") or []:
            if p.max_gpu_mem_percent is not None and g.get("mem_total_mb"):
                pct = 100.0 * (g.get("mem_used_mb") or 0) / g["mem_total_mb"]
                if pct > p.max_gpu_mem_percent:
                    now[f"gpu{g['index']}"] = f"GPU{g['index']} memory {pct:.0f}% used, above {p.max_gpu_mem_percent:g}%"
        for key, text in now.items():
            if key not in self.active:
                self.book.event("resource-warning", what=key, message=text)
        for key in set(self.active) - set(now):
            self.book.event("resource-ok", what=key)
        self.active = now
        return sorted(now.values())
