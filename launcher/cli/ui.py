"""Commands to look at jobs: `tether ui` (the web dashboard) and `tether plot` (a PNG).
Registered on the main app."""

from __future__ import annotations

import time
import webbrowser
from pathlib import Path
from typing import List, Optional

import typer

from launcher.cli.app import app, command, session
from launcher.text import plain


@app.command()
@command
def ui(
    port: int = typer.Option(0, "--port", help="port on 127.0.0.1 (default: any free one)"),
    no_browser: bool = typer.Option(False, "--no-browser", help="print the address, open nothing"),
) -> None:
    """A live dashboard of every job in your browser, on 127.0.0.1 with a one-time token."""
    from launcher.dashboard import start

    s = session()
    running = start(s.places, port)
    typer.echo(f"tether dashboard: {running.url}")
    typer.echo("  served on 127.0.0.1 only; the token in the address is its key. Ctrl-C stops it.")
    if not no_browser:
        webbrowser.open(running.url)
    try:
        while running.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    typer.echo("dashboard stopped")


@app.command()
@command
def plot(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="the PNG to write (default ./<name>-<id>.png)"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="a metric to draw (repeat); default all"),
) -> None:
    """The job's metric curves against step, with restarts, stalls and backups marked, as a PNG."""
    from launcher.show.plot import plot_png

    s = session()
    handle = s.handle(job)
    rec = handle.record
    dest = out or Path(f"{rec.name}-{rec.id}.png")
    from launcher.jobs.history import FILES

    hist = handle.history(FILES)
    drawn = plot_png(hist, dest, f"{rec.name} ({rec.id})", metric)
    typer.echo(f"wrote {dest}: {', '.join(plain(n, 64) for n in drawn)} "
               f"({len(hist.progress.rows)} point(s))")
