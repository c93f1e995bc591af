"""Where a training step's time goes: MXNet's profiler over FP32 and BF16 AMP steps, by operator kind.

    .venv/bin/python bench/bench_profile.py [--model ResNet50_v2] [--size 224] [--batch 16] [--steps 4]

First table: each precision's step (bench_train's: forward, loss, backward, SGD with momentum)
profiled in its own child process (`amp.init` is process-wide) with MXNet's profiler and engine
bulking off (`MXNET_EXEC_BULK_EXEC_TRAIN=0`, else a static graph runs as a few opaque segments),
its operator time summed by kind: convolutions (forward, backward), BatchNorm, ReLU, casts
(`amp_cast`, `amp_multicast`), the optimizer update, AMP's finite check, and the rest. Shares are
of the summed operator time; ms per step divides by the steps profiled.

Second table: the same steps seen by oneDNN (`DNNL_VERBOSE=1`, one child per precision): the time
of every oneDNN primitive by kind and pass, and the kernel that ran it (`jit:avx512_core_amx_bf16`
is AMX; `reorder` converts layouts and casts), FP32 beside BF16. It shows which passes AMX speeds
up and which it does not. oneDNN's time is a part of the step: MXNet's own operators (the update,
casts done outside oneDNN) and the engine come on top.

Third table: what the step's settings do to throughput with the profiler off (plain img/s, one
child each): the SGD update aggregated over more tensors per call (`MXNET_OPTIMIZER_AGGREGATION_SIZE`,
MXNet's default 4) and the batch size, for FP32 and BF16.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402
import common  # noqa: E402

# (substring of a lower-cased operator name, kind); the first match wins, backward ops get " bwd"
KINDS = (("convolution", "conv"), ("fullyconnected", "dense"), ("batchnorm", "BatchNorm"),
         ("activation", "ReLU"), ("relu", "ReLU"), ("amp_", "cast"), ("cast", "cast"), ("sgd", "optimizer"),
         ("all_finite", "AMP finite check"), ("pooling", "pooling"), ("add", "add"), ("elemwise", "add"))
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def kind(op: str) -> str:
    """The row an operator's time is summed into."""
    name = op.lower()
    base = next((k for key, k in KINDS if key in name), "other")
    return f"{base} bwd" if "backward" in name and base != "other" else base


def profile_step(model: str, size: int, batch: int, dtype: str, steps: int) -> dict:
    """{"img_s": .., "op_ms": {kind: ms per step}} of `steps` profiled training steps (after 3 warm-up)."""
    import mxnet as mx

    step = _training_step(model, size, batch, dtype)
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, continuous_dump=False,
                           filename=str(Path(common.__file__).parent / ".work" / "profile.json"))
    mx.profiler.set_state("run")
    start = time.perf_counter()
    images = sum(step() for _ in range(steps))
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    mx.profiler.set_state("stop")
    stats = json.loads(mx.profiler.dumps(reset=True, format="json"))
    ops = stats.get("Time", stats).get("operator", {})
    per_kind: dict[str, float] = collections.Counter()
    for op, values in ops.items():
        per_kind[kind(op)] += values["Total"] / steps
    return {"img_s": images / seconds, "op_ms": dict(per_kind)}


def _training_step(model: str, size: int, batch: int, dtype: str):
    """bench_train's step function for `dtype`, after 3 warm-up steps."""
    import mxnet as mx

    from fashionai.training.fit import check_dtype

    check_dtype(dtype, [mx.cpu()])
    net = bench_train._net(model, size, "static", dtype)
    step = bench_train._step_fn(net, bench_train._trainer(net, dtype), bench_train._memory_batches(batch, size), dtype)
    for _ in range(3):
        step()
    mx.nd.waitall()
    return step


def dnnl_step(model: str, size: int, batch: int, dtype: str, steps: int) -> dict:
    """{"ms": {"primitive, pass": ms per step}, "kernel": {...: the oneDNN implementation that took
    most of it}} of `steps` training steps, read from oneDNN's verbose lines (the child runs with
    DNNL_VERBOSE=1; the lines of the measured steps go to a file: oneDNN prints them to stdout)."""
    import mxnet as mx

    step = _training_step(model, size, batch, dtype)
    sys.stdout.flush()
    libc, saved = ctypes.CDLL(None), os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as log:
        os.dup2(log.fileno(), 1)
        try:
            for _ in range(steps):
                step()
            mx.nd.waitall()
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = [line.split(",") for line in log if line.startswith("dnnl_verbose,exec,")]
    ms, by_kernel = collections.Counter(), collections.Counter()
    for fields in lines:  # dnnl_verbose, exec, engine, primitive, implementation, pass, ..., time in ms
        key = f"{fields[3]}, {fields[5]}"
        ms[key] += float(fields[-1]) / steps
        by_kernel[key, fields[4]] += float(fields[-1])
    kernel = {}  # per primitive and pass, the implementation that took most of its time
    for (key, impl), _ in sorted(by_kernel.items(), key=lambda item: item[1]):
        kernel[key] = impl
    return {"ms": dict(ms), "kernel": kernel}


def dnnl_rows(script: Path, base_args: list[str]) -> tuple[list[dict], list[str]]:
    """One row per oneDNN primitive and pass: ms per step FP32 and BF16, the speed-up, BF16's kernel."""
    results = {name: common.run_child(script, [*base_args, "--case", f"dnnl-{name}"], {"DNNL_VERBOSE": "1"})
               for name in DTYPES}
    notes = [f"{name}: {r['error']}" for name, r in results.items() if "error" in r]
    done = {n: r for n, r in results.items() if "ms" in r}
    keys = sorted({k for r in done.values() for k in r["ms"]}, key=lambda k: -max(r["ms"].get(k, 0) for r in done.values()))
    rows = []
    for key in keys:
        row = {"primitive, pass": key, **{f"{n} ms/step": r["ms"].get(key, 0.0) for n, r in done.items()}}
        if row.get("fp32 ms/step") and row.get("bf16 ms/step"):
            row["bf16 speed-up"] = f"{row['fp32 ms/step'] / row['bf16 ms/step']:.2f}x"
        row["bf16 kernel"] = done.get("bf16", {}).get("kernel", {}).get(key, "")
        rows.append(row)
    for name, r in done.items():
        notes.append(f"{name}: oneDNN time {sum(r['ms'].values()):.0f} ms per step")
    return rows, notes


def child(args: argparse.Namespace) -> None:
    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    try:
        if args.case.startswith("profile-"):
            out = profile_step(args.model, args.size, args.batch, DTYPES[args.case[8:]], args.steps)
        elif args.case.startswith("dnnl-"):
            out = dnnl_step(args.model, args.size, args.batch, DTYPES[args.case[5:]], args.steps)
        else:
            out = {"img_per_s": bench_train.measure(args.model, args.size, args.batch, args.seconds,
                                                    dtype=DTYPES[args.case])}
    except ValueError as err:
        out = {"error": str(err)}
    print(json.dumps(out))


def profile_rows(script: Path, base_args: list[str]) -> tuple[list[dict], list[str]]:
    """One row per operator kind: ms per step and share, FP32 beside BF16."""
    results, notes = {}, []
    for name in DTYPES:
        results[name] = common.run_child(script, [*base_args, "--case", f"profile-{name}"],
                                         {"MXNET_EXEC_BULK_EXEC_TRAIN": "0"})
        if "error" in results[name]:
            notes.append(f"{name}: {results[name]['error']}")
    done = {n: r for n, r in results.items() if "op_ms" in r}
    kinds = sorted({k for r in done.values() for k in r["op_ms"]},
                   key=lambda k: -max(r["op_ms"].get(k, 0) for r in done.values()))
    rows = []
    for k in kinds:
        row = {"operator kind": k}
        for name, r in done.items():
            total = sum(r["op_ms"].values())
            row[f"{name} ms/step"] = r["op_ms"].get(k, 0.0)
            row[f"{name} share"] = f"{100 * r['op_ms'].get(k, 0.0) / total:.1f}%"
        rows.append(row)
    for name, r in done.items():
        notes.append(f"{name}: {r['img_s']:.2f} img/s under the profiler with bulking off; operator time "
                     f"{sum(r['op_ms'].values()):.0f} ms per step")
    return rows, notes


def settings_rows(script: Path, args: argparse.Namespace) -> list[dict]:
    """img/s of FP32 and BF16 at each optimizer aggregation size and batch size."""
    rows = []
    for batch, aggregation in ((args.batch, None), (args.batch, "1"), (args.batch, "60"), (2 * args.batch, None)):
        row = {"batch": batch, "MXNET_OPTIMIZER_AGGREGATION_SIZE": aggregation or "4 (MXNet's default)"}
        child_args = ["--model", args.model, "--size", str(args.size), "--batch", str(batch),
                      "--seconds", str(args.seconds)]
        for name in DTYPES:
            out = common.run_child(script, [*child_args, "--case", name],
                                   {"MXNET_OPTIMIZER_AGGREGATION_SIZE": aggregation})
            row[f"{name} img/s"] = out.get("img_per_s")
        if row["fp32 img/s"] and row["bf16 img/s"]:
            row["bf16 / fp32"] = f"{row['bf16 img/s'] / row['fp32 img/s']:.2f}x"
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ResNet50_v2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=4, help="profiled steps per precision")
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per throughput case")
    p.add_argument("--json", help="append the results to this JSON lines file")
    common.add_child_flags(p)
    args = p.parse_args()
    if args.child:
        return child(args)

    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    info = common.machine_info()
    script = Path(__file__)
    base_args = ["--model", args.model, "--size", str(args.size), "--batch", str(args.batch),
                 "--steps", str(args.steps)]
    rows, notes = profile_rows(script, base_args)
    columns = ["operator kind"] + [f"{n} {c}" for n in DTYPES for c in ("ms/step", "share")]
    common.report(f"Where a training step goes: {args.model} at {args.size} px, batch {args.batch}", info,
                  {"profiled steps": args.steps}, rows, columns, notes, args.json)
    rows, notes = dnnl_rows(script, base_args)
    common.report(f"oneDNN primitives of a training step: {args.model} at {args.size} px, batch {args.batch}", info,
                  {"steps": args.steps}, rows,
                  ["primitive, pass", "fp32 ms/step", "bf16 ms/step", "bf16 speed-up", "bf16 kernel"], notes, args.json)
    rows = settings_rows(script, args)
    common.report(f"Training step settings: {args.model} at {args.size} px", info, {"seconds per case": args.seconds},
                  rows, ["batch", "MXNET_OPTIMIZER_AGGREGATION_SIZE", "fp32 img/s", "bf16 img/s", "bf16 / fp32"],
                  [], args.json)


if __name__ == "__main__":
    main()
