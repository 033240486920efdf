"""Which backup each node of a multi-node job gives to `pull --backup --all-nodes`: the same
step from every node (a ZeRO checkpoint is every node's shards of one step), from listings a
host could have made up; and the node flags refused where they mean nothing."""

from __future__ import annotations

import pytest
from conftest import finished_ssh_job

from agent.protocol import BackupInfo

from launcher.errors import NoBackupError, NotFoundError
from launcher.transfer.node_backups import pick_per_node


def b(name: str, step, verified=True) -> BackupInfo:
    return BackupInfo(name=name, step=step, verified=verified)


NODE0 = [b("20250101T000000-step10", 10), b("20250101T000100-step20", 20), b("20250101T000200-step30", 30)]
NODE1 = [b("20250101T000001-step10", 10), b("20250101T000101-step20", 20),
         b("20250101T000201-step30", 30, verified=False)]


def test_latest_is_the_newest_step_every_node_holds_verified():
    # node 0's step 30 is no use: node 1's copy of it does not verify
    assert pick_per_node([NODE0, NODE1], "latest") == ["20250101T000100-step20", "20250101T000101-step20"]


def test_a_name_from_one_node_picks_that_step_on_each():
    assert pick_per_node([NODE0, NODE1], "20250101T000001-step10") == ["20250101T000000-step10",
                                                                        "20250101T000001-step10"]


@pytest.mark.parametrize("listings, which, error, words", [
    ([NODE0, NODE1], "20250101T000200-step30", NoBackupError, "node 1 has no verified backup of step 30"),
    ([NODE0, []], "latest", NoBackupError, "no step has a verified backup on every node"),
    ([NODE0, NODE1], "20990101T000000-step1", NotFoundError, "no node has a backup named"),
    ([NODE0, [b("20250101T000001-step10", True), b("20250101T000002-step20", 20, verified="yes")]], "latest",
     NoBackupError, "no step has a verified backup on every node"),   # a host's True is not step 1
])
def test_no_common_step_is_one_clear_error(listings, which, error, words):
    with pytest.raises(error, match=words):
        pick_per_node(listings, which)


@pytest.mark.parametrize("args, words", [
    (("pull", "--node", "1"), "--node is for a multi-node job"),
    (("pull", "--backup", "latest", "--all-nodes"), "--all-nodes is for a multi-node job"),
    (("backups", "--node", "0"), "--node is for a multi-node job"),
    (("logs", "--node", "1"), "--node is for a multi-node job"),
])
def test_node_flags_on_a_one_host_job_are_refused(tether, project, host_root, args, words):
    job = finished_ssh_job(tether, project, host_root, "one")
    r = tether(args[0], job, *args[1:])
    out = (r.stderr + r.stdout).strip().splitlines()
    assert r.exit_code == 2 and len(out) == 1 and words in out[0], r
