"""What every benchmark prints beside its figures: the machine, the peak it is judged against, memory.

Benchmarks are scripts, not tests: each compares its cases side by side in one run and prints a
Markdown table (also appended to a JSON lines file with `--json`). Figures are img/s and, where a
case's work in FLOPs is known, its share of the FP32 convolution peak measured in the same run.
Cases that need another thread setting run in a child process (MXNet reads OMP_NUM_THREADS once,
at import), started by `run_child`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cores() -> int:
    from fashionai.core.cpu import usable_cores

    return usable_cores()


def machine_info() -> dict:
    """Cores, CPU model and the flags that decide MXNet's kernels, MXNet build features, threads."""
    import mxnet as mx

    from fashionai.core.cpu import cpu_flags

    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    flags = cpu_flags()
    features = mx.runtime.Features()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": model, "cores": cores(),
        "cpu_flags": [f for f in FLAGS if f in flags],
        "mxnet": mx.__version__, "mxnet_features": [f for f in ("MKLDNN", "CUDA", "OPENMP", "BLAS_OPEN")
                                                     if features.is_enabled(f)],
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset: MXNet's default)"),
    }


def peak_conv_gflops(seconds: float = 3.0) -> float:
    """FP32 GFLOPS of a large 3x3 convolution (batch 32, 256 -> 256 channels, 28x28), the roof a
    network's throughput is compared with (2 FLOPs per multiply-add)."""
    import mxnet as mx

    x = mx.nd.random.uniform(shape=(32, 256, 28, 28))
    w = mx.nd.random.uniform(shape=(256, 256, 3, 3))
    conv = lambda: mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=256, no_bias=True)  # noqa: E731
    conv().wait_to_read()
    flop = 2 * 32 * 256 * 28 * 28 * 256 * 9
    n, start = 0, time.time()
    while time.time() - start < seconds or n < 3:
        conv().wait_to_read()
        n += 1
    return flop * n / (time.time() - start) / 1e9


def forward_gflop(net, size: int) -> float:
    """FLOPs (2 per multiply-add) of one image's forward pass through the convolutions and dense
    layers of `net` at `size` px, from the graph's inferred shapes."""
    import mxnet as mx

    sym = net(mx.sym.var("data"))
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(1, 3, size, size))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    total = 0.0
    for node in nodes:
        out = shapes.get(node["name"] + "_output")
        if node["op"] not in ("Convolution", "FullyConnected") or not out:
            continue
        weight = shapes[nodes[node["inputs"][1][0]]["name"]]  # (out, in / groups, kh, kw) or (out, in)
        per_output = int(np.prod(weight[1:]))  # multiply-adds per output value
        total += 2 * int(np.prod(out[1:])) * per_output
    return total / 1e9


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its largest finished child), MiB.

    Linux keeps getrusage's ru_maxrss across exec, so a child started from a big parent would
    report the parent's peak; /proc/self/status VmHWM belongs to the new address space alone.
    """
    if not children:
        try:
            line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
            return int(line.split()[1]) / 1024
        except (OSError, StopIteration):
            pass
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def rate(step: Callable[[], int], seconds: float, warmup: int = 1, min_steps: int = 2) -> float:
    """Items per second of `step()` (which returns how many items it processed and waits for them)."""
    for _ in range(warmup):
        step()
    done, n, start = 0, 0, time.time()
    while time.time() - start < seconds or n < min_steps:
        done += step()
        n += 1
    return done / (time.time() - start)


def paired_ratios(baseline: Callable[[], float], candidate: Callable[[], float], pairs: int) -> list[float]:
    """candidate / baseline of `pairs` back-to-back measurements, the order alternating from pair to
    pair. The machine's speed drifts by 15-30% between runs minutes apart, more than some of the
    effects measured; neighbours share the drift, so their ratio cancels most of it where a ratio of
    two single runs does not."""
    ratios = []
    for i in range(pairs):
        if i % 2:
            b = candidate()
            a = baseline()
        else:
            a = baseline()
            b = candidate()
        ratios.append(b / a if a and b else float("nan"))
    return ratios


def describe_ratios(ratios: Sequence[float]) -> str:
    """'median 1.70x over 3 pairs: 1.86, 1.52, 1.70' (in the order measured) for the notes under a table."""
    good = [r for r in ratios if r == r]
    if not good:
        return "not measured"
    return f"median {float(np.median(good)):.2f}x over {len(good)} pairs: {', '.join(f'{r:.2f}' for r in good)}"


def add_child_flags(parser: argparse.ArgumentParser) -> None:
    """The hidden flags `run_child` starts a script's child with: `--child` and the `--case` to run."""
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="", help=argparse.SUPPRESS)


def run_child(script: str | Path, args: Sequence[str], env: dict[str, str | None]) -> dict:
    """Run `script --child ARGS` with `env` changes (None removes a variable); its last stdout line is JSON."""
    child_env = dict(os.environ)
    for key, value in env.items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    child_env["PYTHONPATH"] = str(ROOT) + os.pathsep + child_env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, str(script), "--child", *args], env=child_env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Markdown table of `rows` (floats with 3 significant figures, or 2 decimals for ratios)."""
    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) >= 10 or value == 0 else f"{value:.2f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def header(title: str, info: dict, extra: dict) -> str:
    """The lines above a benchmark's table: what ran, where, on how much."""
    settings = ", ".join(f"{k} {v}" for k, v in extra.items())
    return (f"## {title}\n\n{info['date']}; {info['cpu']}, {info['cores']} cores, flags "
            f"{' '.join(info['cpu_flags']) or '-'}; MXNet {info['mxnet']} ({' '.join(info['mxnet_features'])}); "
            f"OMP_NUM_THREADS {info['OMP_NUM_THREADS']}; {settings}\n")


def report(title: str, info: dict, extra: dict, rows: Sequence[dict], columns: Sequence[str],
           notes: Sequence[str] = (), json_path: str | None = None) -> str:
    """Print (and optionally append as JSON) a benchmark's result; returns the Markdown."""
    text = header(title, info, extra) + "\n" + table(rows, columns) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text, flush=True)
    if json_path:
        with open(json_path, "a") as f:
            f.write(json.dumps({"title": title, "machine": info, "settings": extra, "rows": list(rows),
                                "notes": list(notes)}, default=str) + "\n")
    return text


def demo_images(root: Path, per_class: int, size: int, task: str = "skirt_length_labels") -> Path:
    """A prepared demo root of `size`-px JPEGs (quality 90), made once under `root` and reused."""
    from fashionai.demodata.generate import make_demo_data
    from fashionai.data.prepare import prepare

    prepared = root / f"prepared-{task}-{per_class}-{size}"
    if not (prepared / task / "train").is_dir():
        make_demo_data(root / f"data-{task}-{per_class}-{size}", tasks=[task], train_per_class=per_class,
                       test_per_class=2, warmup_per_class=0, min_size=size, max_size=size, quality=90,
                       overwrite=True)
        prepare(root / f"data-{task}-{per_class}-{size}", prepared, workers=cores(), overwrite=True)
    return prepared
