"""The `fashionai` command line: the only place that reads argv or configures logging.

Each subcommand has a `_add_<name>` (its flags, a view of the stage's config) and a `_cmd_<name>`
(calls the stage's library functions). Stage modules are imported inside the handlers so that
`fashionai.runtime.configure_threads` runs before MXNet is imported.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from fashionai import __version__
from fashionai.runtime import configure_threads

log = logging.getLogger("fashionai")

Handler = Callable[[argparse.Namespace], int]


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in every --help and keeps description line breaks."""


def _subparser(sub: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, formatter_class=_Formatter)


# --- demo-data ----------------------------------------------------------------------------------
def _add_demo_data(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "demo-data", "write a small learnable dataset in the FashionAI layout")
    p.add_argument("out", help="output data root (gets base/, web/, rank/)")
    return _cmd_demo_data


def _cmd_demo_data(args: argparse.Namespace) -> int:
    raise NotImplementedError("demo-data is not built yet")


# --- prepare ------------------------------------------------------------------------------------
def _add_prepare(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "prepare", "annotation CSVs -> per-task train/val class folders + manifest")
    p.add_argument("--data", default="data", help="data root in the FashionAI layout")
    return _cmd_prepare


def _cmd_prepare(args: argparse.Namespace) -> int:
    raise NotImplementedError("prepare is not built yet")


# --- train --------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "train", "fine-tune a network on one task's prepared folders")
    p.add_argument("--task", help="attribute task, e.g. skirt_length_labels")
    return _cmd_train


def _cmd_train(args: argparse.Namespace) -> int:
    raise NotImplementedError("train is not built yet")


# --- evaluate -----------------------------------------------------------------------------------
def _add_evaluate(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "evaluate", "official mAP / BasicPrecision of a run or a submission file")
    p.add_argument("--submission", help="submission file to score")
    return _cmd_evaluate


def _cmd_evaluate(args: argparse.Namespace) -> int:
    raise NotImplementedError("evaluate is not built yet")


# --- predict ------------------------------------------------------------------------------------
def _add_predict(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "predict", "class probabilities of a trained run for images or questions")
    p.add_argument("--run", help="run directory")
    return _cmd_predict


def _cmd_predict(args: argparse.Namespace) -> int:
    raise NotImplementedError("predict is not built yet")


# --- submit -------------------------------------------------------------------------------------
def _add_submit(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "submit", "validated leaderboard submission from trained runs")
    p.add_argument("--questions", help="question.csv")
    return _cmd_submit


def _cmd_submit(args: argparse.Namespace) -> int:
    raise NotImplementedError("submit is not built yet")


# --- check-submission ---------------------------------------------------------------------------
def _add_check_submission(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "check-submission", "check a submission file the way the leaderboard would")
    p.add_argument("file", help="submission file")
    return _cmd_check_submission


def _cmd_check_submission(args: argparse.Namespace) -> int:
    raise NotImplementedError("check-submission is not built yet")


# --- demo ---------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "demo", "the whole pipeline end to end on generated demo data")
    p.add_argument("--workdir", default="demo", help="where data, runs and the submission go")
    return _cmd_demo


def _cmd_demo(args: argparse.Namespace) -> int:
    raise NotImplementedError("demo is not built yet")


# --- main ---------------------------------------------------------------------------------------
COMMANDS = (
    _add_demo_data, _add_prepare, _add_train, _add_evaluate, _add_predict, _add_submit,
    _add_check_submission, _add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each subcommand's handler is stored as `args.handler`."""
    parser = argparse.ArgumentParser(
        prog="fashionai", description="FashionAI attribute recognition pipeline (MXNet Gluon)",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"fashionai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    threads = configure_threads()
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    log.debug("threads: %s", threads)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        log.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
