"""`tether plot`: a job's curves as a PNG (matplotlib, the optional `plot` extra), the same
curves and markers as the dashboard's job page, for notebooks, issues and papers."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from launcher.show.curves import Marker, by_step, markers, names
from launcher.errors import UsageError
from launcher.jobs.history import JobHistory

COLOURS = {"restart": "#d97706", "stall": "#dc2626", "backup": "#16a34a", "deadline": "#7c3aed", "end": "#475569"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError("tether plot needs matplotlib", "pip install 'tether[plot]'") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def label(text: str) -> str:
    """A metric name from a workload, shown literally (no mathtext from a `$` in it)."""
    return text.replace("\\", "\\\\").replace("$", r"\$")[:64]


def choose(available: List[str], wanted: Optional[Sequence[str]]) -> List[str]:
    if not available:
        raise UsageError("the job has reported no numeric metrics yet",
                         "its workload reports them with agent.progress.report(step, loss=...)")
    if not wanted:
        return available[:12]
    missing = [w for w in wanted if w not in available]
    if missing:
        raise UsageError(f"no metric {missing[0]!r} in the job's progress",
                         f"it has: {', '.join(available[:20])}")
    return list(wanted)


def plot_png(hist: JobHistory, out: Path, title: str, wanted: Optional[Sequence[str]] = None) -> List[str]:
    """One panel per metric against step, with the run's markers; the metrics drawn."""
    rows = hist.progress.rows
    chosen = choose(names(rows), wanted)
    plt = _pyplot()
    marks: List[Marker] = [m for m in markers(hist.events.rows, rows) if m.step is not None]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 1.2 + 2.3 * len(chosen)), sharex=True, squeeze=False)
    try:
        for ax, name in zip(axes[:, 0], chosen):
            xs, ys = by_step(rows, name)
            ax.plot(xs, ys, color="#2563eb", linewidth=1.3, marker="." if len(xs) < 60 else None)
            ax.set_ylabel(label(name))
            ax.grid(alpha=0.3)
            for m in marks:
                ax.axvline(m.step, color=COLOURS.get(m.kind, "#64748b"), linestyle="--", linewidth=0.9)
        axes[-1, 0].set_xlabel("step")
        kinds = sorted({m.kind for m in marks})
        if kinds:
            axes[0, 0].legend(handles=[plt.Line2D([], [], color=COLOURS[k], linestyle="--", label=k) for k in kinds],
                              loc="upper right", fontsize=8)
        fig.suptitle(label(title))
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return chosen
