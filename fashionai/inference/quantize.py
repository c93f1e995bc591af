"""int8 prediction: post-training quantization of a run's weights, calibrated on its own training
images, and the cache of the quantized graph in `<run>/quantized/`.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fashionai.core.devices import context_list
from fashionai.core.io import params_fingerprint, write_json
from fashionai.core.runinfo import RunInfo
from fashionai.data.loaders import IMAGE_EXTENSIONS, split_dir
from fashionai.data.transforms import eval_transform
from fashionai.model import load_run

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)


# int8 post-training quantization. Naive (min/max) calibration: on the demo runs measured it kept
# val mAP and argmax agreement with FP32 far better than entropy (KL) calibration, which clips
# outliers that ~100 images do not estimate well, and it calibrates ~4x faster. 128 images rather
# than 64 halved the mAP change on one of them. Excluding the first conv / last dense did not help
# consistently and costs ~15% speed, so nothing is excluded by default. Re-measured on 20 demo-preset
# runs (bench/RESULTS.md, "INT8 calibration"): entropy on 256 images agreed with fp32 on a median
# 79% of probe images against naive's 96% (mobilenet0.25's depthwise layers); channel-wise weight
# scales changed nothing. On a ResNet50_v2 run entropy did better (95% against 93%), still short
# of the guard's 98%.
CALIB_IMAGES = 128
CALIB_MODE = "naive"
CALIB_SEED = 0
INT8_EXCLUDE: tuple[str, ...] = ()  # `exclude_layers_match` patterns, e.g. ("conv0_fwd", "dense")
QUANTIZED_DIR = "quantized"


def int8_settings(run: RunInfo, *, calib_images: int = CALIB_IMAGES, calib_mode: str = CALIB_MODE,
                  seed: int = CALIB_SEED, exclude: Sequence[str] = INT8_EXCLUDE) -> dict:
    """Everything besides the weights that the quantized graph depends on."""
    import mxnet as mx

    return {"calib_mode": calib_mode, "calib_images": calib_images, "seed": seed, "quantized_dtype": "auto",
            "exclude_layers_match": list(exclude), "data_shape": run.view.size, "crop_ratio": run.view.crop_ratio,
            "mxnet": mx.__version__}


def _int8_files(run_dir: Path, which: str) -> dict[str, Path]:
    stem = run_dir / QUANTIZED_DIR / f"int8-{which}"
    return {"prefix": stem, "symbol": Path(f"{stem}-symbol.json"), "params": Path(f"{stem}-0000.params"),
            "meta": Path(f"{stem}.json")}


def calibration_batch(run: RunInfo, count: int = CALIB_IMAGES, seed: int = CALIB_SEED) -> mx.nd.NDArray:
    """(n, 3, S, S): up to `count` of the run's train images (a seeded draw over all classes),
    preprocessed exactly as evaluation does, so the ranges calibrated are the ones predicted on."""
    import mxnet as mx

    train = split_dir(run.prepared, run.task, "train")
    files = sorted(f for f in train.glob("*/*") if f.suffix.lower() in IMAGE_EXTENSIONS)  # what training read
    if not files:
        raise FileNotFoundError(f"{train}: no training images to calibrate int8 on")
    random.Random(seed).shuffle(files)
    transform = eval_transform(run.view)
    return mx.nd.stack(*[transform(mx.image.imread(str(f))) for f in files[:count]])


def calibrate_int8(run_dir: Path, which: str, settings: dict, files: dict[str, Path]) -> None:
    """Quantize `<which>.params` with MXNet's `quantize_net_v2` and write the graph + params.

    Calibration and export run on `mx.cpu()` (quantize_net_v2 applies its oneDNN passes only for
    exactly that context); `quantized_net` loads the result on any CPU contexts.
    """
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_net_v2

    net, run = load_run(run_dir, ctx=mx.cpu(), which=which)
    data = calibration_batch(run, settings["calib_images"], settings["seed"])
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
        raise ValueError(f"int8: MXNet could not quantize or run the quantized {run.model} on this CPU "
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


def quantized_net(run: RunInfo | str | Path, *, ctx=None, which: str = "best", **settings_kw
                  ) -> mx.gluon.SymbolBlock:
    """The run's int8 net on `ctx`: from `<run>/quantized/int8-<which>-*` when that was built from
    the same params file content (SHA-1) with the same settings, else calibrated now and cached.

    The small `int8-<which>.json` beside the graph is written last, so an interrupted build is
    never taken for a valid cache.
    """
    import mxnet as mx

    run = run if isinstance(run, RunInfo) else RunInfo.read(run)
    run_dir, ctx = run.run_dir, context_list(ctx)
    source, settings = params_fingerprint(run.weights(which)), int8_settings(run, **settings_kw)
    files = _int8_files(run_dir, which)
    if _cache_is_valid(files, source, settings):
        log.info("int8: reusing %s (built from this %s)", files["symbol"], source["file"])
    else:
        files["meta"].unlink(missing_ok=True)  # invalid until the new graph and params are both in place
        calibrate_int8(run_dir, which, settings, files)
        meta = {"source": source, "settings": settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(files["meta"], meta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = mx.gluon.SymbolBlock.imports(str(files["symbol"]), ["data"], str(files["params"]), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    return net
