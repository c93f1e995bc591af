"""OpenVINO int8: post-training quantization of a run's ONNX graph, calibrated on its own training
images, cached in `<run>/openvino/int8-<which>.xml/.bin`.

NNCF, OpenVINO's quantization tool, does not install with the project's pins: its releases that
accept numpy 1.23 (MXNet 1.9.1 needs numpy < 1.24) import `openvino.runtime`, which OpenVINO 2026
no longer has, and the ones that know OpenVINO 2026 need numpy >= 1.24. So the graph is quantized
here the way NNCF's "performance" preset does it, in the form OpenVINO's CPU plugin turns into int8
kernels (its low-precision transformations read FakeQuantize nodes):
- every Convolution's input gets a FakeQuantize of 256 levels over the range measured on the
  calibration images (min/max, as MXNet's naive calibration): [0, max] where the input is never
  negative (after ReLU: u8), else symmetric [-m, m * 127/128] (i8);
- every Convolution's weights get a symmetric per-output-channel FakeQuantize of 255 levels.
Grouped convolutions (depthwise) and the dense head stay in FP32: they are a small share of the
work and the part that quantizes worst.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.io import params_fingerprint, write_json
from fashionai.core.runinfo import RunInfo
from fashionai.inference.quantize import CALIB_IMAGES, CALIB_SEED, calibration_batch

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

OPENVINO_DIR = "openvino"  # the folder fashionai.inference.openvino_net caches in
SETTINGS = {"method": "fakequantize-minmax/1", "calib_images": CALIB_IMAGES, "seed": CALIB_SEED,
            "activations": "per-tensor, u8 [0, max] or i8 symmetric", "weights": "per-channel symmetric, 255 levels"}
CALIB_BATCH = 8  # images per calibration pass: every conv input of a batch is an output (ResNet50_v2 at 32: 4.7 GB peak)


def _convolutions(model: ov.Model) -> list:
    """The Convolution nodes whose weights are a constant (what the CPU plugin runs as int8)."""
    convs = []
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Convolution" and node.input_value(1).get_node().get_type_name() == "Constant":
            convs.append(node)
    return convs


def activation_ranges(model: ov.Model, convs: list, batch: np.ndarray, core: ov.Core, threads: int
                      ) -> list[tuple[float, float]]:
    """(min, max) of every conv's input over the calibration images, from one FP32 model whose
    outputs are those inputs."""
    import openvino as ov

    probe = ov.Model([c.input_value(0) for c in convs], model.get_parameters(), "calibration")
    compiled = core.compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    lows, highs = np.full(len(convs), np.inf), np.full(len(convs), -np.inf)
    for start in range(0, len(batch), CALIB_BATCH):
        outs = request.infer({0: batch[start:start + CALIB_BATCH]})
        for i, out in enumerate(compiled.outputs):
            values = outs[out]
            lows[i], highs[i] = min(lows[i], float(values.min())), max(highs[i], float(values.max()))
    return list(zip(lows.tolist(), highs.tolist()))


def _fake_quantize(source, low: np.ndarray, high: np.ndarray, levels: int):
    """A FakeQuantize of `source` whose input and output ranges are both [low, high]."""
    from openvino import opset13 as ops

    low, high = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)
    return ops.fake_quantize(source, ops.constant(low), ops.constant(high), ops.constant(low), ops.constant(high),
                             levels)


def insert_fake_quantize(convs: list, ranges: list[tuple[float, float]]) -> int:
    """Put FakeQuantize nodes before each conv's input and weights (module docstring); returns how
    many convs were quantized (one whose input never varies is left in FP32)."""
    done = 0
    for conv, (low, high) in zip(convs, ranges):
        if not high > low:
            continue
        if low >= 0:
            a_low, a_high = 0.0, high
        else:
            m = max(abs(low), abs(high))
            a_low, a_high = -m, m * 127 / 128
        weights = conv.input_value(1).get_node().get_data()
        absmax = np.abs(weights).reshape(weights.shape[0], -1).max(axis=1)
        absmax = np.maximum(absmax, 1e-8).reshape((-1,) + (1,) * (weights.ndim - 1))
        fq_act = _fake_quantize(conv.input_value(0), np.array(a_low), np.array(a_high), 256)
        fq_w = _fake_quantize(conv.input_value(1), -absmax, absmax, 255)
        conv.input(0).replace_source_output(fq_act.output(0))
        conv.input(1).replace_source_output(fq_w.output(0))
        done += 1
    return done


def _files(run_dir: Path, which: str) -> dict[str, Path]:
    stem = run_dir / OPENVINO_DIR / f"int8-{which}"
    return {"xml": Path(f"{stem}.xml"), "bin": Path(f"{stem}.bin"), "meta": Path(f"{stem}.json")}


def _cached(files: dict[str, Path], source: dict) -> bool:
    try:
        meta = json.loads(files["meta"].read_text())
    except (OSError, ValueError):
        return False
    return files["xml"].is_file() and files["bin"].is_file() and meta.get("source", {}).get("sha1") == source["sha1"] \
        and meta.get("settings") == SETTINGS


def quantized_model(run: RunInfo, which: str, model: ov.Model, core: ov.Core, threads: int) -> ov.Model:
    """The int8 form of `model` (the run's FP32 graph): read from the cache when it was built from
    the same params content with the same settings, else calibrated now and cached (the small
    `.json` is written last, so a half-written cache is never taken for a valid one)."""
    import openvino as ov

    files, source = _files(run.run_dir, which), params_fingerprint(run.weights(which))
    if _cached(files, source):
        log.info("openvino int8: reusing %s", files["xml"])
        return core.read_model(str(files["xml"]))
    files["meta"].unlink(missing_ok=True)
    start = time.perf_counter()
    batch = calibration_batch(run, SETTINGS["calib_images"], SETTINGS["seed"]).asnumpy()
    convs = _convolutions(model)
    done = insert_fake_quantize(convs, activation_ranges(model, convs, batch, core, threads))
    files["xml"].parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(files["xml"]), compress_to_fp16=False)
    write_json(files["meta"], {"source": source, "settings": SETTINGS, "convolutions": done,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    log.info("openvino int8: calibrated %d of %d convolutions of %s (%s) on %d train images in %.1f s",
             done, len(convs), run.run_dir, which, len(batch), time.perf_counter() - start)
    return core.read_model(str(files["xml"]))
