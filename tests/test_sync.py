"""What is sent, what never is, and what --dry-run says."""

from __future__ import annotations

import os

import pytest

from launcher.errors import RemoteError
from launcher.transfer.sync import hash_cache_for, plan, scan


def make_tree(root):
    files = {
        "train.py": "print(1)",
        "src/model.py": "x = 1",
        "data/big file ü.bin": "d" * 100,
        ".git/config": "secret-ish",
        ".env": "HF_TOKEN=abc",
        ".env.local": "X=1",
        "src/__pycache__/model.cpython-311.pyc": "bytecode",
        "myenv/pyvenv.cfg": "home = /usr",
        "myenv/lib/site.py": "venv",
        ".venv/bin/python": "venv",
        "runs/log.txt": "ignored by gitignore",
        "src/.gitignore": "*.tmp\n",
        "src/scratch.tmp": "ignored by nested gitignore",
        "scratch.tmp": "not ignored at top",
        "weights/w.pt": "ignored by tetherignore",
        ".gitignore": "runs/\n",
        ".tetherignore": "weights/\n",
    }
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    os.symlink("/etc/passwd", root / "link-out")


def test_scan_honours_ignores_and_never_sends_secrets(tmp_path):
    work = tmp_path / "w"
    make_tree(work)
    tree = scan(work, hash_cache_for(tmp_path / "cache", work))
    assert sorted(tree.files) == [".gitignore", ".tetherignore", "data/big file ü.bin", "scratch.tmp",
                                  "src/.gitignore", "src/model.py", "train.py"]
    assert tree.skipped_links == ["link-out"]


def test_plan_sends_only_changes(tmp_path):
    work = tmp_path / "w"
    make_tree(work)
    cache = hash_cache_for(tmp_path / "cache", work)
    tree = scan(work, cache)
    remote = {rel: {"size": f.size, "mode": f.mode, "sha256": f.sha256} for rel, f in tree.files.items()}
    remote["gone.py"] = {"size": 1, "mode": 0o644, "sha256": "0"}
    (work / "train.py").write_text("print(2)")
    p = plan(scan(work, cache), remote)
    assert [f.rel for f in p.send] == ["train.py"]
    assert p.delete == ["gone.py"]
    assert p.unchanged == 6


def test_dry_run_prints_files_and_sizes_and_changes_nothing(tether, project, tmp_path):
    root = tmp_path / "root"
    spec = project(f"""
        name: dry
        host: {{provider: local, root: {root}}}
        run: echo hi
    """, {"a.py": "x" * 2048, ".env": "SECRET=1", "sub dir/b.txt": "b"})
    r = tether("launch", spec, "--dry-run")
    assert r.exit_code == 0, r
    assert "dry run: would send 3 file(s), 2.1 KB; delete 0; 0 unchanged" in r.stdout
    assert "send   a.py  (2.0 KB)" in r.stdout and "sub dir/b.txt" in r.stdout
    assert "send   .env" not in r.stdout and "SECRET" not in r.stdout
    assert "not sent: .env  (built-in: .env files are never sent (secrets))" in r.stdout
    assert not (root / "runtime").exists() and not (root / "code").exists()
    assert "no jobs" in tether("jobs").stdout


def test_the_hosts_manifest_moves_only_when_the_laptop_does_not_know_it(tmp_path):
    """An unchanged tree: the host answers its digest, not its manifest; after an edit, the
    manifest the host sent last time (kept on the laptop) stands in; a digest the laptop never
    sent or kept is refused, and a damaged keep is ignored."""
    from agent.protocol import code_digest
    from launcher.errors import RemoteError
    from launcher.transfer import sync

    work = tmp_path / "work"
    work.mkdir()
    (work / "a.py").write_text("a = 1\n")
    tree = sync.scan(work, tmp_path / "cache" / "hashes" / "w.cache")
    mine = {rel: {"size": f.size, "mode": f.mode, "sha256": f.sha256} for rel, f in tree.files.items()}
    host_files = {"old.py": {"size": 1, "mode": 0o644, "sha256": "0" * 64}}

    class Host:
        def __init__(self, files):
            self.files, self.asked = files, []

        def call(self, verb, root, project, *known):
            self.asked.append(known)
            digest = code_digest(self.files)
            return {"digest": digest} if digest in known[1::2] else {"digest": digest, "files": self.files}

    def ask(host):
        return sync.remote_manifest(host, "/r", "p", sync.HostManifest(tree, "h", "/r", "p"))

    host = Host(host_files)
    assert ask(host) == host_files  # first time: the whole manifest
    assert ask(host) == host_files  # then from the laptop's keep
    assert len(host.asked[1]) == 4  # it named its tree's digest and the kept one
    host.files = mine
    assert ask(host) == mine  # the host holds what the laptop has

    class Liar:
        def call(self, *args):
            return {"digest": "f" * 64}

    try:
        ask(Liar())
        raise AssertionError("a digest never sent was taken")
    except RemoteError as exc:
        assert "digest" in str(exc.what)
    for kept in (tree.cache_dir / "host-manifests").glob("*.cache"):
        kept.write_text('{"digest": "x", "files": {"a": 1}}')  # damaged: as if nothing were kept
    host.files = host_files
    assert ask(host) == host_files


def test_after_a_sync_an_edit_moves_the_hosts_digest_not_its_manifest(tmp_path):
    """Once a launch has synced the tree, the laptop keeps it as the host's copy: after the
    next edit the host answers with the old tree's digest alone, and the plan sends the one
    edited file."""
    from agent.protocol import code_digest
    from launcher.transfer import sync

    work = tmp_path / "work"
    work.mkdir()
    for i in range(20):
        (work / f"m{i}.py").write_text(f"x = {i}\n")
    hashes = tmp_path / "cache" / "hashes" / "w.cache"
    synced = sync.scan(work, hashes)
    on_host = synced.manifest()
    sync.HostManifest(synced, "h", "~/r", "p").remember_synced()
    (work / "m7.py").write_text("x = 'edited'\n")
    edited = sync.scan(work, hashes)
    kept = sync.HostManifest(edited, "h", "~/r", "p")
    assert code_digest(on_host) in kept.known() and edited.digest in kept.known()
    answer = {"digest": code_digest(on_host)}  # what `agent manifest --known ...` answers then
    plan = sync.plan(edited, kept.files(answer))
    assert [f.rel for f in plan.send] == ["m7.py"] and plan.delete == [] and plan.unchanged == 19
    other = sync.HostManifest(edited, "other-host", "~/r", "p")  # kept per host
    assert other.known() == [edited.digest]

    # The kept copy is read only when an answer names it: damaged after its digest, a launch
    # with nothing changed never notices; one after an edit says so in one line, and the
    # damaged copy goes (the next launch asks for the whole manifest).
    (cache,) = (tmp_path / "cache" / "host-manifests").glob("*.cache")
    cache.write_bytes(cache.read_bytes()[:200])
    unchanged = sync.HostManifest(edited, "h", "~/r", "p")
    assert unchanged.files({"digest": edited.digest}) == edited.manifest()
    with pytest.raises(RemoteError, match="copy of the host's manifest is damaged"):
        sync.HostManifest(edited, "h", "~/r", "p").files(answer)
    assert not cache.exists() and sync.HostManifest(edited, "h", "~/r", "p").known() == [edited.digest]


def test_a_transfer_shows_its_bar_only_on_a_terminal_and_only_once_it_is_slow():
    """The bar is fed once a file sent (10,000 times for a first sync of such a tree): it
    appears after show_after_s on a terminal, never in a pipe or a log."""
    import io

    from rich.console import Console

    from launcher.transfer.progress_bar import TransferProgress

    def fed(terminal: bool, after_s: float) -> str:
        out = io.StringIO()
        bar = TransferProgress(Console(file=out, force_terminal=terminal, width=80), "sync", 3000, show_after_s=after_s)
        for _ in range(3):
            bar(1000)
        bar.close()
        return out.getvalue()

    assert "sync" in fed(terminal=True, after_s=0) and "3.0" in fed(terminal=True, after_s=0)
    assert fed(terminal=True, after_s=60) == ""     # a quick transfer shows nothing
    assert fed(terminal=False, after_s=0) == ""     # nor does one written to a pipe
