"""Export a trained run for deployment: MXNet symbol + params, optionally ONNX, and a `model.json`.

Files written to `<out>` (default `<run_dir>/export/`), `<stem>` being the run's task:
- `<stem>-symbol.json`, `<stem>-0000.params`: the hybridized graph (`HybridBlock.export`), loadable
  with `gluon.SymbolBlock.imports(symbol, ["data"], params)` or `load_exported(out)`;
- `<stem>.onnx` with `onnx=True` (`mx.onnx.export_model`; needs the `onnx` extra);
- `model.json`: what a deployer needs besides the graph: task, class names in index order, input
  name / shape / layout, the preprocessing (the run's `View`: resize rule, mean / std) and the output's
  meaning.

The graph ends in a softmax: its output `probabilities` is (N, K) class probabilities (rows sum to
1), the same numbers `fashionai predict --tta none` gives, not logits. Its input `data` is
(N, 3, S, S) float32 RGB, preprocessed as `fashionai.data.transforms.eval_transform(run.view)` does. A `null`
batch in model.json's shapes means any batch (the ONNX input's first dimension is dynamic); the
symbol takes any batch. The export is built in a folder beside `out` and swapped in whole.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.io import building, claiming, sha1_of, write_json, write_marker
from fashionai.core.runinfo import RunInfo
from fashionai.core.tasks import class_names
from fashionai.model import load_run

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

SIDECAR = "model.json"
MARKER = ".fashionai-export"  # written into every export folder; --overwrite replaces only such a folder
FORMAT = "fashionai-export/1"
INPUT_NAME = "data"  # HybridBlock.export names a single input `data`
OUTPUT_NAME = "probabilities"
ONNX_INSTALL = 'pip install -c constraints.txt -e ".[onnx]"'


def _check_onnx() -> None:
    """Fail before anything is written if the `onnx` package is missing or has lost the API that
    MXNet 1.9.1's exporter uses (`onnx.mapping`, removed after 1.14)."""
    try:
        import onnx
    except ImportError as err:
        raise ImportError(f"ONNX export needs the optional `onnx` package, which is not installed: "
                          f"{ONNX_INSTALL} (onnx==1.14.1, which MXNet 1.9.1's exporter works with)") from err
    if not hasattr(onnx, "mapping"):
        raise ImportError(f"onnx {onnx.__version__} lacks onnx.mapping, which MXNet 1.9.1's ONNX exporter "
                          f"uses; install the pinned version: {ONNX_INSTALL} (onnx==1.14.1)")


def _with_softmax(net: mx.gluon.HybridBlock) -> mx.gluon.HybridBlock:
    """`net` followed by a softmax over classes whose output is named `probabilities`.

    The wrapper has the empty prefix, so the net's parameter names are exported unchanged and the
    output is `probabilities` (not `<auto prefix>softmax0`) in the symbol and the ONNX graph.
    """
    from mxnet.gluon import HybridBlock

    class WithSoftmax(HybridBlock):
        def __init__(self, body, **kwargs):
            super().__init__(**kwargs)
            self.body = body

        def hybrid_forward(self, F, x):
            return F.softmax(self.body(x), axis=-1, name=OUTPUT_NAME)

    return WithSoftmax(net, prefix="")


def _sidecar(run: RunInfo, which: str, stem: str, batch_size: int | None, onnx_opset: int | None) -> dict:
    """The deployer's description of the exported graph (written as model.json)."""
    import mxnet as mx

    view = run.view
    size, short = view.size, view.short
    classes = list(class_names(run.task))
    files = {"symbol": f"{stem}-symbol.json", "params": f"{stem}-0000.params"}
    if onnx_opset is not None:
        files["onnx"] = f"{stem}.onnx"
    return {
        "format": FORMAT, "task": run.task, "classes": classes, "num_classes": len(classes),
        "model": run.model, "weights": f"{which}.params", "mxnet_version": mx.__version__,
        "input": {"name": INPUT_NAME, "shape": [batch_size, 3, size, size], "layout": "NCHW",
                  "dtype": "float32", "channels": "RGB"},
        "preprocess": {
            "resize_short_side": short, "keep_ratio": True, "interpolation": "bilinear",
            "center_crop": size, "scale": 1 / 255, "mean": list(view.mean), "std": list(view.std),
            "rule": f"decode RGB, resize the short side to {short} (bilinear, keep ratio), "
                    f"centre-crop {size}x{size}, x / 255, then (x - mean) / std per channel, HWC -> CHW",
        },
        "output": {"name": OUTPUT_NAME, "shape": [batch_size, len(classes)], "kind": "probabilities",
                   "note": "softmax over the classes is part of the graph: rows sum to 1, columns in `classes` order"},
        "onnx_opset": onnx_opset,
        "files": files,
    }


def _write_onnx(tmp: Path, stem: str, size: int, batch_size: int | None) -> int:
    """`<tmp>/<stem>.onnx` from the symbol + params in `tmp`; returns its opset.

    Weights are moved out of the graph inputs (the 1.9.1 exporter lists them there, which makes
    onnxruntime warn once per weight and hides which input is the image) and initializers no node
    reads are dropped; the result passes `onnx.checker`.
    """
    import mxnet as mx
    import onnx

    path = tmp / f"{stem}.onnx"
    mx.onnx.export_model(str(tmp / f"{stem}-symbol.json"), str(tmp / f"{stem}-0000.params"),
                         in_shapes=[(batch_size or 1, 3, size, size)], in_types=np.float32,
                         onnx_file_path=str(path), dynamic=batch_size is None,
                         dynamic_input_shapes=[(None, 3, size, size)] if batch_size is None else None)
    model = onnx.load(str(path))
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.initializer[:], graph.input[:]
    graph.initializer.extend(kept)
    graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def export_run(
    run_dir: str | Path, out: str | Path | None = None, *, which: str = "best", onnx: bool = False,
    batch_size: int | None = 1, overwrite: bool = False,
) -> dict[str, Path]:
    """Write the run's net (with softmax) as symbol + params, `model.json`, and with `onnx` an ONNX
    file, into `out` (default `<run_dir>/export`); returns {"symbol", "params", "sidecar"[, "onnx"]: path}.

    `out` must be new or empty; an earlier export (a folder with the export's marker) is replaced,
    whole, only with `overwrite`, and any other folder (a run, the user's files) never; a second
    export into the same folder at the same time is refused (core.lock). `model.json` records the
    SHA-1 of every file, and `load_exported` checks them. The export is built
    in a folder beside `out` and swapped in, so a failed export leaves `out` as it was.
    `batch_size` is the batch the graph is traced at and the ONNX input's batch dimension; None
    makes that dimension dynamic. The symbol file takes any batch either way.
    """
    import mxnet as mx

    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (or None for any batch), got {batch_size}")
    if onnx:
        _check_onnx()
    out = Path(out) if out is not None else Path(run_dir) / "export"
    with claiming(out, MARKER, overwrite, "an export (fashionai export)") as target:
        net, run = load_run(run_dir, mx.cpu(), which)
        stem, size = run.task, run.view.size  # validated: a task name is never a path
        model = _with_softmax(net)
        model.hybridize(static_alloc=True, static_shape=True)
        model(mx.nd.zeros((batch_size or 1, 3, size, size))).wait_to_read()
        with building(target) as tmp:
            model.export(str(tmp / stem))
            opset = _write_onnx(tmp, stem, size, batch_size) if onnx else None
            sidecar = _sidecar(run, which, stem, batch_size, opset)
            sidecar["sha1"] = {name: sha1_of(tmp / name) for name in sidecar["files"].values()}
            write_json(tmp / SIDECAR, sidecar)
            write_marker(tmp, MARKER, "export")
    written = {key: out / name for key, name in sidecar["files"].items()}
    written["sidecar"] = out / SIDECAR
    log.info("exported %s (%s, %s.params) to %s%s", run.model, run.task, which, out,
             f" with ONNX opset {opset}" if onnx else "")
    return written


def read_export(export_dir: str | Path) -> dict:
    """The `model.json` of an export folder; FileNotFoundError names the command that makes it."""
    path = Path(export_dir) / SIDECAR
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; is {export_dir} an export folder "
                                "(fashionai export --run RUN_DIR)?")
    info = json.loads(path.read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{path}: format {info.get('format')!r}, expected {FORMAT!r}")
    return info


def load_exported(export_dir: str | Path, ctx: mx.Context | None = None) -> mx.gluon.SymbolBlock:
    """The exported graph as a hybridized `SymbolBlock`: (N, 3, S, S) preprocessed float32 ->
    (N, K) probabilities. Needs only MXNet and the export folder, not this run's code or config."""
    import mxnet as mx

    info = read_export(export_dir)
    folder = Path(export_dir)
    for name, want in info.get("sha1", {}).items():  # exports made before they carried hashes have none
        if sha1_of(folder / name) != want:
            raise ValueError(f"{folder / name} is not the file the export wrote (its SHA-1 differs from "
                             f"{folder / SIDECAR}'s): export the run again")
    with warnings.catch_warnings():  # imports() leaves the input's dtype to the params: harmless warning
        warnings.filterwarnings("ignore", message="Cannot decide type")
        net = mx.gluon.SymbolBlock.imports(str(folder / info["files"]["symbol"]), [info["input"]["name"]],
                                           str(folder / info["files"]["params"]), ctx=ctx or mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    return net
