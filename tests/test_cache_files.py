"""The laptop's packed caches (a workdir's hashes, a host's manifest) read back whole or not at
all: a damaged, cut or foreign file is a cache miss, never a wrong answer."""

from __future__ import annotations

from launcher import cache_files


def test_a_packed_cache_reads_back_whole_or_not_at_all(tmp_path):
    path = tmp_path / "cache" / "x.cache"
    doc = {"src/a.py": [12, 1700000000123456789, 42, 1700000000123456789, "f" * 64, 1.5],
           "b.py": {"size": 3, "mode": 420, "sha256": "0" * 64}}
    cache_files.write_packed_later(path, doc, label="d" * 64)
    assert cache_files.read_packed(path) == ("d" * 64, doc)  # waits for the write first
    assert cache_files.read_label(path) == "d" * 64
    assert not list(path.parent.glob("*.tmp"))

    whole = path.read_bytes()
    head, body = whole.split(b"\n", 1)
    for damaged in (whole[:-1], head + b"\n" + body[:-3] + b"xyz", whole.replace(b"tether-cache 1", b"tether-cache 9"),
                    b"", b'{"digest": "x"}', head):
        path.write_bytes(damaged)
        assert cache_files.read_packed(path) is None, damaged[:80]
    path.write_bytes(b"\x00\xff" * 100)
    assert cache_files.read_label(path) is None and cache_files.read_packed(path) is None
    assert cache_files.read_packed(tmp_path / "absent.cache") is None
    assert cache_files.read_label(tmp_path / "absent.cache") is None


def test_a_pending_write_is_settled_before_the_next(tmp_path):
    path = tmp_path / "x.cache"
    for i in range(5):
        cache_files.write_packed_later(path, {"n": i})
    assert cache_files.read_packed(path) == ("", {"n": 4})


def test_the_remembered_early_commands_read_back_whole_or_not_at_all(tmp_path):
    from launcher import early

    path = str(tmp_path / "cache" / "early-commands.bin")
    key = early._key(["status", "ab12cd34"])
    doc = {key: [["ssh", "-p", "22", "--", "host", "python3 -S -c '...' status /r/jobs/ab12cd34"]]}
    early.write_remembered(path, doc)
    assert early.read_remembered(path) == doc
    assert not list((tmp_path / "cache").glob("*.tmp"))
    whole = open(path, "rb").read()
    for damaged in (whole[:-1], whole[:-3] + b"xyz", whole.replace(b"tether-early 1", b"tether-early 9"),
                    b"", b'{"status": []}', whole.split(b"\n")[0]):
        open(path, "wb").write(damaged)
        assert early.read_remembered(path) == {}, damaged[:60]
    assert early.read_remembered(str(tmp_path / "absent.bin")) == {}
    (tmp_path / "a-file").write_text("")
    early.write_remembered(str(tmp_path / "a-file" / "early.bin"), doc)  # a cache: a failed write is no error


def test_the_likely_home_is_platformdirs_answer_where_it_is_used(monkeypatch):
    """early.py guesses tether's home without loading platformdirs; on this platform, in the
    usual settings, the guess is exactly platformdirs' answer."""
    import os

    from launcher.home import data_dir, likely_data_dir

    monkeypatch.delenv("TETHER_HOME", raising=False)
    for xdg in (None, "/x/data", "/x/data/", "relative/data", "~/data", ""):
        if xdg is None:
            monkeypatch.delenv("XDG_DATA_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_DATA_HOME", xdg)
        assert likely_data_dir(os.environ) == data_dir(os.environ), xdg
    monkeypatch.setenv("TETHER_HOME", "/t/home")
    assert likely_data_dir(os.environ) == data_dir(os.environ) == "/t/home"
