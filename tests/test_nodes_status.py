"""What the laptop does with a multi-node job when it looks at it, the fast parts (no hosts):
`publish:` once it succeeds, and every node's hf:// mirror in `tether status`."""

from __future__ import annotations

import io

from rich.console import Console

from agent.protocol import JobState, MirrorSummary, StatusAnswer
from launcher.backends import Context
from launcher.backends.nodes import NodesJob
from launcher.jobs.view import JobView
from launcher.registry import JobRecord, Registry
from launcher.settings import Places

NODE = {"endpoint": {"kind": "ssh", "host": "a"}, "remote_root": "/r", "job_dir": "/r/jobs/feed0002",
        "python": "python3", "runtime_dir": "/r/runtime"}


def two_node_record(spec: dict) -> JobRecord:
    return JobRecord(id="feed0002", name="twin", project="p", spec_hash="x", provider="ssh",
                     endpoint=NODE["endpoint"], remote_root="/r", job_dir=NODE["job_dir"], python="python3",
                     runtime_dir="/r/runtime", spec=spec, nodes=[NODE, {**NODE, "endpoint": {"kind": "ssh", "host": "b"}}])


def test_publish_in_the_spec_publishes_a_succeeded_multi_node_job_once(tmp_path, monkeypatch):
    """As `tether publish JOB` does by hand: node 0's outputs (rank 0 writes the model)."""
    from launcher.hub import publish as hub_publish
    from launcher.jobs.reconcile import reconcile

    pulled, published = [], []

    def pull(self, dest, paths, console):
        pulled.append(self.record.endpoint["host"])
        dest.mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(NodesJob, "pull", lambda self, dest, paths, console: pull(self.nodes[0], dest, paths, console))
    monkeypatch.setattr(hub_publish, "publish", lambda rec, dest, repo, private, environ, console, spend:
                        published.append(repo) or hub_publish.Published(f"https://hub/{repo}", True, 1))
    rec = two_node_record({"publish": {"repo": "me/twin"}})
    ctx = Context(Places(tmp_path, tmp_path / "ssh_config"), Registry(tmp_path / "jobs.db"), {})
    done = JobView(rec, JobState.SUCCEEDED, nodes=[JobView(rec, JobState.SUCCEEDED)] * 2)
    out = io.StringIO()
    reconcile([done], ctx, Console(file=out, width=200))
    reconcile([done], ctx, Console(file=out, width=200))
    assert published == ["me/twin"] and pulled == ["a"], out.getvalue()
    assert "job feed0002 succeeded: published to https://hub/me/twin" in out.getvalue()


def test_status_shows_every_nodes_hf_mirror_named_by_node():
    from launcher.show.tables import status_grid

    rec = two_node_record({"backup": {"mirror": "hf://me/twin"}})
    mirrors = [MirrorSummary(repo="me/twin", last="20260101T000006-step6", last_step=6, pushed_age_s=5.0),
               MirrorSummary(repo="me/twin", error="403 \x1b[31m[bold]forbidden", failures=2)]
    nodes = [JobView(rec, JobState.RUNNING, answer=StatusAnswer(state=JobState.RUNNING, mirror=m), host=h)
             for m, h in zip(mirrors, ("a", "b"))]
    view = JobView(rec, JobState.RUNNING, answer=nodes[0].answer, nodes=nodes)
    out = io.StringIO()
    Console(file=out, width=300, color_system=None).print(status_grid(view))
    text = out.getvalue()
    assert "hf://me/twin/node-0/  20260101T000006-step6 (step 6)" in text, text
    assert "hf://me/twin/node-1/  nothing pushed yet" in text and "push failed (2x): 403 [bold]forbidden" in text
    assert "\x1b" not in text
    shown = view.as_json()["nodes"]
    assert [n["mirror"]["last"] for n in shown] == ["20260101T000006-step6", None] and shown[1]["mirror"]["failures"] == 2
