"""`fashionai launch`: runs MXNet's own launcher (`mxnet/tools/launch.py` with ps-lite's
`dmlc_tracker`) in this process, which starts a scheduler, servers and workers, each running the
same command (e.g. `fashionai train --kvstore dist_sync ...`); the environment (`DMLC_ROLE`, ...)
tells each process its role. What training does inside such a job is `fashionai.training.distributed`.

The launcher needs one fix on Python 3.11 (`Thread.isAlive` was removed; the stock tracker still
calls it), applied here before it runs.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import runpy
import shlex
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "ssh", "mpi", "sge", "yarn")
# The worker command travels to every process in this variable, never through a shell: MXNet's
# tracker joins the words it is given with spaces and runs them through one shell (local, mpi, the
# scheduler) or two (ssh), so a path with spaces would split and `$(...)` inside an argument would
# run. The launcher is given only `python -m fashionai.launcher`, which decodes the
# variable and execs the command with its words intact.
COMMAND_VARIABLE = "FASHIONAI_LAUNCH_COMMAND"


def _patch_tracker() -> None:
    """dmlc_tracker calls `Thread.isAlive`, removed in Python 3.9: alias it to `is_alive`."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive  # type: ignore[attr-defined]


def launcher_path() -> Path:
    """MXNet's `tools/launch.py`, shipped inside the mxnet wheel."""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("mxnet is not installed in this environment")
    path = Path(spec.origin).parent / "tools" / "launch.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MXNet's launcher is missing from this mxnet installation")
    return path


def launch_args(command: Sequence[str], *, num_workers: int, num_servers: int | None = None,
                launcher: str = "local", hostfile: str | None = None,
                sync_dst_dir: str | None = None, env: Sequence[str] = ()) -> list[str]:
    """The argv of MXNet's launch.py for `command` (checked here, so errors name our flags)."""
    if num_workers < 1:
        raise ValueError(f"-n/--num-workers must be >= 1, got {num_workers}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if launcher in ("ssh", "mpi") and not hostfile:
        raise ValueError(f"--launcher {launcher} needs -H/--hostfile (one host per line)")
    if not command:
        raise ValueError("give the command each worker runs after --, e.g. -- fashionai train ...")
    argv = [str(launcher_path()), "-n", str(num_workers), "-s", str(num_servers or num_workers),
            "--launcher", launcher]
    if hostfile:
        argv += ["-H", hostfile]
    if sync_dst_dir:
        argv += ["--sync-dst-dir", sync_dst_dir]
    for name in [*env, *([COMMAND_VARIABLE] if launcher in ("ssh", "mpi") else [])]:
        argv += ["--env", name]
    entry = worker_entry()
    if launcher == "ssh" and any(shlex.quote(w) != w for w in entry):
        raise ValueError(f"the Python path {entry[0]!r} has characters the ssh launcher cannot pass through its "
                         "two shells; use a Python installed at a plain path")
    return argv + [shlex.quote(word) for word in entry]


def worker_entry() -> list[str]:
    """What the launcher runs in every process: this module, which execs the encoded command."""
    return [sys.executable, "-m", "fashionai.launcher"]


def encode_command(command: Sequence[str]) -> str:
    """The command as URL-safe base64 of its JSON: letters, digits, `-_=` only, so it passes any
    shell (ssh's `export NAME=value`) unchanged."""
    return base64.urlsafe_b64encode(json.dumps([str(w) for w in command]).encode()).decode()


def decode_command(text: str) -> list[str]:
    """The inverse of `encode_command`; ValueError for anything else."""
    try:
        command = json.loads(base64.urlsafe_b64decode(text.encode()).decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{COMMAND_VARIABLE} is not a command encoded by `fashionai launch` ({err})") from None
    if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
        raise ValueError(f"{COMMAND_VARIABLE} does not hold a command line")
    return command


def exec_launched_command() -> None:
    """Replace this process by the command `fashionai launch` encoded (the launcher's workers,
    servers and scheduler all run this)."""
    if COMMAND_VARIABLE not in os.environ:
        raise SystemExit(f"{COMMAND_VARIABLE} is not set: this module is run by `fashionai launch`")
    command = decode_command(os.environ[COMMAND_VARIABLE])
    os.execvp(command[0], command)


def launch(command: Sequence[str], **kw) -> None:
    """Run MXNet's launcher for `command` in this process (blocks until the job ends).

    The local launcher starts the scheduler here and `num_workers + num_servers` shells running
    `command`; each worker's exit status is checked by the tracker (non-zero raises there).
    """
    argv = launch_args(command, **kw)
    _patch_tracker()
    log.info("launching %s with: %s", shlex.join(command), " ".join(argv[1:]))
    saved, saved_env = sys.argv, os.environ.get(COMMAND_VARIABLE)
    sys.argv, os.environ[COMMAND_VARIABLE] = argv, encode_command(command)
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        sys.argv = saved
        if saved_env is None:
            os.environ.pop(COMMAND_VARIABLE, None)
        else:
            os.environ[COMMAND_VARIABLE] = saved_env


if __name__ == "__main__":
    exec_launched_command()
