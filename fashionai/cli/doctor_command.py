"""`fashionai doctor`: the machine as the pipeline sees it (fashionai.pipeline.doctor)."""

from __future__ import annotations

import argparse

from fashionai.cli.common import Handler, subparser
from fashionai.pipeline.doctor import diagnose, format_report


def add_doctor(sub: argparse._SubParsersAction) -> Handler:
    subparser(sub, "doctor", "report MXNet's build, GPUs and their kernels, CUDA libraries, CPU features; "
                             "exit 1 when something stands in the way")
    return _cmd_doctor


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = diagnose(args.runtime_settings)
    print(format_report(report))
    return 1 if report.problems else 0
