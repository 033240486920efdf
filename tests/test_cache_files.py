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
