"""Files that others read are replaced whole, never rewritten in place."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional


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


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """One write() of one line with O_APPEND: concurrent appenders never interleave."""
    line = json.dumps(record, sort_keys=True).encode() + b"\n"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
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
