"""tether's ssh asks for AES-GCM first where the laptop encrypts AES in hardware (a pull over a
fast link is bound by the CPU: launcher/transport/ciphers.py). Seen where a user would look:
the cipher a real sshd agreed on, in its own log. A Ciphers line in the user's config, or a
server without AES-GCM, decides instead."""

from __future__ import annotations

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
    aes = ciphers.has_aes_instructions()
    assert _agreed(server, config, tmp_path) == ("aes128-gcm@openssh.com" if aes else "chacha20-poly1305@openssh.com")

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
    assert (ciphers.preferred(None, aes=expected) is not None) is expected
