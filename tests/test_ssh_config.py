"""An address's ~/.ssh/config settings are read without paramiko (launcher/transport/ssh_config.py)
exactly as paramiko's SSHConfig reads them; a config the lean reader is not sure of goes to
paramiko, as before."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import paramiko
import pytest

from launcher.transport.ssh_config import KEYS, lookup

REPO = Path(__file__).resolve().parent.parent

CONFIGS = [
    """
    Host gpu
        HostName 203.0.113.7
        Port 2222
        User root
        IdentityFile ~/.ssh/gpu_ed25519
    Host *
        User nobody
        IdentityFile ~/.ssh/id_ed25519
    """,
    """
    # a comment, then settings before any Host: they apply to all
    User = first
    Host web* !web3 "quoted host"
      HostName=10.0.0.1
      ProxyJump bastion
      HostKeyAlias web-key
      ProxyCommand none
      ProxyCommand ssh -W x bastion
    Host web3
      Port 23
      ProxyCommand "nc -x proxy 22"
      IdentityFile a
      IdentityFile b
    Host *
      IdentityFile a
      IdentityFile c
    """,
    """
    Host a b
        HostName first
    Host a
        HostName second
        Port 2200
        ProxyCommand ssh -W h:22 ~/jump
    """,
]
NAMES = ["gpu", "other", "web1", "web3", "quoted host", "a", "b", "203.0.113.7", "web"]


@pytest.mark.parametrize("config", CONFIGS)
def test_the_lean_reader_reads_what_paramiko_reads(tmp_path, config):
    path = tmp_path / "config"
    path.write_text(textwrap.dedent(config))
    theirs = paramiko.SSHConfig.from_path(str(path))
    for name in NAMES:
        ours = lookup(path, name)
        assert ours is not None, name
        expected = {k: v for k, v in theirs.lookup(name).items() if k in KEYS}
        assert ours == expected, name


@pytest.mark.parametrize("config", ["Match host gpu\n  User x\n", "Host gpu\n  HostName %h.example.com\n",
                                    "Host gpu\n  CanonicalizeHostname yes\n", "Host\n"])
def test_a_config_the_lean_reader_is_not_sure_of_is_left_to_paramiko(tmp_path, config):
    path = tmp_path / "config"
    path.write_text(config)
    assert lookup(path, "gpu") is None


def test_parsing_an_address_loads_no_paramiko(tmp_path):
    path = tmp_path / "config"
    path.write_text(textwrap.dedent(CONFIGS[0]))
    code = ("import sys; from pathlib import Path; from launcher.transport.address import parse_endpoint; "
            f"ep = parse_endpoint('gpu', Path({str(path)!r})); print(ep.host, ep.port, ep.user); "
            "print('paramiko' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.stdout.split() == ["203.0.113.7", "2222", "root", "False"], done
