"""Google Colab (and Kaggle notebooks with internet on): no provisioning API. A person runs one
notebook cell that starts sshd with our public key and a tunnel, and prints the address; the
launcher then attaches to it like any SSH host. Opt-in: Colab's terms restrict remote access
on managed runtimes, so tether never does this by itself."""

from __future__ import annotations

import re
import shutil
from typing import Callable, Optional

from .base import ProviderError, SshEndpoint

CLOUDFLARED_DOWNLOAD = ("https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/"
                        "downloads/")
SESSION_HOURS = 12.0  # Colab's documented maximum; sessions end sooner when idle

_CELL = '''# tether bootstrap: makes this runtime an SSH host for `tether attach`. Check your
# provider's terms on remote access before running it. It installs openssh-server, trusts
# one public key (tether's), starts sshd and a {tunnel} tunnel, and prints the address.
import os, pathlib, re, subprocess, time, urllib.request

PUBKEY = "{public_key}"
subprocess.run(["apt-get", "-qq", "update"], check=True)
subprocess.run(["apt-get", "-qq", "install", "-y", "openssh-server"], check=True)
ssh = pathlib.Path("/root/.ssh")
ssh.mkdir(mode=0o700, exist_ok=True)
with open(ssh / "authorized_keys", "a") as f:
    f.write(PUBKEY + "\\n")
os.makedirs("/run/sshd", exist_ok=True)
subprocess.run(["/usr/sbin/sshd", "-o", "PasswordAuthentication=no"], check=True)
{tunnel_code}'''

_CLOUDFLARED = '''exe = "/usr/local/bin/cloudflared"
if not os.path.exists(exe):
    urllib.request.urlretrieve(
        "https://github.com/cloudflare/cloudflared/releases/latest/download/cloudflared-linux-amd64", exe)
    os.chmod(exe, 0o755)
log = open("/tmp/cloudflared.log", "w")
subprocess.Popen([exe, "tunnel", "--url", "ssh://localhost:22"], stdout=log, stderr=log)
for _ in range(90):
    found = re.search(r"https://([a-z0-9-]+\\.trycloudflare\\.com)", open("/tmp/cloudflared.log").read())
    if found:
        break
    time.sleep(1)
print("on your laptop:  tether attach JOB.yaml", found.group(1) if found else "<no tunnel yet: see /tmp/cloudflared.log>")
'''

# The authtoken is a notebook secret: Colab's Secrets panel read through google.colab.userdata
# (googlecolab/colabtools google/colab/userdata.py `get`), Kaggle's through kaggle_secrets
# (Kaggle/docker-python patches/kaggle_secrets.py), else the environment.
NGROK_TOKEN_CODE = '''def ngrok_token():
    for read in (lambda: __import__("google.colab.userdata", fromlist=["get"]).get("NGROK_AUTHTOKEN"),
                 lambda: __import__("kaggle_secrets").UserSecretsClient().get_secret("NGROK_AUTHTOKEN"),
                 lambda: os.environ["NGROK_AUTHTOKEN"]):
        try:
            value = read()
        except Exception:
            continue
        if value:
            return value
    return None
'''

# ngrok TCP endpoints need an account with a card on file, even on the free plan
# (ngrok.com/docs/errors/err_ngrok_8013; "TCP endpoints are only available on a free plan after
# adding a valid payment method").
_NGROK = NGROK_TOKEN_CODE + '''token = ngrok_token()
if not token:
    raise SystemExit("tether: add your ngrok authtoken as the secret NGROK_AUTHTOKEN (Colab: the key icon, "
                     "Secrets, and grant this notebook access; Kaggle: Add-ons > Secrets), then run this cell again")
print("tether: ngrok TCP tunnels need an ngrok account with a verified card (ERR_NGROK_8013 otherwise)")
subprocess.run(["pip", "-q", "install", "pyngrok"], check=True)
from pyngrok import ngrok
ngrok.set_auth_token(token)
address = ngrok.connect(22, "tcp").public_url.replace("tcp://", "")
print("on your laptop:  tether attach JOB.yaml", address)
'''


def bootstrap_cell(public_key: str, tunnel: str = "cloudflared") -> str:
    if tunnel not in ("cloudflared", "ngrok"):
        raise ProviderError(f"unknown tunnel {tunnel!r}", "use cloudflared or ngrok")
    code = _CLOUDFLARED if tunnel == "cloudflared" else _NGROK
    return _CELL.format(public_key=public_key.strip(), tunnel=tunnel, tunnel_code=code)


_CLOUDFLARE_HOST = re.compile(r"^(?:https://)?([a-z0-9-]+\.trycloudflare\.com)/?$")
_HOST_PORT = re.compile(r"^(?:tcp://)?([A-Za-z0-9.-]+):(\d+)$")


def require_cloudflared(which: Callable[[str], Optional[str]] = shutil.which) -> None:
    """A trycloudflare tunnel is reached through `cloudflared access ssh` on this laptop."""
    if which("cloudflared") is None:
        raise ProviderError("cloudflared is not installed on this laptop: a cloudflared tunnel is reached "
                            "through `cloudflared access ssh`", f"install it ({CLOUDFLARED_DOWNLOAD}) and run "
                            "this again, or use the ngrok cell (tether colab-cell --tunnel ngrok)")


def endpoint_for(address: str, identity_file: str,
                 which: Callable[[str], Optional[str]] = shutil.which) -> SshEndpoint:
    """What the cell printed -> how to reach it: a trycloudflare name (through
    `cloudflared access ssh`, which must be installed here) or host:port (an ngrok TCP address)."""
    m = _CLOUDFLARE_HOST.match(address.strip())
    if m:
        require_cloudflared(which)
        name = m.group(1)
        return SshEndpoint(host=name, port=22, user="root", identity_file=identity_file,
                           proxy_command=f"cloudflared access ssh --hostname {name}",
                           host_key_alias=f"colab-{name}")
    m = _HOST_PORT.match(address.strip())
    if m:
        host, port = m.group(1), int(m.group(2))
        return SshEndpoint(host=host, port=port, user="root", identity_file=identity_file,
                           host_key_alias=f"colab-{host}-{port}")
    raise ProviderError(f"{address!r} is not an address the bootstrap cell prints",
                        "give NAME.trycloudflare.com or HOST:PORT")
