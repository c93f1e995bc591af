"""The `fashionai` command line: the only place that reads argv or configures logging.

Each subcommand has an `add_<name>` (its flags, a view of the stage's config) and a `_cmd_<name>`
(calls the stage's library functions), grouped by what they work on: data_commands (demo-data,
prepare, pack), train_command, run_commands (evaluate, predict, submit, check-submission, export),
job_commands (launch, demo), doctor_command (doctor). No stage module imports MXNet at import
time, so `main` can make the runtime settings (threads, spin policy, AMX: fashionai.core.runtime)
before anything imports it. Every failure ends as one line and an exit status (fashionai.core.errors).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from fashionai import __version__
from fashionai.cli.common import HelpFormatter, predict_kw
from fashionai.cli.data_commands import add_demo_data, add_pack, add_prepare
from fashionai.cli.doctor_command import add_doctor
from fashionai.cli.job_commands import add_demo, add_launch
from fashionai.cli.run_commands import add_check_submission, add_evaluate, add_export, add_predict, add_submit
from fashionai.cli.train_command import add_train, train_config
from fashionai.core import heartbeat
from fashionai.core.errors import install_sigterm, one_line
from fashionai.core.runtime import configure_runtime, log_runtime

__all__ = ["build_parser", "main", "predict_kw", "setup_logging", "train_config"]

log = logging.getLogger("fashionai")

COMMANDS = (
    add_demo_data, add_prepare, add_pack, add_train, add_evaluate, add_predict, add_submit,
    add_check_submission, add_export, add_launch, add_demo, add_doctor,
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each subcommand's handler is stored as `args.handler`."""
    parser = argparse.ArgumentParser(
        prog="fashionai", description="FashionAI attribute recognition pipeline (MXNet Gluon)",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fashionai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="debug logging, and the traceback of a failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        handler = add(sub)
        sub.choices[list(sub.choices)[-1]].set_defaults(handler=handler)
    return parser


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr in one format; run directories add their own file handler."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )


def threads_by_load(args: argparse.Namespace) -> bool:
    """Whether this command may start fewer threads while other work keeps cores busy: every command
    but a training run that must repeat exactly (`--deterministic`, the default), whose weights
    depend on the thread count and so must not depend on the machine's load at start."""
    if args.command in ("train", "demo", "launch"):
        return getattr(args, "deterministic", None) is False
    return True


SMALL_NET_THREADS = 1


def thread_cap(args: argparse.Namespace) -> int | None:
    """SMALL_NET_THREADS for the demo preset's own net (`demo`, `train --preset demo`, without
    --model or --data-shape), else None. Its kernels (mobilenet0.25 at 64 px) are too small to share:
    a demo training ran at 960-997 img/s on one OpenMP thread and 582-589 on two (2 cores,
    interleaved), and beside two busy processes one thread kept 0.55x its idle speed where two kept
    0.14x (bench_contention.py, median of 5 pairs). A fixed count also keeps runs repeatable."""
    demo = args.command == "demo" or (args.command == "train" and getattr(args, "preset", None) == "demo")
    if demo and getattr(args, "model", None) is None and getattr(args, "data_shape", None) is None:
        return SMALL_NET_THREADS
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)  # imports no MXNet: the runtime settings still apply
    settings = configure_runtime(by_load=threads_by_load(args), most_threads=thread_cap(args))
    setup_logging(args.verbose or args.debug)
    log_runtime(settings)
    args.runtime_settings = settings
    install_sigterm()
    try:
        heartbeat.start_from_env()  # a process of a `fashionai launch` job: keep in touch with the launcher
        return args.handler(args)
    except Exception as err:  # noqa: BLE001 - every failure ends as one line (the traceback with --debug)
        return _fail(err, args.debug)
    except KeyboardInterrupt as err:  # Ctrl-C, and SIGTERM (errors.Terminated)
        return _fail(err, args.debug)


def _fail(err: BaseException, debug: bool) -> int:
    """Log the exception as one line (and its traceback with --debug); return the exit status."""
    message, status = one_line(err)
    if debug:
        log.error("traceback:", exc_info=err)
    log.error("%s", message)
    return status
