"""Files that others read are replaced whole, never rewritten in place."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: Path, data: Mapping[str, Any], mode: int = 0o644) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode() + b"\n", mode)


def read_json(path: Path) -> Optional[dict]:
    """The file's object, or None when it does not exist (yet)."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def read_json_object(path: Path) -> Tuple[Optional[dict], Optional[str]]:
    """(the file's JSON object, None), or (None, what is wrong with it): for files a workload
    or a host may have written, which must never crash their reader."""
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, ValueError) as exc:
        return None, f"{path.name} is not valid JSON ({str(exc)[:80]})"
    if not isinstance(doc, dict):
        return None, f"{path.name} is not a JSON object"
    return doc, None


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """One write() of one line with O_APPEND: concurrent appenders never interleave. A short
    write (a full disk) is cut back off, so the file holds whole lines or nothing; OSError."""
    line = json.dumps(record, sort_keys=True).encode() + b"\n"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        before = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
        except OSError:
            written = -1
        if written != len(line):
            os.ftruncate(fd, before)
            raise OSError(errno.ENOSPC, f"{path.name}: short write, line dropped")
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """Data (a file) or names (a folder) on disk before what depends on them is written."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list:
    """Every complete line that parses; a line still being written is left for later."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n")[:-1]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
