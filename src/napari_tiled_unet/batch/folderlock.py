"""One batch run at a time per output folder: an exclusive lock on a hidden file (ring 2).

The lock is the operating system's (``flock`` on Linux and macOS, ``msvcrt.locking`` on
Windows), so it dies with its process: the lock of a killed run is free at once, there is
nothing stale to clean up.  The holder writes who it is (host, process id, start time,
command) into the lock file, which a waiting run reads to say what it waits for.  The file
is removed when the run ends; a run that was waiting on the removed file notices (its file
is no longer the one at the path) and tries again.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "FolderLock"]

#: Name of the lock file in the output folder (hidden: inputs never include it).
LOCK_NAME = ".napari-tiled-unet.lock"
_WINDOWS_OFFSET = 2**20  # msvcrt locks a byte far beyond the text, which stays readable


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import errno
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed by its holder)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class FolderLock:
    """The exclusive right to write into an output folder; use :meth:`acquire`, then close.

    Parameters
    ----------
    folder : Path
        The output folder (must exist).
    info : dict, optional
        What a waiting run is told about this one (e.g. the command line).
    """

    def __init__(self, folder: Path, info: dict[str, Any] | None = None) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._info = info or {}
        self._fd: int | None = None
        #: Whether the lock is held (False before acquire, or where locks do not work).
        self.held = False

    def holder(self) -> str:
        """Describe the run that holds the lock, from what it wrote into the lock file."""
        for _ in range(20):  # the holder writes it just after taking the lock
            try:
                info = json.loads(self.path.read_text(encoding="utf-8"))
                text = f"process {info['pid']} on {info['host']}, started {info['started']}"
                break
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)
        else:
            return "another run"
        command = " ".join(info.get("command") or [])
        return f"{text}: {command}" if command else text

    def acquire(
        self, *, stop: Callable[[], bool] = lambda: False, timeout: float | None = None
    ) -> bool:
        """Take the lock, waiting while another run holds it; False if ``stop()`` came first.

        The first wait is announced with one warning that names the run waited for.

        Raises
        ------
        ValueError
            When ``timeout`` seconds passed (``0``: do not wait) and the lock is still held,
            or when the folder is not writable.
        """
        start, announced = time.monotonic(), False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ValueError(
                    f"cannot write into the output folder {self.path.parent} "
                    f"({exc.strerror or exc}); choose a folder you can write to"
                ) from exc
            try:
                locked = _try_lock(fd)
            except OSError as exc:  # a file system without locks: run, but say so once
                os.close(fd)
                warnings.warn(
                    f"cannot lock {self.path.parent} ({exc.strerror}); make sure that no "
                    "other run writes into this folder at the same time",
                    UserWarning,
                    stacklevel=2,
                )
                return True
            if locked and _same_file(fd, self.path):
                self._fd, self.held = fd, True
                self._write_info()
                return True
            if locked:
                _unlock(fd)  # the file was removed by the run that held it: try again
            os.close(fd)
            if locked:
                continue
            holder = self.holder()
            if timeout is not None and time.monotonic() - start >= timeout:
                raise ValueError(
                    f"another run is writing into {self.path.parent} ({holder}); wait for it "
                    "to finish or use another output folder"
                )
            if not announced:
                warnings.warn(
                    f"waiting for another run to finish writing into {self.path.parent} "
                    f"({holder}); stop it or use another output folder",
                    UserWarning,
                    stacklevel=2,
                )
                announced = True
            if stop():
                return False
            time.sleep(0.2)

    def _write_info(self) -> None:
        assert self._fd is not None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **self._info,
        }
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, json.dumps(info).encode("utf-8"))
        except OSError:  # a full disk: the lock holds all the same, waiters say less
            pass

    def release(self) -> None:
        """Remove the lock file and free the lock (nothing happens if it was not taken)."""
        if self._fd is None:
            return
        fd, self._fd, self.held = self._fd, None, False
        try:
            os.unlink(self.path)  # before unlocking: a waiter then sees a new file
        except OSError:
            pass  # Windows keeps open files; the next holder simply reuses it
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
