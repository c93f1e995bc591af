"""Inference precision: which numeric form of a trained net predict runs, and how `auto` picks one.

| precision | what runs                                                             | where                  |
|-----------|-----------------------------------------------------------------------|------------------------|
| `fp32`    | the Gluon net as trained, hybridized (static_alloc, static_shape)     | any device             |
| `fused`   | the same FP32 weights, graph partitioned by MXNet's oneDNN subgraph   | CPU, MKLDNN build      |
|           | backend (`MKLDNN` in 1.9.1): conv+BN+ReLU(+add) -> `_sg_mkldnn_conv`, |                        |
|           | dense -> `_sg_mkldnn_fully_connected`                                 |                        |
| `bf16`    | `amp.convert_hybrid_block(target_dtype="bfloat16")`                   | CPUs whose oneDNN has  |
|           |                                                                       | BF16 kernels (AVX-512) |
| `int8`    | post-training quantization (`quantize_net_v2`), calibrated on the     | CPU, MKLDNN build      |
|           | run's train images; cached in `<run>/quantized/`                      |                        |
| `auto`    | the fastest of those whose val mAP is within `MAP_TOLERANCE` of fp32, | measured once per      |
|           | decided by `choose_precision` and cached in `<run>/precision.json`    | params file + machine  |

Library functions default to `fp32` (exact, reproducible); the command line defaults to `auto`.
A precision the machine cannot run is refused with a ValueError saying why, never replaced silently.
Nets returned by `load_net` carry their precision (`precision_of`), so `predict.predict_paths`
does not re-hybridize them (a plain re-hybridize would drop the fused backend).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai import precision_probe
from fashionai.evaluate import _json_safe, format_table, save_table

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fused", "bf16", "int8")  # candidates, reference first
CHOICES: tuple[str, ...] = (*PRECISIONS, "auto")
MAP_TOLERANCE = 0.005  # auto: largest |val mAP - fp32 val mAP| a faster precision may have
FUSED_BACKEND = "MKLDNN"  # MXNet 1.9.1's name for its oneDNN subgraph backend (2.x calls it ONEDNN)

# int8 post-training quantization. Naive (min/max) calibration: on the demo runs measured it kept
# val mAP and argmax agreement with FP32 far better than entropy (KL) calibration, which clips
# outliers that ~100 images do not estimate well, and it calibrates ~4x faster. 128 images rather
# than 64 halved the mAP change on one of them. Excluding the first conv / last dense did not help
# consistently and costs ~15% speed, so nothing is excluded by default.
CALIB_IMAGES = 128
CALIB_MODE = "naive"
CALIB_SEED = 0
INT8_EXCLUDE: tuple[str, ...] = ()  # `exclude_layers_match` patterns, e.g. ("conv0_fwd", "dense")
QUANTIZED_DIR = "quantized"
DECISION_FILE = "precision.json"
COMPARE_STEM = "precision_compare"
PRECISION_TAG = "fashionai_precision"  # attribute load_net sets on the nets it returns
THROUGHPUT_SECONDS = 2.0  # timing budget per precision, split into 3-10 alternating rounds

COMPARE_COLUMNS = (("precision", "{}"), ("img_s", "{:.1f}"), ("speedup", "{:.2f}x"), ("val_map", "{:.4f}"),
                   ("delta_map", "{:+.4f}"), ("argmax_agreement", "{:.4f}"), ("max_abs_dp", "{:.2e}"),
                   ("mean_abs_dp", "{:.2e}"), ("reason", "{}"))


# --- what can run here ---------------------------------------------------------------------------
def check_precision(name: str, choices: Sequence[str] = CHOICES) -> str:
    """Return `name` if it is a precision, else a ValueError listing the valid ones."""
    if name not in choices:
        raise ValueError(f"unknown precision {name!r}; valid: {', '.join(choices)}")
    return name


def availability(precision: str, ctx: Sequence[mx.Context]) -> tuple[bool, str]:
    """(True, "") when `precision` can run on `ctx`, else (False, the reason).

    fused / bf16 / int8 are oneDNN (MKLDNN) CPU paths; BF16 is asked of the probe, which runs a
    tiny BF16 net, because CPU flags alone do not say which kernels oneDNN has.
    """
    import mxnet as mx

    check_precision(precision, PRECISIONS)
    if precision == "fp32":
        return True, ""
    gpus = [str(c) for c in ctx if c.device_type != "cpu"]
    if gpus:
        return False, f"{precision} is a oneDNN CPU path, not for {', '.join(gpus)}; use fp32 on GPUs"
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        return False, "this MXNet build has no oneDNN (runtime feature MKLDNN is off)"
    if precision == "bf16":
        return precision_probe.bf16_supported()
    return True, ""


def require(precision: str, ctx: Sequence[mx.Context]) -> None:
    """ValueError naming the reason when `precision` cannot run on `ctx`."""
    ok, why = availability(precision, ctx)
    if not ok:
        raise ValueError(f"precision {precision} is not supported on this machine: {why}")


def precision_of(net) -> str | None:
    """The precision `load_net` prepared `net` in; None for a net that did not come from it."""
    return getattr(net, PRECISION_TAG, None)


# --- nets in each precision ----------------------------------------------------------------------
def _as_list(ctx) -> list:
    import mxnet as mx

    if ctx is None:
        return [mx.cpu()]
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def load_net(
    run_dir: str | Path, precision: str, *, ctx=None, which: str = "best",
) -> tuple[mx.gluon.HybridBlock, dict]:
    """(net, config): the run's `<which>.params` in `precision`, hybridized and ready to run on `ctx`.

    int8 comes from the run's quantization cache (built on first use, see `quantized_net`).
    """
    from fashionai.model import load_run, read_config

    ctx = _as_list(ctx)
    require(precision, ctx)
    if precision == "int8":
        net, config = quantized_net(run_dir, ctx=ctx, which=which), read_config(run_dir)
    else:
        net, config = load_run(run_dir, ctx=ctx, which=which)
        net = convert(net, precision, ctx=ctx, data_shape=int(config["data_shape"]))
    setattr(net, PRECISION_TAG, precision)
    log.info("%s (%s) runs in %s", run_dir, which, precision)
    return net, config


def convert(net: mx.gluon.HybridBlock, precision: str, *, ctx, data_shape: int) -> mx.gluon.HybridBlock:
    """The FP32 `net` as fp32, fused or bf16, hybridized with static_alloc / static_shape."""
    import mxnet as mx

    if precision == "fp32":
        net.hybridize(static_alloc=True, static_shape=True)
    elif precision == "fused":
        # the partition happens at the first forward; the backend is kept by later calls
        net.hybridize(backend=FUSED_BACKEND, static_alloc=True, static_shape=True)
    elif precision == "bf16":
        from mxnet.contrib import amp

        net.hybridize(static_alloc=True, static_shape=True)
        net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx[0])).wait_to_read()  # the graph to convert
        # ctx matters: its default is gpu(0). No amp.init(): that would patch MXNet process-wide.
        net = amp.convert_hybrid_block(net, target_dtype="bfloat16", cast_optional_params=True, ctx=ctx)
        net.hybridize(static_alloc=True, static_shape=True)
    else:
        raise ValueError(f"convert: {precision} is not an FP32 conversion (int8 goes through quantized_net)")
    return net


def fused_ops(net: mx.gluon.HybridBlock, data_shape: int) -> list[str]:
    """Names of the oneDNN-fused operators (`_sg_mkldnn_*`) in `net`'s graph, read from its export:
    proof that a precision really runs fused kernels (empty for a plain graph)."""
    import mxnet as mx

    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx)).wait_to_read()
    with tempfile.TemporaryDirectory() as tmp:
        net.export(str(Path(tmp) / "net"))
        nodes = json.loads((Path(tmp) / "net-symbol.json").read_text())["nodes"]
    return [n["op"] for n in nodes if n["op"].startswith("_sg_mkldnn")]


# --- int8: calibration and its cache -------------------------------------------------------------
def params_fingerprint(path: Path) -> dict:
    """File name, size, mtime and SHA-1 of a params file: what a cache built from it is keyed by
    (the SHA-1 decides; a copied run keeps its caches, a retrained one does not)."""
    stat = path.stat()
    return {"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha1": hashlib.sha1(path.read_bytes()).hexdigest()}


def int8_settings(config: dict, *, calib_images: int = CALIB_IMAGES, calib_mode: str = CALIB_MODE,
                  seed: int = CALIB_SEED, exclude: Sequence[str] = INT8_EXCLUDE) -> dict:
    """Everything besides the weights that the quantized graph depends on."""
    import mxnet as mx

    return {"calib_mode": calib_mode, "calib_images": calib_images, "seed": seed, "quantized_dtype": "auto",
            "exclude_layers_match": list(exclude), "data_shape": int(config["data_shape"]),
            "mxnet": mx.__version__}


def _int8_files(run_dir: Path, which: str) -> dict[str, Path]:
    stem = run_dir / QUANTIZED_DIR / f"int8-{which}"
    return {"prefix": stem, "symbol": Path(f"{stem}-symbol.json"), "params": Path(f"{stem}-0000.params"),
            "meta": Path(f"{stem}.json")}


def calibration_batch(config: dict, count: int = CALIB_IMAGES, seed: int = CALIB_SEED) -> mx.nd.NDArray:
    """(n, 3, S, S): up to `count` of the run's train images (a seeded draw over all classes),
    preprocessed exactly as evaluation does, so the ranges calibrated are the ones predicted on."""
    import mxnet as mx

    from fashionai.data import eval_transform, split_dir

    train = split_dir(config["prepared"], config["task"], "train")
    files = sorted(train.glob("*/*.jpg"))
    if not files:
        raise FileNotFoundError(f"{train}: no training images to calibrate int8 on")
    random.Random(seed).shuffle(files)
    transform = eval_transform(int(config["data_shape"]))
    return mx.nd.stack(*[transform(mx.image.imread(str(f))) for f in files[:count]])


def calibrate_int8(run_dir: Path, which: str, settings: dict, files: dict[str, Path]) -> None:
    """Quantize `<which>.params` with MXNet's `quantize_net_v2` and write the graph + params.

    Calibration and export run on `mx.cpu()` (quantize_net_v2 applies its oneDNN passes only for
    exactly that context); `quantized_net` loads the result on any CPU contexts.
    """
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_net_v2

    from fashionai.model import load_run

    net, config = load_run(run_dir, ctx=mx.cpu(), which=which)
    data = calibration_batch(config, settings["calib_images"], settings["seed"])
    calib = mx.io.NDArrayIter(data, batch_size=min(32, len(data)))  # bounded memory on big nets
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # "Cannot decide type for ... data": the input is fed later
            warnings.simplefilter("ignore", UserWarning)
            qnet = quantize_net_v2(
                net, quantized_dtype=settings["quantized_dtype"], calib_mode=settings["calib_mode"],
                calib_data=calib, num_calib_examples=len(data), ctx=mx.cpu(),
                exclude_layers_match=list(settings["exclude_layers_match"]) or None,
            )
            qnet.hybridize(static_alloc=True, static_shape=True)
            qnet(data[:1]).wait_to_read()  # export needs a run graph; MXNet refuses here if it cannot
    except mx.base.MXNetError as err:
        reason = str(err).strip().splitlines()[-1][:200]
        raise ValueError(f"int8: MXNet could not quantize or run the quantized {config['model']} on this CPU "
                         f"({reason}); its int8 kernels need oneDNN on x86 (AVX2 or newer)") from None
    files["prefix"].parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=files["prefix"].parent) as tmp:
        qnet.export(str(Path(tmp) / "q"))
        Path(tmp, "q-symbol.json").replace(files["symbol"])
        Path(tmp, "q-0000.params").replace(files["params"])
    log.info("int8: calibrated %s (%s) on %d train images (%s) in %.1f s", run_dir, which, len(data),
             settings["calib_mode"], time.perf_counter() - start)


def _cache_is_valid(files: dict[str, Path], source: dict, settings: dict) -> bool:
    if not all(files[k].is_file() for k in ("symbol", "params", "meta")):
        return False
    try:
        meta = json.loads(files["meta"].read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("source", {}).get("sha1") == source["sha1"] and meta.get("settings") == settings


def quantized_net(run_dir: str | Path, *, ctx=None, which: str = "best", **settings_kw) -> mx.gluon.SymbolBlock:
    """The run's int8 net on `ctx`: from `<run>/quantized/int8-<which>-*` when that was built from
    the same params file content (SHA-1) with the same settings, else calibrated now and cached.

    The small `int8-<which>.json` beside the graph is written last, so an interrupted build is
    never taken for a valid cache.
    """
    import mxnet as mx

    from fashionai.model import read_config

    run_dir, ctx = Path(run_dir), _as_list(ctx)
    config = read_config(run_dir)
    source_path = run_dir / f"{which}.params"
    if not source_path.is_file():
        raise FileNotFoundError(f"{source_path}: no such file; the run has no {which} checkpoint yet")
    source, settings = params_fingerprint(source_path), int8_settings(config, **settings_kw)
    files = _int8_files(run_dir, which)
    if _cache_is_valid(files, source, settings):
        log.info("int8: reusing %s (built from this %s)", files["symbol"], source["file"])
    else:
        files["meta"].unlink(missing_ok=True)  # invalid until the new graph and params are both in place
        calibrate_int8(run_dir, which, settings, files)
        meta = {"source": source, "settings": settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _atomic_write(files["meta"], json.dumps(meta, indent=2) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = mx.gluon.SymbolBlock.imports(str(files["symbol"]), ["data"], str(files["params"]), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _atomic_write(path: Path, text: str) -> None:
    """Write beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as f:
        f.write(text)
    Path(f.name).replace(path)


# --- measuring and choosing ----------------------------------------------------------------------
def measure_throughput(nets: dict[str, mx.gluon.Block], batch: mx.nd.NDArray, *,
                       seconds: float = THROUGHPUT_SECONDS) -> dict[str, float]:
    """Images per second of each net on the fixed `batch`, after two warm-up passes.

    About `seconds` per net, in 3 to 10 rounds that alternate between the nets; each net keeps its
    best round. Other processes on the machine only ever slow a round down (with OpenMP threads
    waiting at barriers, by a lot), so the best of many short rounds taken turn about estimates the
    uncontended speed, and a burst of load hits every precision alike rather than whichever ran
    during it.
    """
    per_pass = {}
    for name, net in nets.items():
        for _ in range(2):
            net(batch).wait_to_read()
        start = time.perf_counter()
        net(batch).wait_to_read()
        per_pass[name] = max(time.perf_counter() - start, 1e-6)
    rounds = max(3, min(10, int(seconds / max(per_pass.values()))))
    passes = {name: max(1, math.ceil(seconds / rounds / t)) for name, t in per_pass.items()}
    best = dict.fromkeys(nets, 0.0)
    for _ in range(rounds):
        for name, net in nets.items():
            start = time.perf_counter()
            for _ in range(passes[name]):
                net(batch).wait_to_read()
            best[name] = max(best[name], batch.shape[0] * passes[name] / (time.perf_counter() - start))
    return best


def _fixed_batch(images: Sequence[Path], data_shape: int, batch_size: int, ctx) -> mx.nd.NDArray:
    """(batch_size, 3, S, S) evaluation views of the first val images, repeated to fill the batch."""
    import mxnet as mx

    from fashionai.data import eval_transform

    transform = eval_transform(data_shape)
    views = [transform(mx.image.imread(str(p))) for p in images[:batch_size]]
    return mx.nd.stack(*[views[i % len(views)] for i in range(batch_size)]).as_in_context(ctx)


def _agreement(probs: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(probs - ref)
    return {"argmax_agreement": float((probs.argmax(1) == ref.argmax(1)).mean()),
            "max_abs_dp": float(diff.max()), "mean_abs_dp": float(diff.mean())}


def compare_precisions(
    run_dir: str | Path, *, devices: str = "auto", batch_size: int = 32, which: str = "best",
    precisions: Sequence[str] = PRECISIONS, seconds: float | None = None,
) -> list[dict]:
    """One row per precision, measured on the run's val split (TTA none):

    supported (and the reason when not), img/s on a fixed batch of `batch_size` on the first device,
    speed-up vs fp32, val official AP (the leaderboard metric) and accuracy, delta mAP vs fp32, and
    agreement with fp32's probabilities (share of equal argmax, max and mean |dp|).
    fp32 is always measured: it is the reference.
    """
    import mxnet as mx

    from fashionai.devices import resolve_devices
    from fashionai.evaluate import evaluate_predictions, val_split
    from fashionai.predict import predict_paths
    from fashionai.tasks import class_names

    ctx = resolve_devices(devices)
    task, images, labels = val_split(run_dir)
    precisions = ["fp32", *[p for p in precisions if p != "fp32"]]
    rows, nets, probs = [], {}, {}
    data_shape = None
    for name in precisions:
        ok, why = availability(name, ctx)
        row = {"precision": name, "supported": ok, "reason": why}
        rows.append(row)
        if not ok:
            log.info("precision %s: not measured (%s)", name, why)
            continue
        try:
            net, config = load_net(run_dir, name, ctx=ctx, which=which)
            data_shape = int(config["data_shape"])
            probs[name] = predict_paths(net, images, data_shape=data_shape, ctx=ctx, batch_size=batch_size)
        except (ValueError, OSError, mx.base.MXNetError) as err:  # e.g. int8 without train images
            if name == "fp32":
                raise
            row.update(supported=False, reason=str(err).strip().splitlines()[-1][:300])
            log.warning("precision %s: not usable here: %s", name, row["reason"])
            continue
        nets[name] = net
        report = evaluate_predictions(probs[name], labels, class_names(task))
        row.update(val_map=report["official_ap"], accuracy=report["accuracy"])
    speeds = measure_throughput(nets, _fixed_batch(images, data_shape, batch_size, ctx[0]),
                                seconds=THROUGHPUT_SECONDS if seconds is None else seconds)
    ref = rows[0]
    for row in rows:
        if row["precision"] in nets:
            row.update(img_s=speeds[row["precision"]], speedup=speeds[row["precision"]] / speeds["fp32"],
                       delta_map=row["val_map"] - ref["val_map"],
                       **_agreement(probs[row["precision"]], probs["fp32"]))
            log.info("precision %s: %.1f img/s (%.2fx fp32), val mAP %.4f (%+.4f), argmax agreement %.4f, "
                     "max |dp| %.2e", row["precision"], row["img_s"], row["speedup"], row["val_map"],
                     row["delta_map"], row["argmax_agreement"], row["max_abs_dp"])
    return rows


def pick_precision(rows: Sequence[dict], tolerance: float = MAP_TOLERANCE) -> tuple[str, str]:
    """(precision, why): the fastest measured row whose val mAP is within `tolerance` of fp32's.

    Within means |delta| <= tolerance, both ways: a precision that moves the val mAP more than that
    (even up, on a small val split) predicts differently from the trained model, and that is noise
    as much as a gain. fp32 is always eligible, so there is always an answer.
    """
    ref = next(r for r in rows if r["precision"] == "fp32")
    if ref.get("val_map") is None or math.isnan(ref["val_map"]):
        return "fp32", "fp32's val mAP is undefined (no scorable val rows), so no precision can be checked against it"
    eligible, rejected = [], []
    for row in rows:
        if not row.get("supported") or row.get("img_s") is None:
            rejected.append(f"{row['precision']} (not supported: {row.get('reason') or 'not measured'})")
        elif math.isnan(row["val_map"]) or abs(row["val_map"] - ref["val_map"]) > tolerance + 1e-12:
            delta = row["val_map"] - ref["val_map"]
            rejected.append(f"{row['precision']} (val mAP {row['val_map']:.4f}, {delta:+.4f})")
        else:
            eligible.append(row)
    best = max(eligible, key=lambda r: r["img_s"])
    why = (f"{best['precision']} is the fastest ({best['img_s']:.1f} img/s, {best['img_s'] / ref['img_s']:.2f}x fp32) "
           f"with val mAP {best['val_map']:.4f} within {tolerance} of fp32's {ref['val_map']:.4f}")
    slower = [f"{r['precision']} ({r['img_s']:.1f} img/s)" for r in eligible if r is not best]
    if slower:
        why += f"; slower: {', '.join(slower)}"
    if rejected:
        why += f"; rejected: {', '.join(rejected)}"
    return best["precision"], why


@dataclass(frozen=True)
class Decision:
    """What `auto` runs for a run, why, and the measurements it was decided from."""

    precision: str
    reason: str
    table: list[dict] = field(default_factory=list)
    cached: bool = False


def _machine() -> str:
    """The CPU model (a decision made on one CPU does not hold on another)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _decision_key(params: Path, ctx: Sequence, tolerance: float) -> dict:
    import mxnet as mx

    return {"params": params_fingerprint(params), "devices": [str(c) for c in ctx], "machine": _machine(),
            "tolerance": tolerance, "mxnet": mx.__version__}


def _same_key(saved: dict, key: dict) -> bool:
    """The params file's name and content (SHA-1) and everything else but its mtime must match."""
    def strip(k: dict) -> dict:
        return {**k, "params": {f: k.get("params", {}).get(f) for f in ("file", "sha1")}}
    return strip(saved) == strip(key)


def _val_missing(run_dir: Path) -> str:
    """Why the run's val split cannot be measured ('' when it can)."""
    from fashionai.evaluate import val_split

    try:
        _, images, _ = val_split(run_dir)
    except (FileNotFoundError, ValueError) as err:
        return str(err)
    missing = [p for p in images if not p.is_file()]
    return f"{len(missing)} val image(s) missing, e.g. {missing[0]}" if missing else ""


def choose_precision(
    run_dir: str | Path, *, devices: str = "auto", batch_size: int = 32, which: str = "best",
    tolerance: float = MAP_TOLERANCE, refresh: bool = False,
) -> Decision:
    """The fastest precision whose val mAP stays within `tolerance` of fp32 on the run's own val split.

    Measured once (`compare_precisions`) and saved in `<run>/precision.json` with the table, keyed by
    the params file (name, SHA-1; its mtime is recorded), devices, CPU model, tolerance and MXNet
    version; later calls with the same key reuse it unless `refresh`. Without a val split to measure
    on (e.g. the run dir was moved without its prepared data) it answers fp32 with a warning and
    saves nothing: a precision is never guessed.
    """
    from fashionai.devices import resolve_devices

    run_dir = Path(run_dir)
    params = run_dir / f"{which}.params"
    if not params.is_file():
        raise FileNotFoundError(f"{params}: no such file; the run has no {which} checkpoint yet")
    ctx = resolve_devices(devices)
    others = {name: availability(name, ctx) for name in PRECISIONS if name != "fp32"}
    if not any(ok for ok, _ in others.values()):  # e.g. GPUs: nothing to measure against
        why = "; ".join(f"{name}: {reason}" for name, (_, reason) in others.items())
        log.info("precision auto: fp32 for %s (the only one that runs here: %s)", run_dir, why)
        return Decision("fp32", f"the only precision that runs on {', '.join(map(str, ctx))} ({why})")
    key = _decision_key(params, ctx, tolerance)
    path = run_dir / DECISION_FILE
    if path.is_file() and not refresh:
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            saved = {}
        if _same_key(saved.get("key", {}), key):
            log.info("precision auto: %s for %s (cached in %s: %s)", saved["precision"], run_dir, path, saved["reason"])
            return Decision(saved["precision"], saved["reason"], saved.get("table", []), cached=True)
    missing = _val_missing(run_dir)
    if missing:
        log.warning("precision auto: cannot measure on %s's val split (%s); running fp32", run_dir, missing)
        return Decision("fp32", f"val split not available ({missing}); fp32 without measuring")
    table = compare_precisions(run_dir, devices=devices, batch_size=batch_size, which=which)
    chosen, why = pick_precision(table, tolerance)
    saved = {"precision": chosen, "reason": why, "key": key, "batch_size": batch_size,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "table": table}
    _atomic_write(path, json.dumps(_json_safe(saved), indent=2) + "\n")
    log.info("precision auto: %s for %s: %s (saved in %s)", chosen, run_dir, why, path)
    return Decision(chosen, why, table)


def resolve_precision(run_dir: str | Path, precision: str, *, devices: str = "auto", batch_size: int = 32,
                      which: str = "best") -> str:
    """`precision` itself, or for `auto` the run's choice (`choose_precision`, cached)."""
    check_precision(precision)
    if precision != "auto":
        return precision
    return choose_precision(run_dir, devices=devices, batch_size=batch_size, which=which).precision


def save_comparison(rows: Sequence[dict], run_dir: str | Path, **meta) -> dict[str, Path]:
    """`<run>/precision_compare.json` + `.csv`."""
    return save_table(rows, run_dir, COMPARE_STEM, **meta)


def format_comparison(rows: Sequence[dict]) -> str:
    """The comparison as a text table (unsupported precisions show their reason)."""
    return format_table([{**r, "reason": r.get("reason") or ""} for r in rows], COMPARE_COLUMNS)

