"""The run directory: its files, written atomically, and reading them back for a resume.

`<out>/<task>/<name>/` (docs/design.md): `config.json` (the resolved config: enough to rebuild the
net), `train.log`, `metrics.csv` (one row per epoch), `best.params` (highest val mAP, the official
FashionAI AP of `fashionai.core.metrics`), `last.params` + `last.states` (trainer: momentum, update
count, LR schedule) + `checkpoint.json` (`FitState`: epoch, best score, early-stopping count),
`curves.png`. Every file is written to a temporary name and renamed, and `checkpoint.json` last: it
is the commit point a resume starts from.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fashionai.core.io import atomic_save, atomic_write, csv_text, write_json
from fashionai.core.plots import save_curves
from fashionai.training.config import ARCH_FIELDS, TrainConfig, run_folder

log = logging.getLogger(__name__)

BEST_METRIC = "val_map"  # official FashionAI AP on the val split; ties keep the earlier epoch
METRIC_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_map", "val_basic_precision",
    "img_per_s", "epoch_s",
)


@dataclass
class FitState:
    """Where a run stands after an epoch: what `checkpoint.json` commits and a resume starts from."""

    epoch: int = 0  # the next epoch to run
    metric: str = BEST_METRIC
    best_score: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since the best one (early stopping)

    def record(self, epoch: int, score: float) -> bool:
        """Account for a finished epoch's score; True when it is the best so far."""
        improved = not math.isnan(score) and (math.isnan(self.best_score) or score > self.best_score)
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
        else:
            self.bad_epochs += 1
        self.epoch = epoch + 1
        return improved

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create the run directory (a new run must not reuse a non-empty one) and save the config."""
    run_dir = run_folder(config)
    if config.resume:
        saved = TrainConfig.load(run_dir / "config.json")
        changed = [f for f in ARCH_FIELDS if getattr(saved, f) != getattr(config, f)]
        if changed:
            raise ValueError(f"--resume {run_dir}: cannot change {changed} of a run; start a new run instead")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"{run_dir} already holds a run; pick another --name or --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir)
    return run_dir


def save_config(config: TrainConfig, run_dir: Path) -> None:
    write_json(run_dir / "config.json", config.to_dict())


def write_metrics(rows: Sequence[dict], run_dir: Path) -> None:
    """Rewrite `metrics.csv` (one row per epoch) atomically; per-task columns (`val_map/<task>`, a
    multi-task run's) follow the standard ones."""
    extra = sorted({k for row in rows for k in row if "/" in k})
    atomic_write(run_dir / "metrics.csv", csv_text(rows, [*METRIC_COLUMNS, *extra]))


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's `metrics.csv` as floats (`epoch` as int); [] if there is none."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def best_row(rows: Sequence[dict]) -> dict:
    """The metrics row of the best epoch (highest val mAP; NaN never wins; ties keep the earlier)."""
    return max(rows, key=lambda r: (r[BEST_METRIC] == r[BEST_METRIC], r[BEST_METRIC]))


def save_checkpoint(net, trainer, state: FitState, run_dir: Path) -> None:
    """last.params, last.states, then checkpoint.json (the commit point of a resume)."""
    atomic_save(run_dir / "last.params", net.save_parameters)
    atomic_save(run_dir / "last.states", trainer.save_states)
    write_json(run_dir / "checkpoint.json", state.to_dict())


def read_checkpoint(run_dir: Path) -> FitState:
    """checkpoint.json: the epoch to resume at, the best score, the early-stopping count."""
    path = run_dir / "checkpoint.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from (did the first epoch finish?)")
    saved = json.loads(path.read_text())
    return FitState(**{**saved, "best_score": math.nan if saved.get("best_score") is None else saved["best_score"]})


def load_checkpoint(run_dir: Path, net, trainer, ctx: Sequence) -> FitState:
    """Restore weights and trainer state (momentum, update count); returns checkpoint.json.

    last.states pickles the whole optimizer, LR schedule included, so a resume with more --epochs
    would follow the old, shorter schedule's tail; the trainer keeps this config's schedule instead,
    which then continues from the saved update count.
    """
    state = read_checkpoint(run_dir)
    net.load_parameters(str(run_dir / "last.params"), ctx=list(ctx))
    schedule = trainer.optimizer.lr_scheduler
    trainer.load_states(str(run_dir / "last.states"))
    trainer.optimizer.lr_scheduler = schedule
    return state


class RunWriter:
    """Writes the run directory after each epoch, at most every `every_s` seconds for fast epochs.

    metrics.csv is rewritten every epoch; the checkpoint, best.params and curves.png (a matplotlib
    figure: ~0.3 s) only when `every_s` has passed since the last write and at the end, so
    sub-second epochs (head training on cached features) are not dominated by file writes. The
    best epoch's weights are kept in memory until then, so best.params is still that epoch's.
    """

    def __init__(self, run_dir: Path, every_s: float = 10.0):
        self.run_dir, self.every_s = run_dir, every_s
        self.last_write = time.time()
        self.best: dict | None = None

    def epoch_done(self, net, trainer, state: FitState, rows: list[dict], improved: bool) -> None:
        write_metrics(rows, self.run_dir)
        if improved:
            # structural names and reduced values: what save_parameters would write now
            self.best = {k: p._reduce() for k, p in net._collect_params_with_prefix().items()}
        if time.time() - self.last_write >= self.every_s:
            self.flush(net, trainer, state, rows)

    def flush(self, net, trainer, state: FitState, rows: list[dict], final: bool = False) -> None:
        """best.params (if a better epoch came since), the checkpoint, curves.png."""
        import mxnet as mx

        if self.best is not None:
            best = self.best
            atomic_save(self.run_dir / "best.params", lambda f: mx.nd.save(f, best))
            self.best = None
        elif final and not (self.run_dir / "best.params").is_file():
            atomic_save(self.run_dir / "best.params", net.save_parameters)  # every val mAP undefined
        if rows:
            save_checkpoint(net, trainer, state, self.run_dir)
            save_curves(rows, self.run_dir / "curves.png")
        self.last_write = time.time()


def log_to(run_dir: Path) -> logging.Handler:
    """Append the package's log records to `<run_dir>/train.log` for the duration of the run."""
    handler = logging.FileHandler(run_dir / "train.log", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("fashionai")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler
