"""tether's ssh asks for AES-GCM first where the laptop encrypts AES in hardware (a pull over a
fast link is bound by the CPU: launcher/transport/ciphers.py). Seen where a user would look:
the cipher a real sshd agreed on, in its own log. A Ciphers line in the user's config, or a
server without AES-GCM, decides instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sshd import Sshd

from launcher.transport import ciphers
from launcher.transport.endpoint import Endpoint
from launcher.transport.openssh import OpenSshHost


@pytest.fixture
def logging_sshd(tmp_path):
    """A server that logs what each connection negotiated (LogLevel DEBUG1)."""
    def make(extra: str = "") -> Sshd:
        server = Sshd(tmp_path / f"sshd-{len(made)}", log_level="DEBUG1", extra_config=extra).setup().start()
        made.append(server)
        return server
    made: list = []
    yield make
    for server in made:
        server.stop()
        server.kill_sessions()


@pytest.fixture(autouse=True)
def aes_laptop(monkeypatch):
    """As on a laptop with AES instructions (this machine's own flags are tested below)."""
    monkeypatch.setattr(ciphers, "_aes", [True])


def _agreed(server: Sshd, config: Path, tmp_path: Path) -> str:
    """Runs a command through tether's OpenSSH host; the cipher the server says it agreed on."""
    log = server.dir / "sshd.log"
    before = log.read_text() if log.exists() else ""
    host = OpenSshHost(Endpoint(host="127.0.0.1", port=server.port, user="root", identity_file=str(server.client_key)),
                       tmp_path / "known_hosts", ssh_config=config, retry_s=0)
    done = host.run(["echo", "hello"])
    assert done.returncode == 0 and done.stdout == b"hello\n", done
    lines = [line for line in log.read_text()[len(before):].splitlines() if "kex: client->server cipher:" in line]
    assert lines, log.read_text()[-2000:]
    return lines[-1].split("cipher:")[1].split()[0]


def test_tether_asks_for_aes_gcm_and_a_users_ciphers_line_wins(tmp_path, logging_sshd):
    server = logging_sshd()
    config = tmp_path / "ssh_config"
    config.write_text("Host elsewhere\n  User nobody\n")
    assert _agreed(server, config, tmp_path) == "aes128-gcm@openssh.com"

    # The user's choice, in a file the config includes: tether says nothing about ciphers.
    (tmp_path / "ciphers.conf").write_text("Host *\n  Ciphers aes256-ctr\n")
    config.write_text(f"Include {tmp_path / 'ciphers.conf'}\nHost elsewhere\n  User nobody\n")
    assert _agreed(server, config, tmp_path) == "aes256-ctr"
    config.write_text("Host *\n  ciphers=chacha20-poly1305@openssh.com\n")
    assert _agreed(server, config, tmp_path) == "chacha20-poly1305@openssh.com"


def test_a_server_without_aes_gcm_agrees_on_its_own_cipher(tmp_path, logging_sshd):
    server = logging_sshd("Ciphers chacha20-poly1305@openssh.com,aes128-ctr\n")
    config = tmp_path / "ssh_config"
    config.write_text("")
    assert _agreed(server, config, tmp_path) == "chacha20-poly1305@openssh.com"


@pytest.mark.parametrize("cpuinfo, platform, expected", [
    ("processor\t: 0\nflags\t\t: fpu sse2 aes avx2\n", "linux", True),             # x86 with AES-NI
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2\n", "linux", False),                # x86 without
    ("processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n", "linux", True),      # arm64
    ("processor\t: 0\nFeatures\t: fp asimd\n", "linux", False),
    ("processor\t: 0\nflags\t\t: fpu aesni_like\n", "linux", False),                # a word, not a prefix
    (None, "linux", False),                                                         # no /proc
    (None, "darwin", True),                                                         # every Mac since 2010
    (None, "win32", False),
])
def test_aes_instructions_are_read_from_the_cpus_flags(tmp_path, cpuinfo, platform, expected):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert ciphers.has_aes_instructions(str(path), platform) is expected
    assert (ciphers.preferred(None, aes=expected, known=frozenset(ciphers.AES_FIRST)) is not None) is expected


def _fake_ssh(folder: Path, ciphers_known: str) -> Path:
    """An `ssh` first on PATH that knows only these ciphers (a FIPS build, one without
    OpenSSL) when asked `-Q cipher`, and is the real ssh otherwise."""
    import shutil

    real = shutil.which("ssh")
    folder.mkdir()
    fake = folder / "ssh"
    fake.write_text(f"""#!/bin/sh
if [ "$1" = -Q ]; then printf '%s\\n' {ciphers_known}; exit 0; fi
for arg in "$@"; do
  case "$arg" in Ciphers=*)
    for name in $(echo "${{arg#Ciphers=}}" | tr , ' '); do
      case " {ciphers_known} " in *" $name "*) ;; *) echo "command-line line 0: Bad SSH2 cipher spec" >&2; exit 255;; esac
    done;;
  esac
done
exec {real} "$@"
""")
    fake.chmod(0o755)
    return folder


@pytest.mark.parametrize("build, known, agreed", [
    ("fips", "aes128-ctr aes256-ctr aes128-gcm@openssh.com aes256-gcm@openssh.com", "aes128-gcm@openssh.com"),
    ("no OpenSSL", "aes128-ctr aes192-ctr aes256-ctr chacha20-poly1305@openssh.com", "chacha20-poly1305@openssh.com"),
])
def test_only_ciphers_this_ssh_knows_are_asked_for(tmp_path, logging_sshd, monkeypatch, build, known, agreed):
    """ssh refuses a Ciphers list naming one it does not know: the list holds only the names
    `ssh -Q cipher` gives, and without AES-GCM tether says nothing (the server's choice)."""
    server = logging_sshd()
    monkeypatch.setenv("PATH", f"{_fake_ssh(tmp_path / 'bin', known)}:{os.environ['PATH']}")
    config = tmp_path / "ssh_config"
    config.write_text("")
    assert _agreed(server, config, tmp_path) == agreed


def test_a_ciphers_line_anywhere_the_config_reaches_is_the_users_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    ssh_dir = tmp_path / ".ssh"
    (ssh_dir / "conf.d").mkdir(parents=True)
    (ssh_dir / "my dir").mkdir()
    config = ssh_dir / "config"
    cases = {
        "Ciphers aes256-ctr\n": True,
        "Host x\n\tciphers=+aes128-cbc\n": True,
        '"Ciphers" aes256-ctr\n': True,
        "# Ciphers aes256-ctr\nHost x\n  User me\n": False,
        "Include conf.d/*.conf\n": True,                    # relative to ~/.ssh, a glob
        '"Include" "my dir/x.conf"\n': True,                # a quoted path with a space
        "Include ~/.ssh/none.conf conf.d/other\n": False,
        "Include conf.d/unbalanced \"\n": True,              # a line it cannot read: the config decides
    }
    (ssh_dir / "conf.d" / "a.conf").write_text("Host *\n  Ciphers aes256-ctr\n")
    (ssh_dir / "conf.d" / "other").write_text("Host y\n  Port 2222\n")
    (ssh_dir / "my dir" / "x.conf").write_text("Ciphers aes256-ctr\n")
    for text, expected in cases.items():
        config.write_text(text)
        assert ciphers.sets_ciphers(config) is expected, text
        assert (ciphers.preferred(config, aes=True, known=frozenset(ciphers.AES_FIRST)) is None) is expected, text
    # Includes nested deeper than OpenSSH reads (16): not followed to the end, so the config decides.
    for depth in range(20):
        (ssh_dir / f"level{depth}").write_text(f"Include level{depth + 1}\n")
    assert ciphers.sets_ciphers(ssh_dir / "level0") is True
    (ssh_dir / "level3").write_text("Host z\n")
    assert ciphers.sets_ciphers(ssh_dir / "level0") is False
