"""A job in a Kaggle batch kernel: no host of its own to reach. Its state, log and outputs come
back through the kernel calls (provisioning/kaggle.py); the session's end is its deadline.
Launching one: kaggle_kernel.py."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Dict, List, Mapping, Optional, Sequence

from rich.console import Console

from agent.protocol import FailureClass, JobState, StatusAnswer
from provisioning.base import ProviderError
from provisioning.kaggle import TERMINAL, KaggleKernels, download

from launcher.backends.base import CannotReach, Context, StopAsked, Unsupported
from launcher.errors import SpecError, TetherError, UsageError, provider_errors
from launcher.jobs.view import JobView
from launcher.registry import JobRecord
from launcher.transfer.pull import PullResult, safe_destination

KAGGLE_CODE = "https://www.kaggle.com/code"


def _kernels(environ: Mapping[str, str]) -> KaggleKernels:
    with provider_errors(SpecError):  # no credentials, no client: a setting to fix
        return KaggleKernels(environ)


def _kaggle(fn):
    """A Kaggle call: its failures as the CLI's one line (a refused key is AUTH)."""
    with provider_errors():
        return fn()


def kernel_view(rec: JobRecord, environ: Mapping[str, str]) -> dict:
    """The job's state from the kernel's, and from its state.json output once it has one. A
    job on a shared kernel that has since run a later version keeps the state it ended in."""
    kernels = _kernels(environ)
    slug = rec.endpoint["slug"]
    status, failure = _kaggle(lambda: kernels.status(slug))
    moved_on = bool(rec.endpoint.get("shared")) and JobState(rec.last_state).is_terminal
    if moved_on and status not in TERMINAL:
        return _superseded(rec)
    if status in ("QUEUED", "NEW_SCRIPT"):
        return {"state": JobState.PENDING.value, "reason": f"kernel {status.lower()}"}
    if status in ("RUNNING", "CANCEL_REQUESTED"):
        return {"state": JobState.RUNNING.value, "reason": f"kernel {status.lower()}"}
    if status == "CANCEL_ACKNOWLEDGED":
        return {"state": JobState.STOPPED.value, "reason": "kernel cancelled"}
    out = _kaggle(lambda: kernels.output(slug))
    state_url = dict(out.files).get(f"{rec.job_dir}/state.json")
    if moved_on and not state_url:
        return _superseded(rec)
    if status == "COMPLETE" and state_url:
        import requests
        st = requests.get(state_url, timeout=60).json()
        return {"state": st["state"], "reason": st.get("reason"), "failure": st.get("failure"),
                "exit_code": st.get("exit_code")}
    return {"state": JobState.FAILED.value, "failure": FailureClass.INFRA.value,
            "reason": f"kernel ended {status}: {failure or 'no state.json in its output'}"}


def _superseded(rec: JobRecord) -> dict:
    return {"state": rec.last_state,
            "reason": f"kernel {rec.endpoint['user']}/{rec.endpoint['slug']} has run a later launch since; "
                      "this job's session had ended"}


def kernel_log(rec: JobRecord, environ: Mapping[str, str]) -> str:
    """The session's log as text (Kaggle gives it once the session has ended)."""
    kernels = _kernels(environ)
    return _kaggle(lambda: kernels.output(rec.endpoint["slug"])).log


def kernel_stop(rec: JobRecord, environ: Mapping[str, str]) -> None:
    """Kaggle cancels a session only by its session id, which no public call gives for a
    pushed kernel: with one on record it is cancelled; without, one line says what to do."""
    session_id = rec.endpoint.get("session_id")
    page = f"{KAGGLE_CODE}/{rec.endpoint['user']}/{rec.endpoint['slug']}"
    if not session_id:
        raise TetherError(f"kaggle: tether cannot stop job {rec.id}'s kernel: Kaggle cancels a session only by "
                          "its session id, which it does not give for a pushed kernel",
                          f"stop the session on {page} (or it ends at its timeout)")
    kernels = _kernels(environ)
    _kaggle(lambda: kernels.cancel(int(session_id)))


def kernel_pull(rec: JobRecord, dest: Path, environ: Mapping[str, str],
                paths: Optional[Sequence[str]] = None) -> PullResult:
    """The job's artifacts (or paths) from the kernel's output; names are checked like any pull."""
    kernels = _kernels(environ)
    out = _kaggle(lambda: kernels.output(rec.endpoint["slug"]))
    prefix = rec.job_dir.rstrip("/") + "/"
    wanted = [a.rstrip("/") for a in (paths or rec.artifacts or ["outputs/"])]
    result = PullResult(dest=dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, url in out.files:
        if not name.startswith(prefix):
            continue
        rel = name[len(prefix):]
        if not any(rel == w or rel.startswith(w + "/") for w in wanted):
            continue
        target = safe_destination(dest, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        result.bytes += _kaggle(lambda: download(url, target))
        result.pulled.append(rel)
    return result


def quota_line(environ: Mapping[str, str]) -> Optional[str]:
    try:
        used, total = KaggleKernels(environ).gpu_quota_hours() or (None, None)
    except ProviderError as exc:
        return f"kaggle: {exc.what}" + (f" ({exc.todo})" if exc.todo else "")
    if used is None:
        return None
    return f"kaggle: free GPU sessions, {max(0.0, total - used):.1f} of {total:.0f} h left this week"


class KaggleKernelJob(CannotReach):
    def __init__(self, record: JobRecord, ctx: Context) -> None:
        self.record, self.ctx = record, ctx

    def label(self) -> str:
        return self.label_of(self.record)

    @staticmethod
    def label_of(rec: JobRecord) -> str:
        return f"kaggle:{rec.endpoint['user']}/{rec.endpoint['slug']}"

    def why(self) -> Unsupported:
        return Unsupported(f"job {self.record.id} runs in a Kaggle batch kernel: there is no host to reach",
                           "status, logs, pull and stop work through the kernel")

    @classmethod
    def observe_all(cls, handles: List["KaggleKernelJob"], recent: int = 0) -> Dict[str, JobView]:
        return {h.record.id: h.observe() for h in handles}

    def observe(self) -> JobView:
        r = self.record
        try:
            answer = StatusAnswer.from_json(kernel_view(r, self.ctx.environ))
        except TetherError as exc:
            return JobView(r, JobState.UNREACHABLE, reason=exc.line(), error=exc, host=self.label())
        except (ProviderError, ValueError) as exc:  # the provider's own errors: cannot ask now
            return JobView(r, JobState.UNREACHABLE, reason=f"kaggle: {getattr(exc, 'what', exc)}", host=self.label())
        return JobView(r, answer.state, reason=answer.reason, answer=answer, host=self.label())

    def logs(self, tail: int, follow: bool, which: str, out: BinaryIO) -> None:
        """Kaggle gives a session's log once it has ended: printed once, never followed."""
        if which != "workload":
            raise Unsupported(f"job {self.record.id}'s kernel gives one log, the session's", "drop --file")
        lines = kernel_log(self.record, self.ctx.environ).splitlines()
        out.write(("\n".join(lines[-tail:]) + "\n" if tail and lines else "").encode())
        out.flush()

    def pull(self, dest: Path, paths: Optional[Sequence[str]], console: Console) -> PullResult:
        return kernel_pull(self.record, dest, self.ctx.environ, paths)

    def pull_backup(self, which: str, dest: Path, console: Console) -> PullResult:
        raise Unsupported("a Kaggle job's backups are in its kernel output", "tether pull JOB brings its artifacts")

    def stop(self, reason: str) -> StopAsked:
        kernel_stop(self.record, self.ctx.environ)
        return StopAsked(f"asked Kaggle to cancel job {self.record.id}'s kernel", wait=False)

    def resume(self) -> str:
        raise Unsupported(f"job {self.record.id}'s Kaggle session cannot be started again",
                          f"tether resume {self.record.id} --on HOST carries it on from its hf:// mirror")

    def before_move(self, console: Console) -> None:
        """Two copies must not train: the kernel must have ended."""
        with provider_errors():
            state = JobState(kernel_view(self.record, self.ctx.environ)["state"])
        if not state.is_terminal:
            raise UsageError(f"job {self.record.id}'s Kaggle kernel is still running: two copies would train",
                             f"stop it first (tether stop {self.record.id}), or wait for its session to end")
