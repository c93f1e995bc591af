"""What every subcommand module shares: the help formatter, subparser creation, the handler type,
and the flags predict and submit share."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from fashionai.core.runinfo import DEFAULT_WHICH
from fashionai.data.tta import REDUCTIONS
from fashionai.pipeline.precision import CHOICES, ENGINE_CHOICES, MAP_TOLERANCE
from fashionai.pipeline.tta_choice import DEFAULT_TTA, TTA_CHOICES

Handler = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help (unless the help says it already, or there is none) and keeps
    description line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, [], False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def subparser(sub: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter)


def add_inference_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by predict and submit: weights file, precision, TTA, devices, batch size, image root."""
    p.add_argument("--which", default=DEFAULT_WHICH, choices=("best", "last"),
                   help="weights of the run: the last epoch's or the best val mAP epoch's")
    p.add_argument("--precision", default="auto", choices=CHOICES,
                   help="fp32; fused (oneDNN-fused fp32 graph, CPU); bf16 (CPUs with BF16 kernels); int8 "
                        "(quantized, calibrated on the run's train images, cached in RUN/quantized); auto: the "
                        f"fastest whose val mAP is within {MAP_TOLERANCE} of fp32, measured once and cached in "
                        "RUN/precision.json (default: auto)")
    add_engine_flag(p, "auto")
    p.add_argument("--tta", default=DEFAULT_TTA, choices=TTA_CHOICES,
                   help="test-time views per image; auto: the mode with the best val mAP of the run, measured "
                        "once and cached in RUN/tta.json")
    p.add_argument("--tta-scales", type=int, nargs="+", metavar="S",
                   help="short-side sizes to take the views at (default: data_shape / the run's crop_ratio)")
    p.add_argument("--tta-reduce", default="mean", choices=REDUCTIONS, help="how views are combined")
    p.add_argument("--devices", default="auto", help="auto, cpu, or GPUs as training takes them")
    p.add_argument("-b", "--batch-size", type=int, default=32, help="network inputs (views) per device per pass")
    p.add_argument("--images-root", metavar="DIR",
                   help="folder question image paths are relative to (default: the question file's ../)")


def add_engine_flag(p: argparse.ArgumentParser, default: str) -> None:
    """--engine: what runs the forward pass (training stays MXNet)."""
    p.add_argument("--engine", default=default, choices=ENGINE_CHOICES,
                   help="mxnet; openvino (the run's ONNX export on OpenVINO's CPU plugin: fp32, bf16 where the "
                        "CPU has it, int8 calibrated on the run's train images; cached in RUN/openvino); auto: "
                        "with --precision, the fastest (engine, precision) pair that passes the same check "
                        "against MXNet fp32. An engine that cannot run is said and MXNet fp32 runs "
                        f"(default: {default})")


def predict_kw(args: argparse.Namespace) -> dict:
    return dict(tta=args.tta, scales=args.tta_scales, reduce=args.tta_reduce, devices=args.devices,
                batch_size=args.batch_size, which=args.which, precision=args.precision, engine=args.engine)
