"""Faults as one line a user can act on: the command line's last word on an exception.

`fashionai` ends every failure with one line naming the path and the fix, and an exit status that
says which kind (2 for input the command refuses, 1 for the machine failing it, 130 for Ctrl-C and
143 for SIGTERM, as shells report them); `--debug` adds the traceback. Library code raises ordinary
exceptions; this module only words them.
"""

from __future__ import annotations

import errno
import os
import signal
from types import FrameType

# What to do about an OS error, by errno: the path comes from the exception
OS_HINTS = {
    errno.ENOSPC: "no space left on that disk: free some space, or write to another disk",
    errno.EDQUOT: "your disk quota is used up: free some space, or write elsewhere",
    errno.EROFS: "the file system is read-only: choose a folder on a writable disk",
    errno.EACCES: "permission denied: choose a folder you may write to, or change its permissions",
    errno.EPERM: "operation not permitted: choose a folder you own",
    errno.ENAMETOOLONG: "the name is too long for the file system: use a shorter --name or --out",
    errno.EIO: "the disk reported an I/O error: check the disk, then retry",
    errno.EMFILE: "too many open files: raise `ulimit -n`, or use fewer loader workers (-j)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder where a file was expected: check the path",
}
EXIT_REFUSED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143
# MXNet reports a short write (a full disk, a vanished mount) as this, without the file or the cause
MXNET_SHORT_WRITE = "FileStream.Write incomplete"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python runs next, so it unwinds like Ctrl-C (files closed, locks
    released, the epoch abandoned) and ends the command with status 143."""


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def install_sigterm() -> None:
    """Make SIGTERM end the command the way Ctrl-C does (`Terminated`); a forked child (a loader's
    or prepare's worker process) gets the default action back (`default_sigterm`)."""
    signal.signal(signal.SIGTERM, raise_terminated)


def default_sigterm() -> None:
    """SIGTERM's default action (the process ends at once), where `raise_terminated` was set. A
    Python handler runs only in a process's main thread: a loader worker waiting on its task
    queue's lock while the SIGTERM of `Pool.terminate` landed on its other thread never ran it, and
    the command waited on that worker forever (seen once in the test suite, at a DataLoader's end)."""
    if signal.getsignal(signal.SIGTERM) is raise_terminated:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:  # not this interpreter's main thread: nothing to restore from here
            pass


os.register_at_fork(after_in_child=default_sigterm)  # a no-op where install_sigterm was not called


def os_error_line(err: OSError) -> str:
    """`path: what happened; what to do`."""
    path = " -> ".join(str(p) for p in (err.filename, err.filename2) if p)
    hint = OS_HINTS.get(err.errno or 0)
    what = err.strerror or str(err)
    return f"{path}: {what}" + (f"; {hint}" if hint else "") if path else what + (f"; {hint}" if hint else "")


def one_line(err: BaseException) -> tuple[str, int]:
    """(the message, the exit status) for an exception that ends a command."""
    if isinstance(err, KeyboardInterrupt):  # a command may say what survives and how to go on
        said = f"; {err}" if str(err) else ""
        if isinstance(err, Terminated):
            return f"stopped by SIGTERM{said}", EXIT_TERMINATED
        return f"stopped by Ctrl-C{said}", EXIT_INTERRUPTED
    if isinstance(err, (ValueError, FileNotFoundError, FileExistsError)):
        return str(err), EXIT_REFUSED
    if isinstance(err, OSError):
        return os_error_line(err), EXIT_FAILED
    text = str(err).strip().splitlines()
    if any(MXNET_SHORT_WRITE in line for line in text):
        return (f"MXNet could not finish writing a file ({MXNET_SHORT_WRITE}): most often a full disk; check the "
                "free space where the command writes"), EXIT_FAILED
    last = next((line for line in reversed(text) if line.strip()), type(err).__name__)
    return f"{type(err).__name__}: {last.strip()} (run with --debug for the traceback)", EXIT_FAILED
