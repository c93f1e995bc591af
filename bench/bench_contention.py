"""Sharing the cores: throughput idle and with busy processes competing, per OpenMP spin policy.

    .venv/bin/python bench/bench_contention.py [--seconds 6] [--busy 2]

MXNet's GNU OpenMP threads spin-wait between kernels (libgomp's default: 300,000 spins before
sleeping). Alone on the cores that is free; when other processes want them, the spinning threads
burn the time slices the working threads need, and throughput collapses far below a fair share.
Each case runs in its own child process, with the spin policy in its environment, once on an idle
machine and once beside `--busy` busy-loop processes (pure Python `while True`), on three workloads:
ResNet50_v2 training (static graph, 224 px, batch 16) in FP32 and in BF16 AMP (what `--dtype auto`
trains in on an AMX CPU), ResNet50_v2 prediction (batch 32) and the demo preset's mobilenet0.25
training (64 px, batch 32: small kernels, many waits between them).
"Under load" is the img/s beside the busy processes over the idle img/s of the same policy, the
median of `--pairs` interleaved (idle, loaded) pairs: a fair share of 2 cores among 3 processes is
0.67x; the bar is 0.4x, at a cost of a few % idle. Img/s columns are medians of the same runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402
import common  # noqa: E402

PINNING = "BENCH_OPENVINO_PINNING"  # "0": the OpenVINO workload compiles with ENABLE_CPU_PINNING off
POLICIES = {  # name: environment of the child (None removes the variable)
    "libgomp default (MXNet's)": {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": None},
    "GOMP_SPINCOUNT=10000 (the project's)": {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None},
    "OMP_WAIT_POLICY=PASSIVE": {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"},
    # fewer threads than cores, as a busy machine would suggest (idle: half the speed, by design)
    "the project's spin, 1 thread": {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": "1"},
    # OpenVINO pins its threads to cores by default; only the OpenVINO workload reads this
    "the project's, OpenVINO pinning off": {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None, PINNING: "0"},
}
WORKLOADS = {  # name: (model, px, batch, train, dtype)
    "ResNet50_v2 train": ("ResNet50_v2", 224, 16, True, "float32"),
    "ResNet50_v2 train, BF16": ("ResNet50_v2", 224, 16, True, "bfloat16"),
    "ResNet50_v2 predict": ("ResNet50_v2", 224, 32, False, "float32"),
    "ResNet50_v2 predict, OpenVINO": ("ResNet50_v2", 224, 32, False, "openvino"),
    "mobilenet0.25 train (demo)": ("mobilenet0.25", 64, 32, True, "float32"),
}


def child(args: argparse.Namespace) -> None:
    """One workload in a fresh process, with the runtime the CLI sets up: prints {"img_per_s": ..}."""
    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    model, size, batch, train, dtype = WORKLOADS[args.case]
    try:
        if train:  # bench_train's own measurement: static graph, SGD with momentum, one batch in memory
            value = bench_train.measure(model, size, batch, args.seconds, dtype=dtype)
        elif dtype == "openvino":
            value = _openvino_rate(model, size, batch, args.seconds)
        else:
            value = _predict_rate(model, size, batch, args.seconds)
    except ValueError as err:  # BF16 where this CPU has no BF16 kernels
        print(json.dumps({"error": str(err)}))
        return
    print(json.dumps({"img_per_s": value}))


def _predict_rate(model: str, size: int, batch: int, seconds: float) -> float:
    """img/s of forward passes of the static graph on one batch in memory."""
    import mxnet as mx

    from fashionai.model import build_net

    net = build_net(model, 6, ctx=[mx.cpu()], hybridize=False)
    net.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.random.uniform(shape=(batch, 3, size, size))

    def step() -> int:
        net(data).wait_to_read()
        return batch

    return common.rate(step, seconds)


def _openvino_rate(model: str, size: int, batch: int, seconds: float) -> float:
    """img/s of OpenVINO fp32 forward passes of the same net (its own threads: OMP_NUM_THREADS's
    count as INFERENCE_NUM_THREADS, as the engine runs in predict)."""
    import tempfile

    import mxnet as mx
    import numpy as np

    from fashionai.inference.openvino_net import compile_model, logits_model, openvino_core
    from fashionai.model import build_net

    net = build_net(model, 6, ctx=[mx.cpu()], hybridize=False)
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1, 3, size, size))).wait_to_read()
    with tempfile.TemporaryDirectory() as tmp:
        net.export(f"{tmp}/net")
        mx.onnx.export_model(f"{tmp}/net-symbol.json", f"{tmp}/net-0000.params", in_shapes=[(batch, 3, size, size)],
                             in_types=np.float32, onnx_file_path=f"{tmp}/net.onnx")
        core, _ = openvino_core()
        pinning = False if os.environ.get(PINNING) == "0" else None
        compiled = compile_model(logits_model(core.read_model(f"{tmp}/net.onnx")), "fp32", pinning=pinning)
    request, data = compiled.create_infer_request(), np.random.uniform(size=(batch, 3, size, size)).astype(np.float32)

    def step() -> int:
        request.infer({0: data})
        return batch

    return common.rate(step, seconds)


def _busy(parent: int) -> None:
    """Spin until stopped, or until the bench that started it is gone (never an orphan hog)."""
    while os.getppid() == parent:
        pass


def measure(script: Path, workload: str, policy: str, seconds: float, busy: int) -> float:
    """img/s of `workload` under `policy`, beside `busy` busy-loop processes."""
    hogs = [multiprocessing.Process(target=_busy, args=(os.getpid(),), daemon=True) for _ in range(busy)]
    for hog in hogs:
        hog.start()
    try:
        result = common.run_child(script, ["--case", workload, "--seconds", str(seconds)], POLICIES[policy])
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()
    return result.get("img_per_s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per case (after one warm-up step)")
    p.add_argument("--busy", type=int, default=2, help="busy-loop processes competing for the cores")
    p.add_argument("--pairs", type=int, default=5, help="interleaved (idle, loaded) pairs per case; the ratio is their median")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    p.add_argument("--json", help="append the result to this JSON lines file")
    common.add_child_flags(p)
    args = p.parse_args()
    if args.child:
        return child(args)

    from fashionai.core.runtime import configure_threads

    configure_threads()  # what the children run with, so that the header says it
    info, script, rows = common.machine_info(), Path(__file__), []
    for workload in args.workloads:
        base = None
        for policy in args.policies:
            if policy.endswith("pinning off") and "OpenVINO" not in workload:
                continue  # the same as the project's policy for MXNet
            idles, loads = [], []

            def idle() -> float:
                idles.append(measure(script, workload, policy, args.seconds, 0))
                return idles[-1]

            def loaded() -> float:
                loads.append(measure(script, workload, policy, args.seconds, args.busy))
                return loads[-1]

            ratios = common.paired_ratios(idle, loaded, max(1, args.pairs))
            if not all(idles) or not all(loads):
                rows.append({"workload": workload, "spin policy": policy, "idle img/s": "not run (no BF16 here)"})
                continue
            idle_rate, loaded_rate = float(np.median(idles)), float(np.median(loads))
            base = base or idle_rate
            rows.append({"workload": workload, "spin policy": policy, "idle img/s": idle_rate,
                         "idle vs libgomp default": f"{idle_rate / base:.2f}x",
                         f"img/s beside {args.busy} busy": loaded_rate, "under load / idle": common.describe_ratios(ratios)})
    notes = [f"fair share with {args.busy} busy processes on {common.cores()} cores: "
             f"{common.cores() / (args.busy + 1):.2f} cores of {common.cores()}",
             "every child runs the project's runtime (threads, AMX); only the spin variables (and, in the last policy, "
             "the thread count) differ"]
    common.report("Sharing the cores: OpenMP spin policy", info, {"seconds per case": args.seconds}, rows,
                  ["workload", "spin policy", "idle img/s", "idle vs libgomp default", f"img/s beside {args.busy} busy",
                   "under load / idle"], notes, args.json)


if __name__ == "__main__":
    main()
