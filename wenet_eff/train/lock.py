"""One training run per experiment directory: `exp_dir/train.lock`.

The lock is an exclusive `flock` on `train.lock`, which holds who took it (pid, host, start time,
command) for the message a second run refuses with. The kernel releases a flock when its
process dies, however it dies, so a lock file left by a run that was killed is free to take:
the next run takes it over and warns, naming the run that left it. On a file system without
file locks a run warns that it cannot lock and goes on.

With torchrun only rank 0 takes the lock (every rank of one run shares the directory), and the
other ranks learn from it whether the run may go on (`lock_experiment`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from wenet_eff.train.dist import DistContext

logger = logging.getLogger("wenet_eff.train")

LOCK_FILE = "train.lock"


class ExperimentLocked(RuntimeError):
    """Another live training run holds the experiment directory."""


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return (
            f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: "
            f"{holder['command']}"
        )
    except (ValueError, TypeError, KeyError):
        return repr(text)


class ExperimentLock:
    """The lock of the experiment directory `exp_dir` (created if missing).

    `acquire` raises ExperimentLocked naming the run that holds it; `release` gives it up and
    removes the file. A context manager does both.
    """

    def __init__(self, exp_dir: str | os.PathLike) -> None:
        self.exp_dir = Path(exp_dir)
        self.path = self.exp_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this run into the lock file (warning when it names a run
        that is gone); raises ExperimentLocked when a live run holds it."""
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(os.read(fd, 65536).decode("utf-8", "replace"))
                os.close(fd)
                raise ExperimentLocked(
                    f"{self.exp_dir} is in use by another training run ({holder}; lock file "
                    f"{self.path}). Wait for it to end or stop it, then rerun to resume; or "
                    "train into another train.exp_dir."
                ) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise
                logger.warning(
                    "%s: cannot lock (%s: the file system has no file locks); make sure no "
                    "other run trains into %s",
                    *(self.path, exc.strerror, self.exp_dir),
                )
            # between our open and our flock the previous holder may have released the lock,
            # removing the file: ours is then on a file nobody opens again, so start over
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        left = os.read(fd, 65536).decode("utf-8", "replace")
        if left.strip():
            logger.warning(
                "%s: taking over the lock of a run that is gone (%s): it ended without "
                "releasing it (killed?)",
                *(self.path, _describe(left)),
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd

    def release(self) -> None:
        """Remove the lock file and give the lock up (nothing when not held)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding it: see acquire
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> ExperimentLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_experiment(exp_dir: str | os.PathLike, ctx: DistContext) -> ExperimentLock | None:
    """Rank 0 takes the lock of `exp_dir`; a collective: every rank raises ExperimentLocked
    when rank 0 could not take it.

    Returns:
        the lock on rank 0 (to release at the end of the run), None on the other ranks.
    """
    lock, refusal = None, None
    if ctx.is_main:
        lock = ExperimentLock(exp_dir)
        try:
            lock.acquire()
        except ExperimentLocked as exc:
            refusal = str(exc)
    refusal = ctx.gather(refusal)[0]
    if refusal is not None:
        raise ExperimentLocked(refusal)
    return lock
