"""The data directory's lock: one server owns a data directory for its whole life.

Two servers appending to one journal interleave their sequences and leave a journal
that no longer recovers, so the owner takes an exclusive ``flock`` on ``DATA_DIR/LOCK``
before it reads anything and holds it until it stops. The kernel drops the lock when
the process dies (``kill -9`` included), so a crash never leaves a stale lock behind.
The file holds the owner's pid, to name it to whoever finds the directory taken.
Readers (``spotex replay``) take no lock: they never write.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK = "LOCK"


class DataDirInUse(RuntimeError):
    """Another process holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"data directory {data_dir} is in use by another spotex server "
                         f"({holder}); stop it first, or give another --data-dir")
        self.data_dir = data_dir
        self.pid = pid


class DataDirLock:
    """An exclusive lock on ``data_dir``, taken at construction; ``release()`` ends it."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOCK
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(data_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            # the pid stays in the file: it is read only while the lock is held
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
