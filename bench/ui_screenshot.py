"""The README's picture of the dashboard: the demo job (examples/demo, as `make ui` runs it) on
this machine, its page in headless Chromium while it trains. Run through
`python bench/ui_bench.py --screenshot docs/images/dashboard-job.png`."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path


def shoot(out: Path, at_step: int = 330) -> None:
    from browser import chromium
    from rich.console import Console

    from launcher.dashboard import start
    from launcher.cli.demo import EXAMPLE, UI_STEPS
    from launcher.registry import Registry
    from launcher.jobs.launch import launch
    from launcher.settings import places
    from launcher.spec import HostSpec, load_spec

    tmp = Path(tempfile.mkdtemp(prefix="ui-shot-"))
    os.environ["TETHER_HOME"] = str(tmp / "home")
    registry = Registry(places().registry)
    loaded = load_spec(EXAMPLE, os.environ, HostSpec(provider="local", root=str(tmp / "root")))
    spec = loaded.spec.model_copy(update={"run": f"python train.py --steps {UI_STEPS} --save-every 100",
                                          "backup": loaded.spec.backup.model_copy(update={"every_min": 0.15})})
    loaded = dataclasses.replace(loaded, spec=spec)  # backups every 9 s: markers on the curve
    rec = launch(loaded, places(), registry, Console(quiet=True)).record
    running = start(places(), every_s=1.0)
    try:
        with chromium(1400, 1000) as page:
            page.goto(running.url.replace("/?", f"/job/{rec.id}?"))
            page.wait_for_function(f"() => window.tetherCharts && window.tetherCharts['metrics/loss'] && "
                                   f"window.tetherCharts['metrics/loss'].plot.data[0].length > {at_step}",
                                   timeout=300000)
            page.check("#log-y")
            time.sleep(2.5)  # one more refresh of the log and the host charts
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": 1400, "height": 1000})
    finally:
        running.stop()
        registry.close()
        from launcher.backends import Context, handle_for
        stopper = Registry(places().registry)
        handle_for(rec, Context(places(), stopper, os.environ)).stop("the screenshot is taken")
        stopper.close()
        time.sleep(3)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out}")
