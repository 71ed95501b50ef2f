"""Crash-safe file writing: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and an earlier good file survives a crash or a full
disk; an OS error of the write names the target file. A whole folder (an export, a set of
predictions) is built in a staging folder beside its target and swapped in with
`replace_directory`. Temporary names carry the writer's process id, so that `remove_leftovers`
deletes what a killed run left without touching a running one's, and end like the target's
name, shortened from its start where the whole would exceed the file system's name limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import uuid

STAGING_PREFIX = ".tmp-"  # a file or folder being written: .tmp-<pid>-<token>-<name>
RETIRED_PREFIX = ".old-"  # a folder replaced and about to be deleted: .old-<pid>-<token>-<name>
TOKEN_LENGTH = 12  # hex digits of the random part of a temporary name
# Bytes in one file name where the file system does not say (NAME_MAX of Linux file systems).
DEFAULT_NAME_MAX = 255
# Linux renameat2(2): paths relative to the working directory, and the flag that swaps two
# existing paths in one step.
AT_FDCWD = -100
RENAME_EXCHANGE = 1 << 1
# What renameat2 answers where the kernel, libc or file system cannot swap.
EXCHANGE_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)


def name_max(directory: str) -> int:
    """The most bytes one file name may take in `directory` (or its nearest existing
    parent), as the file system says."""
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def name_tail(name: str, size: int) -> str:
    """The longest end of `name` (whole characters) that takes at most `size` bytes."""
    kept, used = [], 0
    for char in reversed(name):
        used += len(os.fsencode(char))
        if used > size:
            break
        kept.append(char)
    return "".join(reversed(kept))


def temporary_name(prefix: str, name: str, directory: str) -> str:
    """`prefix<pid>-<token>-<name>` for a file or folder in `directory`, the name shortened
    from its start (its extension kept) so that the whole fits where `name` fits."""
    head = f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:TOKEN_LENGTH]}-"
    return head + name_tail(name, name_max(directory) - len(head))


def _named(err: OSError, path: str, temporary: str) -> OSError:
    """`err` naming `path` where it names no file or the temporary written for `path` (its
    text the system's for its errno: h5py's runs over several lines)."""
    if err.errno is None or err.filename not in (None, temporary):
        return err
    return OSError(err.errno, os.strerror(err.errno), path)


@contextlib.contextmanager
def atomic_path(path: str):
    """A temporary path beside `path` (its name ends like `path`'s, for writers that check
    the extension) that replaces `path` only when the block exits cleanly. An OS error in
    the block (a full disk) that names no file, or the temporary, names `path` instead."""
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, temporary_name(STAGING_PREFIX, name, directory))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        named = _named(err, path, tmp) if isinstance(err, OSError) else err
        if named is not err:
            raise named from err
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
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _written_as(name: str, entry: str, written: str, directory: str) -> str:
    """`name` as `temporary_name` shortened it in the temporary `entry`, whose name part is
    `written`."""
    head = len(os.fsencode(entry)) - len(os.fsencode(written))
    return name_tail(name, name_max(directory) - head)


def remove_leftovers(directory: str, name: str | None = None) -> list:
    """Delete the temporary files and folders in `directory` (for the target `name`, or any)
    whose writing process no longer runs; returns their paths."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for entry in os.listdir(directory):
        prefix = next((p for p in (STAGING_PREFIX, RETIRED_PREFIX) if entry.startswith(p)), None)
        if prefix is None:
            continue
        fields = entry[len(prefix):].split("-", 2)
        if (len(fields) != 3 or not fields[0].isdigit() or len(fields[1]) != TOKEN_LENGTH
                or (name is not None
                    and fields[2] != _written_as(name, entry, fields[2], directory))
                or _running(int(fields[0]))):
            continue
        path = os.path.join(directory, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        removed.append(path)
    return removed


def new_directory_mode() -> int:
    """The mode os.makedirs gives a folder under the current umask (0755 under umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def staging_directory(target: str) -> str:
    """A new empty folder beside `target` to build its replacement in, readable as any new
    folder is (mkdtemp's 0700 would hide an export from a server running as another user).
    Leftovers of killed runs for the same target are deleted first."""
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    remove_leftovers(parent, name)
    path = os.path.join(parent, temporary_name(STAGING_PREFIX, name, parent))
    os.mkdir(path)
    os.chmod(path, new_directory_mode())
    return path


def _exchange(first: str, second: str) -> bool:
    """Swap two existing paths in one step (Linux renameat2 RENAME_EXCHANGE); False where
    the platform cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second),
                 RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), second)


def replace_directory(source: str, target: str):
    """Move the folder `source` to `target`, deleting what `target` held. An existing target
    is swapped in one step where the platform can (a reader sees the old folder or the new
    one, never neither); elsewhere it is renamed aside first."""
    if os.path.lexists(target) and not os.path.isdir(target):
        raise FileExistsError(errno.EEXIST, "exists and is not a folder", target)
    if not os.path.lexists(target):
        os.rename(source, target)
        return
    if _exchange(source, target):
        shutil.rmtree(source, ignore_errors=True)  # now the old folder
        return
    parent, name = os.path.split(os.path.abspath(target))
    retired = os.path.join(parent, temporary_name(RETIRED_PREFIX, name, parent))
    os.rename(target, retired)
    try:
        os.rename(source, target)
    except BaseException:
        os.rename(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(target: str):
    """A staging folder that replaces `target` (`replace_directory`) when the block exits
    cleanly, and is deleted otherwise. An OS error naming a file in the staging folder names
    its place under `target` instead (the staging folder is gone by then)."""
    staging = staging_directory(target)
    try:
        yield staging
        replace_directory(staging, target)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError) and _names_a_file_in(err, staging):
            place = os.path.join(os.path.abspath(target), os.path.relpath(err.filename, staging))
            raise OSError(err.errno, err.strerror, os.path.normpath(place)) from err
        raise


def _names_a_file_in(err: OSError, folder: str) -> bool:
    return (err.errno is not None and isinstance(err.filename, str)
            and (err.filename + os.sep).startswith(folder + os.sep))
