"""Crash-safe file writing: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and an earlier good file survives a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid


@contextlib.contextmanager
def atomic_path(path: str):
    """A temporary path beside `path` (its name ends like `path`'s, for writers that check
    the extension) that replaces `path` only when the block exits cleanly."""
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file that replaces `path` only when the block exits cleanly."""
    binary = "b" in mode
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if binary else encoding) as f:
        yield f


def write_json(path: str, data, indent: int | None = None):
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=indent)


def read_json(path: str, what: str = "JSON file"):
    """Read JSON, raising a ValueError that names the file on a missing or malformed file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
