"""`fit`: train a config's net and leave a complete run directory (fashionai.training.rundir).

The pieces a run is built from: seeds, the LR schedule and trainer, the precision (AMP), the
stage (fashionai.training.stages: the whole net, or the head on cached features until
`--fine-tune-epochs` switch to the whole net), and the epoch loop: every epoch the stage trains and
validates, then the row is logged, ranked (best epoch, early stop) and written to the run directory.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core import cpu, heartbeat
from fashionai.core.devices import resolve_devices
from fashionai.core.lock import hold
from fashionai.core.runtime import amx_on
from fashionai.model import build_net, head_attr, make_net
from fashionai.training.budget import fit_budget
from fashionai.training.checkpoint import BEST_METRIC, CHECKPOINT, FitState, read_checkpoint, restore
from fashionai.training.config import TrainConfig, check_config, run_folder
from fashionai.training.distributed import (AuxAverager, WorkerInfo, check_launched, dist_trainer, is_distributed,
                                            worker_info)
from fashionai.training.features import freeze_backbone, head_stage, unfreeze
from fashionai.training.inputs import make_loaders
from fashionai.training.layout import layout_for
from fashionai.training.loop import class_weights, loss_scaling
from fashionai.training.rundir import EpochBoard, RunWriter, log_to, prepare_run_dir, read_metrics
from fashionai.training.stages import EpochStage, FullNet

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

STALL_FACTOR = 10.0  # an epoch this many times the median of the earlier ones is logged as stalled


def seed_everything(seed: int) -> None:
    """Seed python (mx.image crops), numpy (samplers, mixup) and MXNet (init, flips, jitter)."""
    import mxnet as mx

    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def enforce_determinism(config: TrainConfig) -> None:
    """Under `--deterministic`, ask MXNet for deterministic kernels (its cuDNN convolutions and
    scatter operators on GPUs choose run-to-run identical algorithms; oneDNN on a CPU already is, for
    a fixed thread count). The loaders seed the augmentation (fashionai.data.loaders.SeededDataset);
    MXNet's C++ RecordIO reader (`--input rec`) draws its own augmentation in its threads."""
    if not config.deterministic:
        return
    os.environ.setdefault("MXNET_ENFORCE_DETERMINISM", "1")
    if config.input == "rec":
        log.warning("--deterministic covers folder input; --input rec augments in MXNet's own threads")


def make_scheduler(config: TrainConfig, iters_per_epoch: int):
    """GluonCV schedule: linear warm-up from 0 over `warmup_epochs`, then step (x lr_factor at
    `lr_steps`, counted from epoch 0) or cosine to 0 over the remaining epochs."""
    from gluoncv.utils import LRScheduler, LRSequential

    parts = []
    if config.warmup_epochs:
        parts.append(LRScheduler("linear", base_lr=0.0, target_lr=config.lr, nepochs=config.warmup_epochs,
                                 iters_per_epoch=iters_per_epoch))
    rest = config.epochs - config.warmup_epochs
    steps = [s - config.warmup_epochs for s in config.lr_steps if s > config.warmup_epochs]
    mode = config.lr_mode if rest * iters_per_epoch > 1 else "constant"  # cosine needs 2+ updates
    parts.append(LRScheduler(mode, base_lr=config.lr, target_lr=0.0, nepochs=rest,
                             iters_per_epoch=iters_per_epoch, step_epoch=steps, step_factor=config.lr_factor))
    return LRSequential(parts)


def make_trainer(net, config: TrainConfig, iters_per_epoch: int, num_devices: int, kv=None) -> mx.gluon.Trainer:
    """SGD/NAG with momentum and wd, the LR schedule, `head_lr_mult` on the new head, kvstore
    (`kv`: the job's created distributed kvstore, else the `config.kvstore` name for 2+ devices)."""
    import mxnet as mx

    getattr(net, head_attr(net)).collect_params().setattr("lr_mult", config.head_lr_mult)
    if config.no_wd:  # GluonCV's --no-wd: no weight decay on BN and biases
        net.collect_params(".*beta|.*gamma|.*bias").setattr("wd_mult", 0.0)
    # the base LR lives in the scheduler; passing learning_rate too only makes MXNet print a warning
    params = {"momentum": config.momentum, "wd": config.wd, "lr_scheduler": make_scheduler(config, iters_per_epoch)}
    if kv is not None:
        # Workers update locally from the summed gradients (update_on_kvstore=False): the servers
        # then never unpickle the optimizer, whose GluonCV LR schedule they could not import, and
        # the trainer's states stay saveable for --resume. Same result as updating on the servers.
        return dist_trainer(net.collect_params(), config.optimizer, params, kv)
    kvstore = config.kvstore if num_devices > 1 else None
    # update_on_kvstore=False: MXNet would otherwise apply the update inside the kvstore's push,
    # before AMP's overflow check in Trainer.update, which could then only skip a step already
    # taken (float16 on several GPUs turned the weights into NaN). Same update either way.
    return mx.gluon.Trainer(net.collect_params(), config.optimizer, params, kvstore=kvstore,
                            update_on_kvstore=False if kvstore else None)


def check_dtype(dtype: str, ctx: Sequence) -> None:
    """Refuse a training precision the devices cannot run, before anything is built.

    float16 AMP needs GPUs (MXNet has no FP16 GEMM on CPU); bfloat16 AMP needs CPUs whose oneDNN
    build runs BF16 kernels (AVX-512 and up), which a one-layer probe answers directly.
    """
    if dtype == "float32":
        return
    on_gpu = all(c.device_type == "gpu" for c in ctx)
    if dtype == "float16" and not on_gpu:
        raise ValueError("--dtype float16 needs GPUs (MXNet has no FP16 matrix multiply on CPU); "
                         "on a CPU use --dtype bfloat16 where supported, else float32")
    if dtype == "bfloat16":
        if on_gpu:
            raise ValueError("--dtype bfloat16 is for CPUs in MXNet 1.9; on GPUs use --dtype float16")
        ok, why = cpu.bf16_supported()
        if not ok:
            raise ValueError(f"--dtype bfloat16 is not supported on this CPU ({why}); use float32")


AUTO_BF16_MIN_SIZE = 128  # px: below it BF16 AMP did not train faster than FP32 here


def grouped_convolutions(model: str) -> bool:
    """Whether the model-zoo net has grouped (e.g. depthwise) convolutions; built without weights."""
    found = []

    def visit(block) -> None:
        if getattr(block, "_kwargs", {}).get("num_group", 1) > 1:
            found.append(block)

    make_net(model, 2).apply(visit)
    return bool(found)


def resolve_dtype(dtype: str, model: str, data_shape: int, ctx: Sequence) -> tuple[str, str]:
    """(training precision, why) of `--dtype auto`; any other dtype is returned as given.

    auto takes bfloat16 only where it trains faster (bench/RESULTS.md, "BF16 training"): on CPUs
    whose oneDNN runs BF16 on AMX (ResNet50_v2 at 224 px 1.5-1.85x FP32 there, 0.70x without AMX),
    at inputs of at least AUTO_BF16_MIN_SIZE px (ResNet50_v2 1.26x at 128 px but 0.98x at 64;
    cifar_resnet20_v1 at 32 px 0.51x), for nets without grouped convolutions (mobilenet0.25's
    depthwise backward has no fast BF16 kernel in this oneDNN: ~10x slower). float32 everywhere
    else, GPUs included (float16 AMP is asked for). Test mAP: BF16 within or above FP32's
    seed-to-seed range on both held-out sets (3 seeds each).
    """
    if dtype != "auto":
        return dtype, "as given"
    if any(c.device_type == "gpu" for c in ctx):
        return "float32", "on GPUs auto keeps float32 (ask for float16 AMP with --dtype float16)"
    if not amx_on():
        return "float32", "BF16 without oneDNN's AMX kernels trains slower than FP32 on a CPU"
    ok, why = cpu.bf16_supported()
    if not ok:
        return "float32", f"this CPU cannot run BF16 ({why})"
    if data_shape < AUTO_BF16_MIN_SIZE:
        return "float32", f"at {data_shape} px BF16 does not train faster (AMX needs larger convolutions)"
    if grouped_convolutions(model):
        return "float32", f"{model} has grouped convolutions, whose BF16 backward is slow in this oneDNN"
    return "bfloat16", "oneDNN runs BF16 on AMX here"


def start_amp(dtype: str) -> None:
    """Switch MXNet to automatic mixed precision for this process (before the net is built).

    `amp.init` rewrites MXNet's operators process-wide and cannot be undone: one training
    process per precision (the CLI runs one), never a mix in one process.
    """
    if dtype == "float32":
        return
    from mxnet.contrib import amp

    amp.init(target_dtype=dtype)
    log.info("automatic mixed precision: %s compute, float32 master weights", dtype)


def epoch_line(row: dict) -> str:
    """The log line of a finished epoch."""
    return (f"[Epoch {row['epoch']}] train: loss={row['train_loss']:.4f} acc={row['train_acc']:.4f} | "
            f"val: loss={row['val_loss']:.4f} acc={row['val_acc']:.4f} mAP={row['val_map']:.4f} "
            f"BP={row['val_basic_precision']:.4f} | lr={row['lr']:.3g} | {row['img_per_s']:.1f} img/s | "
            f"{row['epoch_s']:.1f} s")


def batch_rule(config: TrainConfig, devices: int, workers: int) -> str | None:
    """The batch and LR rule across devices and workers, in words, where there are several: -b is
    per device (the Gluon tutorial's and GluonCV's convention), the LR is used as given."""
    copies = devices * workers
    if copies <= 1:
        return None
    return (f"batch rule: {config.batch_size} per device x {devices} device(s) x {workers} worker(s) = "
            f"{config.batch_size * copies} images per step, {copies}x fewer steps per epoch than on one device; "
            f"the LR is used as given ({config.lr:g}): for one device's schedule per image, scale it linearly "
            f"(--lr {config.lr * copies:g}, with --warmup-epochs)")


def stall_note(epoch_s: Sequence[float], factor: float = STALL_FACTOR) -> str | None:
    """Words for the last epoch when it took `factor` times the median of the earlier ones (at
    least 3): a step that stalled (a lost host that came back, a swapped-out process, a slow disk)."""
    if len(epoch_s) < 4:
        return None
    median = float(np.median(epoch_s[:-1]))
    if median <= 0 or epoch_s[-1] < factor * median:
        return None
    return (f"took {epoch_s[-1]:.0f} s, {epoch_s[-1] / median:.0f}x the median of the epochs before it: a step "
            "stalled (a host or link that came back, a busy or swapping machine, a slow disk)")


def fit(config: TrainConfig) -> Path:
    """Train the config's task(s) and return the run directory (fashionai.training.rundir)."""
    config = check_config(config)
    ctx = resolve_devices(config.devices, config.num_gpus)
    if config.dtype == "auto":
        dtype, why = resolve_dtype(config.dtype, config.model, config.data_shape, ctx)
        log.info("--dtype auto: %s (%s)", dtype, why)
        config = config.replace(dtype=dtype)
    check_dtype(config.dtype, ctx)  # before anything is written
    config = fit_budget(config, ctx)
    kv, info = start_job(config)
    if not info.is_chief:  # only rank 0 writes the run directory; the others train and validate
        _fit(config, run_folder(config), ctx, kv, info)
        return run_folder(config)
    with hold(run_folder(config), "a training run"):  # a second train of this run fails at once, named
        run_dir = prepare_run_dir(config)
        handler = log_to(run_dir)
        try:
            _fit(config, run_dir, ctx, kv, info)
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: said in train.log too
            log.warning("stopped by %s; every epoch committed before it is kept (checkpoint.json)",
                        "SIGTERM" if type(err).__name__ == "Terminated" else "Ctrl-C")
            raise
        finally:
            logging.getLogger("fashionai").removeHandler(handler)
            handler.close()
    return run_dir


def start_job(config: TrainConfig) -> tuple[mx.kvstore.KVStore | None, WorkerInfo]:
    """(created kvstore, this worker) of a distributed run (`--kvstore dist_*` under the launcher);
    (None, rank 0 of 1) otherwise."""
    if not is_distributed(config.kvstore):
        return None, WorkerInfo()
    import mxnet as mx

    check_launched(config.kvstore)
    heartbeat.report("joining")  # the launcher names a worker that never gets past this (a wrong address)
    kv = mx.kv.create(config.kvstore)
    heartbeat.report("joined")
    info = worker_info(kv)
    log.info("distributed worker %d of %d (%s) on %s%s", info.rank, info.num_workers, config.kvstore,
             socket.gethostname(), ": this host writes the run folder" if info.is_chief else "")
    return kv, info


def stage_trainer(net: mx.gluon.HybridBlock, config: TrainConfig, epoch: int, iters: int, ndev: int,
                  kv: mx.kvstore.KVStore | None, frozen: dict[str, str] | None) -> mx.gluon.Trainer:
    """The trainer for `epoch`: the configured one before `config.epochs`, then (fine-tuning) one
    over the unfrozen net with LR x fine_tune_lr_mult on its own schedule, no warm-up."""
    if epoch >= config.epochs:
        if frozen is not None:
            unfreeze(net, frozen)
        config = config.replace(lr=config.lr * config.fine_tune_lr_mult, epochs=config.fine_tune_epochs,
                                warmup_epochs=0, lr_steps=[])
    trainer = make_trainer(net, config, iters, ndev, kv)
    if loss_scaling(config.dtype):
        from mxnet.contrib import amp

        amp.init_trainer(trainer)
    return trainer


@dataclass
class Fitting:
    """A training run while it runs (built by `_start`, advanced epoch by epoch by `_fit`): the stage
    that trains now, with its trainer; `full` is the whole-net stage fine-tuning switches to."""

    config: TrainConfig
    run_dir: Path
    kv: mx.kvstore.KVStore | None
    full: FullNet
    stage: EpochStage
    trainer: mx.gluon.Trainer
    state: FitState
    frozen: dict[str, str] | None  # grad_req before --freeze-backbone, restored for fine-tuning
    writer: RunWriter | None  # the chief's; None on the other workers
    rows: list[dict[str, float]] = field(default_factory=list)


def _start(config: TrainConfig, run_dir: Path, ctx: Sequence[mx.Context], kv: mx.kvstore.KVStore | None,
           info: WorkerInfo) -> Fitting:
    """Seeds, loaders, the net (restored from the checkpoint on a resume), the stage and trainer for
    the epoch the run starts at. The order is the random draws' order: keep it."""
    seed_everything(config.seed)
    enforce_determinism(config)
    start_amp(config.dtype)
    loaders = make_loaders(config, len(ctx), info, pin_device=ctx[0].device_id if ctx[0].device_type == "gpu" else -1)
    resuming = bool(config.resume) and (run_dir / CHECKPOINT).is_file()
    if config.resume and not resuming:
        log.warning("%s has no checkpoint (no epoch of it finished): starting it from epoch 0", run_dir)
    net = build_net(config.model, config.num_classes, ctx=ctx, download=config.download,
                    pretrained="none" if resuming else config.pretrained, root=config.mxnet_home or None)
    frozen = freeze_backbone(net) if config.freeze_backbone else None
    state = read_checkpoint(run_dir).state if resuming else FitState()
    weights = class_weights(loaders.train_labels, config.num_classes) if config.balance == "weights" else None
    full = FullNet(net, loaders, list(ctx), config, layout_for(config), info, weights)
    head = head_stage(net, config, ctx, loaders.val_labels, weights) if state.epoch < config.epochs else None
    stage: EpochStage = head or full
    trainer = stage_trainer(net, config, state.epoch, stage.iters_per_epoch, len(ctx), kv, frozen)
    if resuming:
        restore(run_dir, net, trainer, ctx)
        seed_everything(config.seed + state.epoch)  # a fresh but reproducible stream per resume point
        log.info("resuming %s after epoch %d (best %s %.4f at epoch %d)", run_dir, state.epoch - 1,
                 BEST_METRIC, state.best_score, state.best_epoch)
    # built after the trainer: what it averages (grad_req "null") is what the stage left frozen
    full.averager = AuxAverager(net, kv, info) if kv is not None else None
    board = EpochBoard(run_dir, state.epoch) if config.tensorboard else None
    writer = RunWriter(run_dir, board=board) if info.is_chief else None
    rows = [r for r in read_metrics(run_dir) if r["epoch"] < state.epoch]
    return Fitting(config, run_dir, kv, full, stage, trainer, state, frozen, writer, rows)


def _fine_tune(f: Fitting, epoch: int) -> None:
    """From `epoch` (= config.epochs) on: the whole net, unfrozen, with the fine-tuning trainer."""
    f.stage = f.full
    f.trainer = stage_trainer(f.full.net, f.config, epoch, f.full.iters_per_epoch, len(f.full.ctx), f.kv,
                              f.frozen)
    log.info("fine-tuning the whole net for %d epochs at lr %.3g", f.config.fine_tune_epochs,
             f.config.lr * f.config.fine_tune_lr_mult)


def _epoch(f: Fitting, epoch: int) -> dict[str, float]:
    """Train and validate one epoch of the current stage; returns its metrics row."""
    start = time.time()
    row = {"epoch": epoch, **f.stage.train_epoch(f.trainer, epoch)}
    row.update(f.stage.validate())
    row.update(lr=f.trainer.learning_rate, epoch_s=time.time() - start)
    return row


def _record(f: Fitting, row: dict[str, float]) -> bool:
    """Log, account for (best epoch, patience) and write a finished epoch; True to stop early."""
    f.rows.append(row)
    log.info("%s", epoch_line(row))
    stalled = stall_note([r["epoch_s"] for r in f.rows])
    if stalled:
        log.warning("epoch %d %s", row["epoch"], stalled)
    improved = f.state.record(row["epoch"], row[BEST_METRIC], row["val_loss"])
    if f.writer is not None:
        f.writer.epoch_done(f.full.net, f.trainer, f.state, f.rows, improved)
    if f.config.patience and f.state.bad_epochs >= f.config.patience:
        log.info("early stop: no %s gain for %d epochs", BEST_METRIC, f.state.bad_epochs)
        return True
    return False


def _fit(config: TrainConfig, run_dir: Path, ctx: Sequence[mx.Context], kv: mx.kvstore.KVStore | None = None,
         info: WorkerInfo = WorkerInfo()) -> None:
    """The epoch loop: every epoch the same three steps (train, validate, record) whatever the stage."""
    f = _start(config, run_dir, ctx, kv, info)
    log.info("training %s on %s: %s, %d epochs%s, batch %d x %d device(s) -> %s", config.model,
             config.task or config.tasks, config.pretrained if not config.resume else "resumed", config.epochs,
             f" + {config.fine_tune_epochs} fine-tuning" if config.fine_tune_epochs else "", config.batch_size,
             len(ctx), run_dir)
    rule = batch_rule(config, len(ctx), info.num_workers)
    if rule:
        log.info("%s", rule)
    first = f.state.epoch
    try:
        for epoch in range(first, config.epochs + config.fine_tune_epochs):
            if epoch == config.epochs and epoch != first:
                _fine_tune(f, epoch)
            if _record(f, _epoch(f, epoch)):
                break
        if f.writer is not None:
            f.writer.flush(f.full.net, f.trainer, f.state, f.rows, final=True)
            f.full.layout.finish(run_dir, config, f.rows)
    finally:
        if f.writer is not None:
            f.writer.close()
    log.info("done: best %s %.4f at epoch %d; run %s", BEST_METRIC, f.state.best_score, f.state.best_epoch, run_dir)
