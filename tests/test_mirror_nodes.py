"""Mirrors of a multi-node job, the fast parts: which step every node has (fake listings, in
milliseconds), the node prefixes in an hf:// repo, --on's addresses, and the host's push and
download under node-K/ against the local stand-in for the Hub."""

from __future__ import annotations

import io

import pytest
from fake_hub import Repo
from fake_pull_host import ListingClient
from rich.console import Console

from agent import backup
from agent.hub_mirror import download_newest, newest_on_hub, push, remote_backups
from agent.hub_client import api_for
from agent.paths import JobDir, backup_step, is_backup_name, is_node_prefix, node_prefix
from launcher.errors import NoBackupError, TetherError, UsageError
from launcher.jobs.resume_nodes import node_addresses
from launcher.transfer.node_backups import common_mirrored

A3, A6, A9 = "20260101T000003-step3", "20260101T000006-step6", "20260101T000009-step9"
B3, B6 = "20260101T000103-step3", "20260101T000106-step6"


def test_the_newest_step_every_node_has_is_picked_with_each_nodes_own_name():
    assert common_mirrored([[A3, A6, A9], [B3, B6]], "m") == (6, [A6, B6])
    assert common_mirrored([[A3], [B3, B6]], "m") == (3, [A3, B3])


def test_a_step_missing_on_one_node_is_never_picked():
    with pytest.raises(NoBackupError) as err:
        common_mirrored([[A9], [B3, B6]], "this laptop's mirror")
    assert "no step has a backup of every node in this laptop's mirror" in err.value.what
    with pytest.raises(NoBackupError):
        common_mirrored([[A3, A6], []], "m")


def test_hostile_or_stepless_names_count_for_nothing():
    hostile = ["../../etc-step9", "20260101T000009-step9/../x", "20260101T000009-step9\n", None, 9,
               "20260101T000009"]  # the last: a backup name, but with no step to match
    assert common_mirrored([[A6, A9], [B6] + hostile], "m") == (6, [A6, B6])


def test_of_two_backups_of_one_step_the_newer_is_taken():
    again = "20260101T000206-step6"
    assert common_mirrored([[A6], [again, B6]], "m") == (6, [A6, again])


def test_node_prefixes():
    assert node_prefix(None) == "" and node_prefix({"rank": 0, "count": 1}) == ""  # one host: as always
    assert node_prefix({"rank": 0, "count": 2}) == "node-0/" and node_prefix({"rank": 1, "count": 2}) == "node-1/"
    for bad in ("../", "node-1", "node-01/", "node-1/../", "/node-1/", "node-x/", None):
        assert not is_node_prefix(bad)
    assert is_node_prefix("") and is_node_prefix("node-12/")
    assert backup_step(A6) == 6 and backup_step("20260101T000009") is None and backup_step("x-step6") is None


def test_on_needs_one_ssh_address_per_node():
    assert node_addresses("j1", 2, "a, b") == ["a", "b"]
    with pytest.raises(UsageError) as err:
        node_addresses("j1", 2, "a")
    assert err.value.what == "job j1 runs on 2 nodes: --on needs 2 addresses, one per node (got 1)"
    with pytest.raises(UsageError) as err:
        node_addresses("j1", 2, "vast")
    assert "nodes: 2 cannot run on vast" in err.value.what
    with pytest.raises(UsageError):
        node_addresses("j1", 2, "a,local")


def _backups(job: JobDir, node: int, steps) -> list:
    names = []
    for step in steps:
        ckpt = job.checkpoints / f"step-{step}"
        ckpt.mkdir()
        (ckpt / f"shard-{node}.bin").write_text(f"node {node} step {step}")
        names.append(backup.take(job, f"step-{step}", step).name)
    return names


def test_each_node_pushes_and_prunes_under_its_own_prefix_only(tmp_path, hub):
    repo = "tester/nodes"
    hub.repos[repo] = Repo(private=True)
    hub.repos[repo].files.update({"README.md": b"mine", "20200101T000000-step1/MANIFEST.json": b"{}"})
    jobs = [JobDir(tmp_path / f"node{k}") for k in (0, 1)]
    names = []
    for k, job in enumerate(jobs):
        job.make_dirs()
        names.append(_backups(job, k, (3, 6, 9) if k == 0 else (3, 6)))
    base = {"token": hub.token, "repo": repo, "keep": 2, "endpoint": hub.url, "disable_xet": True}
    for k, job in enumerate(jobs):
        for name in names[k]:
            got = push(job, name, {**base, "prefix": f"node-{k}/"})
            assert got["ok"], got
    assert sorted(hub.backups(repo, "node-0/")) == names[0][1:]  # keep: 2 within node 0's folder
    assert sorted(hub.backups(repo, "node-1/")) == names[1]      # node 0's pruning left node 1's alone
    assert hub.repos[repo].files["README.md"] == b"mine"
    assert "20200101T000000-step1/MANIFEST.json" in hub.repos[repo].files  # a one-host job's: untouched
    assert push(jobs[0], names[0][-1], {**base, "prefix": "../"}) == {
        "ok": False, "error": "'../' is not a node's folder in the mirror (node-K/)"}

    listed = newest_on_hub({**base, "prefixes": ["node-0/", "node-1/", "node-2/"]})
    assert listed == {"ok": True, "names": [names[0][1:], names[1], []]}
    assert common_mirrored(listed["names"][:2], "hf://x") == (6, [names[0][1], names[1][1]])
    with pytest.raises(ValueError):
        newest_on_hub({**base, "prefixes": ["node-0/", "x/../"]})

    api = api_for(base, "test")
    assert remote_backups(api, repo) == ["20200101T000000-step1"]
    dest = tmp_path / "new-node1"
    got = download_newest(api, repo, dest, lambda n, why: None, "node-1/", 6)
    assert got == names[1][1]
    (shard,) = (dest / got).rglob("shard-*.bin")
    assert shard.read_text() == "node 1 step 6"
    assert sorted(p.name for p in dest.iterdir()) == [got]  # no temp folder left
    assert download_newest(api, repo, tmp_path / "none", lambda n, why: None, "node-1/", 9) is None


def test_the_hub_fetch_for_a_node_names_its_folder_and_step(tmp_path, hub):
    from launcher.hub.backups import HubMirror, fetch_to_laptop

    hub.repos["tester/empty"] = Repo(private=True)
    mirror = HubMirror("tester/empty", hub.token, hub.url, True)
    with pytest.raises(TetherError) as err:
        fetch_to_laptop(mirror, tmp_path / "dl", Console(file=io.StringIO()), {"prefix": "node-1/", "step": 6})
    assert "hf://tester/empty/node-1 holds no verified backup of step 6" in err.value.what, err.value.line()


def _record(**fields):
    from launcher.registry import JobRecord

    return JobRecord(**{"id": "feed0001", "name": "n", "project": "p", "spec_hash": "x", "provider": "ssh",
                        "endpoint": {"kind": "ssh", "host": "a"}, "remote_root": "/r", "job_dir": "/r/jobs/feed0001",
                        "python": "python3", "runtime_dir": "/r/runtime", **fields})


class _ListingHost:
    """A host's agent that lists one backup, and remembers being asked."""

    def __init__(self) -> None:
        self.asked: list = []

    def call(self, verb: str, *args, **kw):
        self.asked.append(verb)
        return [{"name": A6, "step": 6, "created": 1.0, "size": 1, "files": 1, "verified": True}]


def test_a_second_tether_command_leaves_a_mirror_folder_being_filled_alone(tmp_path):
    """`tether watch` and `tether status` at once: both would append to the same partial files,
    and the one whose copy failed to verify would delete the backup the other had verified."""
    import fcntl

    from launcher.settings import Places
    from launcher.transfer.laptop_backups import mirror_dir, sync_to_laptop

    places, rec, host = Places(tmp_path, tmp_path / "ssh_config"), _record(), _ListingHost()
    folder = mirror_dir(places, rec, 1)
    folder.mkdir(parents=True)
    with open(folder / ".mirroring.lock", "a") as held:  # the other command, mid-pull
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sync_to_laptop(host, rec, places, Console(file=io.StringIO()), node=1) == []
    assert host.asked == [] and not (folder / "backups").exists()


def test_several_addresses_for_a_one_host_job_are_refused_in_one_line(tmp_path):
    from launcher.jobs.resume import resume_on
    from launcher.registry import Registry
    from launcher.settings import Places
    from launcher.spec import JobSpec

    spec = JobSpec.model_validate({"name": "solo", "host": {"provider": "ssh", "address": "a"}, "run": "true",
                                   "backup": {"mirror": "laptop"}}).model_dump(mode="json")
    rec = _record(spec=spec, workdir=str(tmp_path))
    places = Places(tmp_path, tmp_path / "ssh_config")
    with pytest.raises(UsageError) as err:
        resume_on(rec, "gpu-a,gpu-b", places, Registry(tmp_path / "jobs.db"), Console(file=io.StringIO()), {})
    assert err.value.line() == ("job feed0001 runs on one host: --on takes one address, not 2 — "
                                "e.g. tether resume feed0001 --on gpu-a")


class _FetchingHost:
    def __init__(self, answer) -> None:
        self.answer = answer

    def call(self, verb: str, *args, **kw):
        return self.answer


def test_what_a_new_host_says_it_skipped_is_shown_inert_and_a_malformed_entry_ignored():
    from launcher.hub.backups import HubMirror, fetch

    out = io.StringIO()
    host = _FetchingHost({"ok": True, "name": A6, "step": 6,
                          "skipped": ["junk", None, {"name": "\x1b]0;owned\x07[red]x", "problem": "bad\x1b[2J"}]})
    got = fetch(host, "/j", HubMirror("me/r", "t", None, True), Console(file=out, width=300, color_system=None))
    assert got["name"] == A6
    assert "skipping backup [red]x on the Hub: bad" in out.getvalue() and "\x1b" not in out.getvalue()


def _long_name_host(name: str) -> ListingClient:
    """A host that lists a backup of the pattern of a backup's name, but longer than any file
    name may be, and its files."""
    return ListingClient([{"path": f"backups/{name}/MANIFEST.json", "size": 1}],
                         backups=[{"name": name, "step": 6, "created": 1.0, "size": 1, "files": 1, "verified": True}])


@pytest.mark.parametrize("digits", [300, 5000])
def test_a_backup_name_too_long_for_a_file_counts_for_nothing(tmp_path, digits):
    """It crashed tether status (no file name is that long; no int has 5000 digits either)."""
    from launcher.settings import Places
    from launcher.transfer.laptop_backups import mirror_dir, sync_to_laptop

    long = "20260101T000000-step" + "9" * digits
    places, rec = Places(tmp_path, tmp_path / "ssh_config"), _record()
    assert sync_to_laptop(_long_name_host(long), rec, places, Console(file=io.StringIO()), node=0) == []
    assert not (mirror_dir(places, rec, 0) / "backups").exists()
    assert common_mirrored([[A6, long], [B6, long]], "m") == (6, [A6, B6])
    assert backup_step(long) is None and not is_backup_name(long)
