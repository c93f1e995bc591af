"""Export: the symbol and ONNX graphs give the Gluon net's probabilities; model.json; missing onnx."""

import json
import re
import shutil
import sys
import types

import cv2
import mxnet as mx
import numpy as np
import pytest

from fashionai.cli import main
from fashionai.core.runinfo import RunInfo
from fashionai.core.tasks import class_names
from fashionai.core.view import MEAN, STD, View
from fashionai.inference import predict
from fashionai.inference.export import MARKER, ONNX_INSTALL, export_run, load_exported, read_export
from fashionai.model import load_run

TASK = "skirt_length_labels"  # the trained_run fixture's task, 32 px
SIZE = 32


def _batch(n: int, seed: int = 0) -> mx.nd.NDArray:
    """(n, 3, 32, 32) float32 inputs in the range normalised images take."""
    return mx.nd.array(np.random.default_rng(seed).normal(0, 1.5, (n, 3, SIZE, SIZE)).astype(np.float32))


def _gluon_probs(run_dir, x: mx.nd.NDArray, which: str = "best") -> np.ndarray:
    net, _ = load_run(run_dir, mx.cpu(), which)
    return mx.nd.softmax(net(x), axis=-1).asnumpy()


@pytest.mark.filterwarnings("ignore:Cannot decide type")  # SymbolBlock.imports' own, harmless
@pytest.mark.parametrize("which", ["best", "last"])
def test_symbol_export_gives_the_gluon_probabilities(trained_run, tmp_path, which):
    out = tmp_path / "export"
    files = export_run(trained_run, out, which=which)
    assert files == {"symbol": out / f"{TASK}-symbol.json", "params": out / f"{TASK}-0000.params",
                     "sidecar": out / "model.json"}
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *(p.name for p in files.values())])  # no temp left
    x = _batch(5)
    expected = _gluon_probs(trained_run, x, which)
    imported = mx.gluon.SymbolBlock.imports(str(files["symbol"]), ["data"], str(files["params"]))
    np.testing.assert_allclose(imported(x).asnumpy(), expected, rtol=1e-5, atol=1e-7)
    got = load_exported(out)(x).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1, rtol=1e-6)  # softmax is part of the graph


def test_model_json_describes_input_preprocessing_and_output(trained_run, tmp_path):
    out = tmp_path / "export"
    export_run(trained_run, out, batch_size=3)
    info = read_export(out)
    assert json.loads((out / "model.json").read_text()) == info
    assert info["task"] == TASK and info["classes"] == list(class_names(TASK)) and info["num_classes"] == 6
    assert info["model"] == "cifar_resnet20_v1" and info["weights"] == "best.params"
    assert info["input"] == {"name": "data", "shape": [3, 3, SIZE, SIZE], "layout": "NCHW",
                             "dtype": "float32", "channels": "RGB"}
    pre = info["preprocess"]
    crop_ratio = RunInfo.read(trained_run).crop_ratio
    assert (pre["resize_short_side"], pre["center_crop"]) == (View(SIZE, crop_ratio).short, SIZE)
    assert (pre["resize_short_side"] == SIZE) == (crop_ratio == 1.0)  # 1.0: the whole short side
    assert pre["mean"] == list(MEAN) and pre["std"] == list(STD) and pre["scale"] == 1 / 255
    assert info["output"]["name"] == "probabilities" and info["output"]["shape"] == [3, 6]
    assert info["onnx_opset"] is None and "onnx" not in info["files"]


def test_described_preprocessing_reproduces_predict(trained_run, tmp_path):
    """An image preprocessed as model.json says, through the export, gives `predict --tta none`."""
    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate([(50, 40), (41, 64)]):
        paths.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = tmp_path / "export"
    export_run(trained_run, out)
    pre = read_export(out)["preprocess"]
    steps = mx.gluon.data.vision.transforms
    described = steps.Compose([steps.Resize(pre["resize_short_side"], keep_ratio=True),
                               steps.CenterCrop(pre["center_crop"]), steps.ToTensor(),
                               steps.Normalize(pre["mean"], pre["std"])])
    x = mx.nd.stack(*[described(mx.image.imread(str(p))) for p in paths])
    expected = predict.predict_run(trained_run, paths, tta="none", devices="cpu")
    np.testing.assert_allclose(load_exported(out)(x).asnumpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batch_size,run_batch", [(None, 3), (2, 2)])
def test_onnx_gives_the_gluon_probabilities(trained_run, tmp_path, batch_size, run_batch):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "export"
    files = export_run(trained_run, out, onnx=True, batch_size=batch_size)
    assert files["onnx"] == out / f"{TASK}.onnx"
    info = read_export(out)
    assert info["files"]["onnx"] == f"{TASK}.onnx" and info["onnx_opset"] >= 13
    assert info["input"]["shape"][0] == batch_size
    session = ort.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["data"]  # weights are not graph inputs
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_inputs()[0].shape == [batch_size, 3, SIZE, SIZE]  # None: any batch
    x = _batch(run_batch, seed=2)
    got = session.run(None, {"data": x.asnumpy()})[0]
    np.testing.assert_allclose(got, _gluon_probs(trained_run, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fake", [None, types.ModuleType("onnx")], ids=["missing", "too-new"])
def test_unusable_onnx_package_is_an_actionable_error(trained_run, tmp_path, monkeypatch, fake):
    if fake is not None:
        fake.__version__ = "1.17.0"  # without onnx.mapping, which mxnet 1.9.1's exporter uses
    monkeypatch.setitem(sys.modules, "onnx", fake)  # None: `import onnx` raises ImportError
    out = tmp_path / "export"
    with pytest.raises(ImportError, match=re.escape(ONNX_INSTALL)) as err:
        export_run(trained_run, out, onnx=True)
    assert "onnx==1.14.1" in str(err.value) and 'pip install -c constraints.txt -e ".[onnx]"' in str(err.value)
    assert not out.exists()  # checked before anything is written
    assert main(["export", "--run", str(trained_run), "--out", str(out), "--onnx"]) == 2


def test_cli_writes_into_the_run_folder_and_prints_the_files(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # the fixture's run must stay unmodified
    assert main(["export", "--run", str(run), "--which", "last"]) == 0
    printed = capsys.readouterr().out.split()
    names = [f"{TASK}-symbol.json", f"{TASK}-0000.params", "model.json"]
    assert printed == [str(run / "export" / n) for n in names]
    assert read_export(run / "export")["weights"] == "last.params"


def test_bad_arguments_are_explained(trained_run, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        export_run(trained_run, tmp_path / "x", batch_size=0)
    with pytest.raises(FileNotFoundError, match="fashionai export --run"):
        load_exported(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        export_run(tmp_path, tmp_path / "x")


def test_an_export_never_lands_outside_its_folder_or_over_another(trained_run, tmp_path):
    """A crafted task name in config.json is refused before anything is written; a folder that is
    not an earlier export is never written into; an earlier export is replaced whole, on request."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "task": "../../../escaped"}))
    with pytest.raises(ValueError, match="config.json: task"):
        export_run(run)
    assert not list(tmp_path.rglob("*escaped*")) and not (run / "export").exists()
    (run / "config.json").write_text(json.dumps(config))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an export"):
        export_run(run, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    export_run(run, tmp_path / "e")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_run(run, tmp_path / "e")
    export_run(run, tmp_path / "e", which="last", overwrite=True)
    assert read_export(tmp_path / "e")["weights"] == "last.params"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e", "other", "run"]  # no temp folders left
