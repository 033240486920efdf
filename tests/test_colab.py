"""Colab: the bootstrap cell, and `tether attach` through a tunnel's ProxyCommand. The tunnel
client is a stand-in `cloudflared` on PATH that relays to the test sshd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import launched_id, wait_state

from launcher.errors import ExitCode

FAKE_CLOUDFLARED = """#!{python}
# Stand-in for `cloudflared access ssh --hostname H`: relays stdin/stdout to the test sshd.
import os, socket, sys, threading
with open(os.environ["FAKE_TUNNEL_LOG"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
s = socket.create_connection(("127.0.0.1", int(os.environ["FAKE_TUNNEL_PORT"])))
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(data)
threading.Thread(target=up, daemon=True).start()
while True:
    data = s.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


def test_cell_then_attach_through_the_tunnel(tether, project, own_sshd, tmp_path, monkeypatch, rsync_sync):
    cell = tether("colab-cell")
    assert cell.exit_code == 0
    compile(cell.stdout, "cell", "exec")  # it is Python a notebook can run
    pub = (tmp_path / "tether-home" / "id_ed25519.pub").read_text().strip()
    assert f'PUBKEY = "{pub}"' in cell.stdout and "trycloudflare" in cell.stdout
    with open(own_sshd.dir / "authorized_keys", "a") as f:  # what the cell does on the runtime
        f.write(pub + "\n")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "cloudflared"
    fake.write_text(FAKE_CLOUDFLARED.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TUNNEL_PORT", str(own_sshd.port))
    monkeypatch.setenv("FAKE_TUNNEL_LOG", str(tmp_path / "tunnel.log"))

    root = tmp_path / "root"
    spec = project(f"""
        name: oncolab
        host: {{provider: colab, root: {root}, session_hours: 0.5}}
        run: echo on colab
    """)
    refused = tether("launch", spec)
    assert refused.exit_code == ExitCode.BAD_SPEC and "tether attach" in refused.stderr

    started = time.time()
    r = tether("attach", spec, "https://quiet-lake-1234.trycloudflare.com")
    assert r.exit_code == 0, r
    assert "sent via rsync" in r.stdout, r  # through the tunnel too, the key checked the same way
    job = launched_id(r)
    wait_state(tether, job, "SUCCEEDED")
    assert "access ssh --hostname quiet-lake-1234.trycloudflare.com" in (tmp_path / "tunnel.log").read_text()
    known = (tmp_path / "tether-home" / "known_hosts").read_text()
    assert known.startswith("colab-quiet-lake-1234.trycloudflare.com ")
    hb = json.loads((root / "jobs" / job / "heartbeat.json").read_text())
    assert abs(hb["deadline_at"] - (started + 1800)) < 60  # the session's end is the agent's deadline

    ssh = subprocess.run([sys.executable, "-m", "launcher", "ssh", job, "--", "cat", "state.json"],
                         capture_output=True, text=True, env=os.environ)
    assert ssh.returncode == 0, ssh.stderr
    assert json.loads(ssh.stdout)["state"] == "SUCCEEDED"


def test_attach_refuses_an_address_it_cannot_read(tether, project, tmp_path):
    spec = project("""
        name: oncolab
        host: {provider: colab}
        run: echo hi
    """)
    r = tether("attach", spec, "not an address")
    assert r.exit_code == ExitCode.BAD_SPEC
    assert "is not an address the bootstrap cell prints" in r.stderr


def test_generated_notebook_runs_the_job_by_itself(tether, project, tmp_path):
    spec = project("""
        name: nb
        host: {provider: colab}
        run: python3 -c "from agent import progress; import os; open(os.path.join(progress.output_dir(), 'x'), 'w').write('ok')"
    """)
    nb_path = tmp_path / "job.ipynb"
    r = tether("colab-notebook", spec, "-o", nb_path)
    assert r.exit_code == 0, r
    nb = json.loads(nb_path.read_text())
    code = "".join(nb["cells"][1]["source"])
    job = r.stdout.split("(job ")[1].split(")")[0]
    work = tmp_path / "content"
    work.mkdir()
    # What the notebook's cell does in a Colab runtime, with /content standing in here.
    # On stdin, as `-c` would run it but with no limit on its size (the cell carries the runtime).
    done = subprocess.run([sys.executable, "-"], input=code, cwd=work, capture_output=True, text=True,
                          env={**os.environ, "TETHER_WORKING": str(work)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"tether: job {job} SUCCEEDED" in done.stdout
    assert (work / "tether" / "jobs" / job / "outputs" / "x").read_text() == "ok"


def test_a_notebook_job_mirrors_to_the_hub_and_goes_on_elsewhere(tether, project, tmp_path, hub):
    """backup.mirror in a generated notebook: the repo is checked when the notebook is written,
    the cell reads HF_TOKEN from Colab's Secrets (never from its source), the session's end
    pushes the final backup, and `resume --on` carries the job on to an SSH host from there."""
    from scripts import RESUMABLE

    repo = "tester/colab-ckpt"
    spec = project(f"""
        name: nbmirror
        host: {{provider: colab, session_hours: 0.0015, root: {tmp_path / "moved"}}}
        run: python3 train.py 80 0.1
        heartbeat: {{every_s: 0.5}}
        limits: {{margin_s: 1}}
        backup: {{every_min: 10, keep: 2, mirror: "hf://{repo}"}}
    """, {"train.py": RESUMABLE})
    nb_path = tmp_path / "job.ipynb"
    r = tether("colab-notebook", spec, "-o", nb_path)
    assert r.exit_code == 0, r
    job = r.stdout.split("(job ")[1].split(")")[0]
    assert hub.repos[repo].private  # created private when the notebook was written
    code = "".join(json.loads(nb_path.read_text())["cells"][1]["source"])
    assert hub.token not in code
    secrets_file = tmp_path / "colab-secrets.json"
    secrets_file.write_text(json.dumps({"HF_TOKEN": hub.token}))
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}  # only in the notebook's Secrets
    work = tmp_path / "content"
    work.mkdir()
    done = subprocess.run([sys.executable, "-"], input=code, cwd=work, capture_output=True, text=True, timeout=180,
                          env={**env, "TETHER_WORKING": str(work), "FAKE_COLAB_SECRETS": str(secrets_file),
                               "PYTHONPATH": str(Path(__file__).parent / "colab_notebook")})
    assert done.returncode == 0, done.stderr
    assert f"job {job} STOPPED" in done.stdout and "deadline" in done.stdout, done.stdout
    assert "did not reach" not in done.stdout, done.stdout
    newest = max(hub.backups(repo).values(), key=lambda m: m["created"])

    st = tether("status", job)  # nothing reaches the notebook: what the mirror holds is shown
    assert st.exit_code == ExitCode.UNREACHABLE
    assert "runs in the Colab notebook" in st.stdout and newest["name"] in st.stdout, st
    lg = tether("logs", job)
    assert lg.exit_code == ExitCode.BAD_SPEC and "runs in a Colab notebook" in lg.stderr
    moved = tether("resume", job, "--on", "testhost")
    assert moved.exit_code == 0, moved
    assert "cannot see whether" in moved.stdout
    final = wait_state(tether, job, "SUCCEEDED", timeout=120)
    assert final["step"] == 79 and final["provider"] == "ssh"
    log = (tmp_path / "moved" / "jobs" / job / "logs" / "workload.log").read_text()
    assert log.startswith(f"resumed at {newest['step'] + 1}")


# -- Colab as it really behaves (issue 12) ----------------------------------------------------


def test_attach_through_cloudflare_needs_cloudflared_here_and_says_so(tether, project, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no cloudflared on this laptop
    spec = project("""
        name: oncolab
        host: {provider: colab}
        run: echo hi
    """)
    r = tether("attach", spec, "quiet-lake-1234.trycloudflare.com")
    assert r.exit_code == ExitCode.BAD_SPEC, r
    assert r.stderr.startswith("error: cloudflared is not installed on this laptop")
    assert "developers.cloudflare.com" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    cell = tether("colab-cell")
    assert cell.exit_code == 0 and "note: cloudflared is not installed on this laptop" in cell.stderr


def test_the_ngrok_cell_reads_its_token_from_colab_secrets(tether, tmp_path):
    cell = tether("colab-cell", "--tunnel", "ngrok").stdout
    compile(cell, "cell", "exec")
    assert "verified card" in cell and "ERR_NGROK_8013" in cell
    assert 'os.environ["NGROK_AUTHTOKEN"])' not in cell.split("def ngrok_token")[0]
    reader = cell[cell.index("def ngrok_token"):cell.index("token = ngrok_token()")]
    secrets_file = tmp_path / "colab-secrets.json"
    secrets_file.write_text(json.dumps({"NGROK_AUTHTOKEN": "2abc-from-secrets"}))
    env = {k: v for k, v in os.environ.items() if k != "NGROK_AUTHTOKEN"}
    run = subprocess.run([sys.executable, "-c", "import os\n" + reader + "print(ngrok_token())"],
                         capture_output=True, text=True, timeout=30,
                         env={**env, "FAKE_COLAB_SECRETS": str(secrets_file),
                              "PYTHONPATH": str(Path(__file__).parent / "colab_notebook")})
    assert run.stdout.strip() == "2abc-from-secrets", run.stderr
    secrets_file.write_text(json.dumps({}))  # no such secret: the cell says what to do, no traceback
    missing = subprocess.run([sys.executable, "-c", "import os\n" + reader + "print(ngrok_token())"],
                             capture_output=True, text=True, timeout=30,
                             env={**env, "FAKE_COLAB_SECRETS": str(secrets_file),
                                  "PYTHONPATH": str(Path(__file__).parent / "colab_notebook")})
    assert missing.stdout.strip() == "None"
    assert "add your ngrok authtoken as the secret NGROK_AUTHTOKEN" in cell
