"""One writer per folder: a command takes the folder it writes (a run, a prepared root, demo data,
a submission, an export) for its whole life, and a second command asking for the same folder
fails at once, naming the first (command, pid, host, start time).

The lock is `flock` on a small file beside the folder (`.<name>.lock`, so a folder that is built
aside and swapped in keeps its lock). The kernel releases it when the holder's process ends, however
it ends, so a lock left by a dead process never blocks: the file may stay, the lock does not. On
NFS, Linux carries `flock` over the protocol's byte-range locks (NFSv4, or v3 with lockd): the
multi-host set-up's shared folder works the same. Where the file system has no locks at all (some
FUSE or SMB mounts) the command says so and stops, rather than writing unprotected.

The lock file is removed on release; a taker that opened it just before checks after locking that
the path is still the file it locked, and starts over if not, so two processes can never both hold
"the" lock on two different files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path


class FolderBusy(FileExistsError):
    """Another process holds the folder."""


def lock_path(folder: Path) -> Path:
    """The lock file of `folder`: beside it, hidden."""
    folder = Path(folder).absolute()
    return folder.with_name(f".{folder.name}.lock")


def holder_text(path: Path) -> str:
    """Who holds the lock at `path`, for the loser's message (what the holder wrote there)."""
    try:
        info = json.loads(path.read_text())
        return (f"`{info['command']}` (pid {info['pid']} on {info['host']}, since {info['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its details are not readable yet)"


def _open_locked(path: Path, folder: Path, what: str) -> int:
    """An fd of `path` holding its exclusive lock; FolderBusy when another process has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusy(f"{folder} is in use by {holder_text(path)}: two commands cannot write {what} at "
                             "once; wait for it to end, or choose another folder") from None
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(err.errno, f"the file system of {folder.parent} has no file locks, so {what} "
                                         "there could be written by two commands at once; use a local disk "
                                         "or an NFS mount with locking") from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file between our open and our lock


@contextmanager
def hold(folder: str | Path, what: str, command: str | None = None) -> Iterator[Path]:
    """Hold `folder` for the duration of the block (`what` it holds, for messages); yields it."""
    folder = Path(folder)
    made = _make_parents(folder.absolute().parent)
    path = lock_path(folder)
    try:
        fd = _open_locked(path, folder, what)
    except BaseException:
        _remove_empty(made)
        raise
    try:
        info = {"command": command or " ".join(["fashionai", *sys.argv[1:]])[:300], "pid": os.getpid(),
                "host": socket.gethostname(), "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield folder
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)  # releases the lock
        _remove_empty(made)


def _make_parents(folder: Path) -> list[Path]:
    """Make `folder` and the folders above it that are missing; returns those made, deepest first."""
    made = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        made.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    return made


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders `hold` made that are still empty (the command wrote nothing there)."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (the command's output is there), or gone
