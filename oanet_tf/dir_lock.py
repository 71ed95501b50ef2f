"""One writer per model dir: `train` and `convert` hold `MODEL_DIR/writer.lock` while they run.

The lock is an OS advisory lock (`fcntl.flock`) on that file: the kernel drops it when its
process ends, however it ends (SIGKILL and crashes included), so a lock left behind never
blocks a later run; the pid and host written into the file only name the holder to whoever
is refused. On NFS, Linux emulates flock with the server's byte-range locks, which hold across
hosts; a host that dies keeps its lock until the server expires it (NFSv4: the lease, about
90 s). On a file system that offers no locks at all, the writer warns and runs unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import warnings

from oanet_tf.errors import OANetError

LOCK_FILE = "writer.lock"
# A releasing holder deletes the file: an opener that locked the deleted file tries again.
ATTEMPTS = 5


@contextlib.contextmanager
def exclusive_writer(directory: str, command: str):
    """Hold `directory`'s lock (creating the folder) while the block runs; held by another
    process -> OANetError naming its command, pid and host. On release the lock file goes,
    and the folder too when this call created it and nothing else was written there."""
    created = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    fd = _acquire(path, directory)
    if fd is None:
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{command} pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # while still held: a waiting opener sees another file
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only if empty
        os.close(fd)


def _acquire(path: str, directory: str) -> int | None:
    """The locked file's descriptor, or None where the file system has no locks."""
    for _ in range(ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OANetError(f"{directory} is in use: {holder} holds {path}; wait for it to "
                             f"end or stop it, or use another directory") from None
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            warnings.warn(f"{path}: the file system offers no locks ({err.strerror}); going "
                          f"on unlocked: another process writing here would not be noticed")
            return None
        if _names(path, fd):
            return fd
        os.close(fd)
    raise OANetError(f"{path}: could not be locked ({ATTEMPTS} attempts, each time replaced "
                     f"by another process)")


def _names(path: str, fd: int) -> bool:
    """Whether `path` still names the file open as `fd` (its holder did not delete it)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
