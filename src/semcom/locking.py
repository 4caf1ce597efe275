"""One writer per output: a command that writes a results file, a run folder or a zoo entry
holds an advisory lock (``flock``) on a lock file beside it (``r.json.lock``, ``RUN/.lock``)
from before it reads or writes anything there until it is done, so a second semcom process
writing the same output is refused at once instead of mixing its rows or checkpoints with the
first's. The lock goes with its process however it ends (no stale locks: a lock file left by a
killed process locks nothing); the file records the holder's pid for the message. Under
``torchrun`` the ranks of one run share the lock: rank 0 takes it and tells the others whether
it got it. Where ``fcntl`` is missing (Windows), or the file system takes no locks, nothing is
locked."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from types import TracebackType

#: flock's errors for a file system that takes no locks (some network or FUSE mounts)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


class OutputBusyError(ValueError):
    """Another process holds the lock of an output; the message names the output and that
    process (one line)."""


def lock_file(path: str | os.PathLike[str]) -> Path:
    """The lock file of output file ``path``: ``path`` + ``.lock`` beside it."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


class OutputLock:
    """An exclusive lock on ``path`` (a lock file) guarding an output named ``what`` in the
    refusal (``"--out 'r.json'"``), which ends with ``hint``. Use as a context manager, or
    :meth:`acquire` / :meth:`release`.

    ``rank`` / ``world``: under ``torchrun``, rank 0 takes the lock and, when the process
    group is up, broadcasts the outcome, so every rank of a refused run raises and no rank of a
    run blocks another; the other ranks touch no file. The lock file is removed on release,
    while still held (a process that opened it before then finds it gone once it gets the lock,
    and locks the new one instead)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        what: str,
        *,
        hint: str = "wait for it to end, or give another --out",
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.path = Path(path)
        self.what, self.hint = what, hint
        self.rank, self.world = rank, world
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock (rank 0); :class:`OutputBusyError` when another process holds it."""
        refusal, error = None, None
        if self.rank == 0:
            try:
                self._take()
            except OutputBusyError as e:
                refusal = str(e)
            except Exception as e:  # the other ranks must hear of it too, or they wait forever
                if self.world == 1:
                    raise
                error, refusal = e, f"{self.what}: rank 0 could not take its lock ({e})"
        if self.world > 1:
            refusal = _from_rank0(refusal)
        if error is not None:
            raise error
        if refusal is not None:
            raise OutputBusyError(refusal)
        return self

    def release(self) -> None:
        """Remove the lock file and let go of it (nothing when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        import fcntl

        try:
            self.path.unlink(missing_ok=True)  # while held: nobody else can be using it
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # also for copies of the descriptor in forked workers
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _take(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: nothing is locked
            return
        for _ in range(100):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # its folder was removed meanwhile (an empty run folder)
                if self.path.parent.is_dir():  # no: a path where no file can be made
                    raise
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _holder(fd) if e.errno in (errno.EWOULDBLOCK, errno.EACCES) else None
                os.close(fd)
                if e.errno in _NO_LOCKS:  # nothing to hold: leave no lock file behind
                    self.path.unlink(missing_ok=True)
                    return
                if holder is None:
                    raise
                raise OutputBusyError(
                    f"{self.what} is being written by another semcom process{holder} right now: "
                    f"{self.hint}"
                ) from None
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
                self._fd = fd
                return
            os.close(fd)  # the holder removed that file as it ended: lock the one there now
        raise OSError(f"cannot lock {str(self.path)!r}: it keeps being removed")


def _holder(fd: int) -> str:
    """`` (pid N)`` (`` on HOST`` when another machine's) from a held lock file, or ""."""
    try:
        words = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        return ""
    if not words or not words[0].isdigit():
        return ""  # not written yet, or by another program
    host = f" on {words[1]}" if len(words) > 1 and words[1] != socket.gethostname() else ""
    return f" (pid {words[0]}{host})"


def _from_rank0(refusal: str | None) -> str | None:
    """Rank 0's ``refusal`` on every rank of the process group (as is without one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return refusal
    box = [refusal]
    dist.broadcast_object_list(box, src=0)
    return box[0]
