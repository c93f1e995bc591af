"""Head training from cached backbone features: the right features, a cache that is reused, a head
that learns on a transferred backbone, and a fine-tuning stage that really unfreezes."""

import json
import logging
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from fashionai.core.view import View
from fashionai.demodata.generate import make_demo_data
from fashionai.data.prepare import prepare
from fashionai.model import build_net, head_attr
from fashionai.training.config import TrainConfig, check_config
from fashionai.cli import build_parser
from fashionai.cli.train_command import train_config
from fashionai.core.ov_runtime import EngineError
from fashionai.training import backbone_pass
from fashionai.training.backbone_pass import (FEATURE_TOLERANCE, BackbonePass, feature_block, feature_error,
                                              openvino_unavailable)
from fashionai.training.features import cache_file, cached_features, freeze_backbone, load_cache, unfreeze, weights_id
from fashionai.training.fit import fit
from fashionai.training.rundir import read_metrics

TARGET = "collar_design_labels"  # 5 classes


@pytest.mark.parametrize("model", ["mobilenet0.25", "resnet18_v1b", "cifar_resnet20_v1"])
def test_the_head_on_the_feature_block_is_the_whole_net(model):
    """Cached features are only useful if head(features(x)) is exactly what the net predicts."""
    net = build_net(model, 4, ctx=[mx.cpu()])
    x = mx.nd.random.uniform(shape=(3, 3, 32, 32))
    features = feature_block(net)(x)
    assert features.ndim == 2 and features.shape[0] == 3
    np.testing.assert_allclose(getattr(net, head_attr(net))(features).asnumpy(), net(x).asnumpy(), atol=1e-5)


BF16_FEATURES = """
from fashionai.core.runtime import configure_runtime
configure_runtime()  # before MXNet: the AMX request that the inherited DNNL_MAX_CPU_ISA needs
import mxnet as mx, numpy as np
from fashionai.model import build_net, head_attr
from fashionai.training.backbone_pass import feature_block
from fashionai.training.fit import start_amp
mx.random.seed(0)
net = build_net("resnet18_v2", 4, ctx=[mx.cpu()], hybridize=False)
x = mx.nd.random.uniform(shape=(3, 3, 32, 32))
fp32 = feature_block(net)(x).asnumpy()
start_amp("bfloat16")  # process-wide: the graph traced from here on carries AMP's casts
bf16 = feature_block(net)(x)
assert bf16.dtype == np.float32 and bf16.shape == fp32.shape, (bf16.dtype, bf16.shape, fp32.shape)
error = np.abs(bf16.asnumpy() - fp32).max() / np.abs(fp32).max()
assert error < 0.05, error
print("ok", error)
"""


def test_the_feature_block_looks_through_bf16_amp_casts():
    """Under BF16 AMP (--dtype auto's choice on AMX CPUs) the head's weight reaches FullyConnected
    through a cast node: the block once returned that cast, i.e. the head's weight, for features."""
    from fashionai.core import cpu

    ok, why = cpu.bf16_supported()
    if not ok:
        pytest.skip(f"this CPU cannot run BF16: {why}")
    done = subprocess.run([sys.executable, "-c", BF16_FEATURES], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


def test_freezing_stops_backbone_gradients_and_unfreezing_restores_them():
    """BatchNorm running statistics never take gradients, before or after fine-tuning."""
    net = build_net("mobilenet0.25", 3, ctx=[mx.cpu()])
    before = {n: p.grad_req for n, p in net.collect_params().items()}
    head = set(getattr(net, head_attr(net)).collect_params())
    saved = freeze_backbone(net)
    assert {n for n, p in net.collect_params().items() if p.grad_req != "null"} == head
    unfreeze(net, saved)
    assert {n: p.grad_req for n, p in net.collect_params().items()} == before
    assert any(n.endswith("running_mean") and r == "null" for n, r in before.items())


@pytest.mark.parametrize("changes, message", [
    ({"cache_features": True}, "needs --freeze-backbone"),
    ({"cache_features": True, "freeze_backbone": True, "mixup": 0.2}, "no mixup"),
    ({"cache_features": True, "freeze_backbone": True, "balance": "sampler"}, "--balance weights"),
    ({"cache_features": True, "freeze_backbone": True, "kvstore": "dist_sync"}, "distributed"),
    ({"fine_tune_epochs": -1}, "fine_tune_epochs"),
    ({"cache_features": True, "freeze_backbone": True, "feature_engine": "openvino", "dtype": "bfloat16"},
     "openvino computes FP32 features"),
])
def test_meaningless_cache_settings_are_refused(changes, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        check_config(TrainConfig.demo(TARGET, tmp_path, tmp_path, **changes))


def test_weights_id_follows_the_backbone(tmp_path):
    """Features of different backbones must never share a cache file."""
    a, b = tmp_path / "a.params", tmp_path / "b.params"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert len({weights_id(str(a), 0), weights_id(str(b), 0), weights_id("none", 0), weights_id("none", 1)}) == 4


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Small collar data and a briefly trained backbone: cheap, for the mechanics (not quality)."""
    root = tmp_path_factory.mktemp("features")
    make_demo_data(root / "data", tasks=[TARGET], train_per_class=16, test_per_class=1, warmup_per_class=0,
                   min_size=64, max_size=96, seed=3)
    prepare(root / "data", root / "prepared", val_fraction=0.25, workers=2)
    source = fit(TrainConfig.demo(TARGET, root / "prepared", root / "runs", name="source", data_shape=32,
                                  epochs=2))
    return root, source / "best.params"


def _head_config(root, backbone, **changes):
    settings = dict(pretrained=str(backbone), data_shape=32, freeze_backbone=True, cache_features=True,
                    epochs=10, warmup_epochs=0)
    return TrainConfig.demo(TARGET, root / "prepared", root / "runs", **{**settings, **changes})


def test_the_cache_is_reused_and_head_epochs_are_fast(small, caplog):
    """A second run reads every feature from the cache (keyed by image content) and reproduces the
    first run exactly (how fast a head epoch is, bench/bench_head.py measures: no timing in tests)."""
    root, backbone = small
    with caplog.at_level(logging.INFO, logger="fashionai"):
        first = fit(_head_config(root, backbone, name="head1"))
    assert "(0 from the cache" in caplog.text
    rows = read_metrics(first)
    assert len(rows) == 10
    cache = cache_file(root / "prepared", "mobilenet0.25", View(32, TrainConfig().crop_ratio),
                       weights_id(str(backbone), 0), "none")
    assert len(load_cache(cache)) == 16 * 5  # every train and val image
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fashionai"):
        second = fit(_head_config(root, backbone, name="head2"))
    assert "(0 from the cache" not in caplog.text and ", 0 computed)" in caplog.text
    assert [r["val_map"] for r in read_metrics(second)] == [r["val_map"] for r in rows]


def test_fine_tuning_after_the_head_stage_trains_the_backbone(small):
    """The head stage leaves the backbone as loaded; the fine-tuning epochs change it, at the
    configured fraction of the LR."""
    root, backbone = small
    run = fit(_head_config(root, backbone, name="two-stage", epochs=3, fine_tune_epochs=1,
                           fine_tune_lr_mult=0.5, lr_mode="step", lr_steps=[], cache_views="flip"))
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[-1]["lr"] == pytest.approx(0.05) and rows[0]["lr"] == pytest.approx(0.1)
    loaded, trained = mx.nd.load(str(backbone)), mx.nd.load(str(run / "last.params"))
    head = head_attr(build_net("mobilenet0.25", 5, ctx=[mx.cpu()]))
    changed = [k for k in loaded if not k.startswith(head) and not np.array_equal(
        loaded[k].asnumpy(), trained[k].asnumpy())]
    assert any(k.endswith("weight") for k in changed)


@pytest.mark.slow
def test_a_fresh_head_on_cached_features_of_a_trained_backbone_learns(tmp_path):
    """Features of a backbone that knows the task are enough for a new head: trained alone from
    the cache it gets far above chance (0.2 accuracy; ~0.2 mAP untrained) on collar designs, close
    to what the whole net got. The source run's own quality varies with the CPU's threads, so the
    head is held to the source, not to a fixed figure. 64 images per class and a 20-epoch source
    (two thirds of the demo's 80 and 25); validated on data seeds 5 (used), 6 and 7: source val
    acc / mAP 0.58 / 0.77, 0.60 / 0.77, 0.54 / 0.77, head 0.57 / 0.78, 0.63 / 0.79, 0.57 / 0.78."""
    make_demo_data(tmp_path / "data", tasks=[TARGET], warmup_per_class=0, test_per_class=1, seed=5,
                   train_per_class=64)
    prepare(tmp_path / "data", tmp_path / "prepared", val_fraction=0.2, workers=2)
    source = fit(TrainConfig.demo(TARGET, tmp_path / "prepared", tmp_path / "runs", name="source", epochs=20))
    head = fit(_head_config(tmp_path, source / "best.params", name="head", data_shape=64, epochs=30))
    # 0.4 of 65 val images right is 4 standard deviations above chance's 13
    source_map = max(r["val_map"] for r in read_metrics(source))
    assert max(r["val_acc"] for r in read_metrics(source)) >= 0.4 and source_map >= 0.6
    rows = read_metrics(head)
    assert max(r["val_acc"] for r in rows) >= 0.4
    assert max(r["val_map"] for r in rows) >= max(0.6, source_map - 0.08)


def test_head_training_works_from_random_weights_too(small):
    """With --pretrained none the backbone's parameters are initialised lazily; the head stage must
    finish that before its trainer reads them (the speed benchmark runs this way)."""
    root, _ = small
    run = fit(_head_config(root, "none", name="random", pretrained="none", epochs=2))
    assert len(read_metrics(run)) == 2


def test_a_bf16_head_stage_trains_and_keeps_its_own_cache(small, tmp_path):
    """The whole --cache-features path in BF16 AMP (a child process: amp.init is process-wide): the
    head's BF16 logits once broke its accuracy count, and its features must not land in FP32's cache."""
    from fashionai.core import cpu

    ok, why = cpu.bf16_supported()
    if not ok:
        pytest.skip(f"this CPU cannot run BF16: {why}")
    root, backbone = small
    done = subprocess.run(
        [sys.executable, "-m", "fashionai", "train", "--preset", "demo", "--task", TARGET, "--prepared",
         str(root / "prepared"), "--out", str(tmp_path), "--name", "bf16head", "--pretrained", str(backbone),
         "--data-shape", "32", "--freeze-backbone", "--cache-features", "--epochs", "3", "--warmup-epochs", "0",
         "--dtype", "bfloat16"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_metrics(tmp_path / TARGET / "bf16head")
    assert len(rows) == 3 and all(0 <= r["train_acc"] <= 1 and np.isfinite(r["val_map"]) for r in rows)
    bf16_cache = cache_file(root / "prepared", "mobilenet0.25", View(32, TrainConfig().crop_ratio),
                            weights_id(str(backbone), 0), "none", "bfloat16")
    assert bf16_cache.name.endswith("-bfloat16.npz") and len(load_cache(bf16_cache)) == 16 * 5


# --- the feature engine (--feature-engine) ------------------------------------------------------
NO_OPENVINO = "OpenVINO is not installed: pip install openvino"


def _small_net(size=32):
    """mobilenet0.25 with random weights, initialised at `size` px, and a batch of 4 images."""
    mx.random.seed(1)
    net = build_net("mobilenet0.25", 5, ctx=[mx.cpu()], pretrained="none")
    x = mx.nd.random.uniform(-2, 2, shape=(4, 3, size, size))
    net(x)
    return net, x


def _no_openvino(monkeypatch):
    monkeypatch.setattr(backbone_pass, "openvino_core", lambda: (None, NO_OPENVINO))


@pytest.mark.parametrize("engine, margin", [("openvino", None), ("auto", 0.0), ("auto", 1e9)])
def test_openvino_features_agree_with_mxnet(engine, margin, monkeypatch, caplog):
    """OpenVINO's compile of the feature graph gives MXNet's features (the check passed, and says so);
    auto keeps it only at SPEED_MARGIN's speed-up (0: always; 1e9: never, said)."""
    why = openvino_unavailable("float32", [mx.cpu()])
    if why:
        pytest.skip(why)
    if margin is not None:
        monkeypatch.setattr(backbone_pass, "SPEED_MARGIN", margin)
    net, x = _small_net()
    backbone = BackbonePass(net, engine, "float32", [mx.cpu()], 32)
    assert backbone.engine == "openvino" and backbone.pending
    with caplog.at_level(logging.INFO, logger="fashionai"):
        backbone.check(x)
    assert "agrees with MXNet" in caplog.text, caplog.text
    reference = feature_block(net)(x).asnumpy()
    if margin == 1e9:
        assert backbone.engine == "mxnet" and backbone.ov is None and "not 1e+09x faster" in caplog.text
        np.testing.assert_array_equal(backbone(x), reference)
        return
    got = backbone(x)
    assert backbone.engine == "openvino" and backbone.ov is not None and got.shape == reference.shape == (4, 256)
    assert np.abs(got - reference).max() <= FEATURE_TOLERANCE * np.abs(reference).max()


def test_each_engine_keeps_its_own_cache_file(tmp_path):
    """MXNet FP32's name is the one it always had; OpenVINO's features never land in it."""
    view, weights = View(32, 1.0), weights_id("none", 0)
    mxnet = cache_file(tmp_path, "mobilenet0.25", view, weights, "none")
    openvino = cache_file(tmp_path, "mobilenet0.25", view, weights, "none", engine="openvino")
    assert mxnet.name == "mobilenet0.25-32px-r1-random-seed0-none.npz"
    assert openvino.name == "mobilenet0.25-32px-r1-random-seed0-none-openvino.npz"
    assert cache_file(tmp_path, "mobilenet0.25", view, weights, "none", "bfloat16", "openvino").name.endswith(
        "-bfloat16-openvino.npz")


def test_auto_without_openvino_says_so_and_runs_mxnet(monkeypatch, caplog, tmp_path):
    """No OpenVINO: one warning naming why, and the features land in MXNet's cache file."""
    _no_openvino(monkeypatch)
    net, _ = _small_net()
    with caplog.at_level(logging.INFO, logger="fashionai"):
        backbone = BackbonePass(net, "auto", "float32", [mx.cpu()], 32)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert backbone.engine == "mxnet" and not backbone.pending
    assert len(warnings) == 1 and NO_OPENVINO in warnings[0].getMessage() and "MXNet" in warnings[0].getMessage()
    paths, files = _images(tmp_path)
    features = cached_features(backbone, paths, files.__getitem__, View(32, 1.0), "none")
    assert features.shape == (3, 1, 256) and len(load_cache(files["mxnet"])) == 3 and not files["openvino"].exists()


def _images(tmp_path):
    """Three small JPEGs, and a cache file per engine (none written yet)."""
    make_demo_data(tmp_path / "data", tasks=[TARGET], train_per_class=1, test_per_class=1, warmup_per_class=0,
                   min_size=40, max_size=48, seed=1)
    return sorted((tmp_path / "data").rglob("*.jpg"))[:3], {e: tmp_path / f"{e}.npz" for e in ("mxnet", "openvino")}


def test_auto_reads_a_complete_mxnet_cache_without_exporting(monkeypatch, caplog, tmp_path):
    """Where an earlier run left every image's MXNet features, auto neither exports nor checks."""
    monkeypatch.setattr(backbone_pass, "openvino_core", lambda: (object(), ""))

    def never(block, size, **compile_options):
        raise AssertionError("exported although MXNet's features were all cached")

    monkeypatch.setattr(backbone_pass, "openvino_block", never)
    net, _ = _small_net()
    paths, files = _images(tmp_path)
    view = View(32, 1.0)
    mxnet = cached_features(BackbonePass(net, "mxnet", "float32", [mx.cpu()], 32), paths, files.__getitem__, view,
                            "none")
    auto = BackbonePass(net, "auto", "float32", [mx.cpu()], 32)
    assert auto.engine == "openvino" and auto.pending
    with caplog.at_level(logging.INFO, logger="fashionai"):
        features = cached_features(auto, paths, files.__getitem__, view, "none")
    assert auto.engine == "mxnet" and "MXNet features are cached in" in caplog.text and ", 0 computed)" in caplog.text
    np.testing.assert_array_equal(features, mxnet)
    assert not files["openvino"].exists()


@pytest.mark.parametrize("dtype, reason", [("float32", NO_OPENVINO), ("bfloat16", "FP32 features")])
def test_openvino_asked_for_by_name_that_cannot_run_is_one_error(monkeypatch, dtype, reason):
    _no_openvino(monkeypatch)
    net, _ = _small_net()
    with pytest.raises(EngineError, match="--feature-engine openvino: ") as err:
        BackbonePass(net, "openvino", dtype, [mx.cpu()], 32)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_a_failed_export_falls_back_with_auto_and_fails_by_name(monkeypatch, caplog):
    """An export or compile that fails: auto says it and runs MXNet; openvino is that one error."""
    monkeypatch.setattr(backbone_pass, "openvino_core", lambda: (object(), ""))

    def broken(block, size, **compile_options):
        raise EngineError("OpenVINO could not prepare SymbolBlock in fp32: no converter for op X")

    monkeypatch.setattr(backbone_pass, "openvino_block", broken)
    net, x = _small_net()
    auto = BackbonePass(net, "auto", "float32", [mx.cpu()], 32)
    with caplog.at_level(logging.WARNING, logger="fashionai"):
        auto.check(x)
    assert auto.engine == "mxnet" and "no converter for op X" in caplog.text
    with pytest.raises(EngineError, match="--feature-engine openvino: OpenVINO could not prepare"):
        BackbonePass(net, "openvino", "float32", [mx.cpu()], 32).check(x)


@pytest.mark.parametrize("engine", ["openvino", "auto"])
def test_features_that_disagree_with_mxnet_are_not_used(monkeypatch, caplog, engine):
    """The first-batch check: an engine 1% off MXNet's features is said and MXNet computes them."""
    monkeypatch.setattr(backbone_pass, "openvino_core", lambda: (object(), ""))
    monkeypatch.setattr(backbone_pass, "openvino_block", lambda block, size, **_: lambda x: block(x) * 1.01)
    net, x = _small_net()
    backbone = BackbonePass(net, engine, "float32", [mx.cpu()], 32)
    with caplog.at_level(logging.WARNING, logger="fashionai"):
        backbone.check(x)
    assert backbone.engine == "mxnet" and backbone.ov is None and "differ from MXNet's by 0.01" in caplog.text
    np.testing.assert_array_equal(backbone(x), feature_block(net)(x).asnumpy())


def test_the_feature_engine_flag_and_old_runs(tmp_path):
    """--feature-engine reaches the config; a run recorded before the choice reads as MXNet."""
    args = build_parser().parse_args(["train", "--task", TARGET, "--feature-engine", "auto"])
    assert train_config(args).feature_engine == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--task", TARGET, "--feature-engine", "tensorrt"])
    old = {k: v for k, v in TrainConfig(task=TARGET).to_dict().items() if k != "feature_engine"}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert TrainConfig.of_run(tmp_path).feature_engine == "mxnet"


def test_a_head_stage_on_openvino_features(small, caplog):
    """The whole --cache-features path with --feature-engine openvino: its own cache file, features
    MXNet's to the tolerance, and a head that trains on them."""
    why = openvino_unavailable("float32", [mx.cpu()])
    if why:
        pytest.skip(why)
    root, backbone = small
    with caplog.at_level(logging.INFO, logger="fashionai"):
        run = fit(_head_config(root, backbone, name="openvino-head", epochs=2, feature_engine="openvino"))
    assert "features on OpenVINO fp32" in caplog.text and len(read_metrics(run)) == 2
    fit(_head_config(root, backbone, name="mxnet-head", epochs=1))  # MXNet's cache, if no earlier test made it
    view, weights = View(32, TrainConfig().crop_ratio), weights_id(str(backbone), 0)
    ov = load_cache(cache_file(root / "prepared", "mobilenet0.25", view, weights, "none", engine="openvino"))
    mxnet = load_cache(cache_file(root / "prepared", "mobilenet0.25", view, weights, "none"))
    assert len(ov) == len(mxnet) == 16 * 5 and set(ov) == set(mxnet)
    keys = sorted(ov)
    error = feature_error(np.stack([mxnet[k] for k in keys]), np.stack([ov[k] for k in keys]))
    assert error <= FEATURE_TOLERANCE, error
