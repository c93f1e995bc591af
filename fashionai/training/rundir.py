"""The run directory: claimed for one run only, its files written atomically, read back for a resume.

`<out>/<task>/<name>/` (docs/design.md): `config.json` (the resolved config: enough to rebuild the
net), `train.log`, `metrics.csv` (one row per epoch), `best.params` (highest val mAP, the official
FashionAI AP of `fashionai.core.metrics`), `last.params` + `last.states` (trainer: momentum, update
count, LR schedule) + `checkpoint.json` (fashionai.training.checkpoint: committed after every
epoch), `curves.png`.

A run folder belongs to one run: a new run never writes into a folder holding another run's files
(a multi-task run checks the per-task folders it will be split into before it starts). A folder
holding only what a run writes before its first epoch ends (`config.json`, `train.log`: the run
failed or was killed early) can be taken over by a new run of the same name, or resumed from
epoch 0, so a failed start never blocks its own name.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING

from fashionai.core.io import atomic_save, atomic_write, building, csv_text, sha1_of, write_json
from fashionai.core.plots import save_curves
from fashionai.model import head_attr, make_net
from fashionai.training.checkpoint import BEST_METRIC, CHECKPOINT, FitState, commit, epoch_rank
from fashionai.training.config import ARCH_FIELDS, TrainConfig, multitask_tasks, resume_changes, run_folder

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter

log = logging.getLogger(__name__)

METRIC_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_map", "val_basic_precision",
    "img_per_s", "epoch_s",
)
STARTED_FILES = frozenset({"config.json", "train.log"})  # what a run has before its first epoch ends
CHANGES = "changes.json"  # settings a resume changed (--allow-changes), from which epoch
SPLIT_INFO = "multitask.json"  # a per-task run split from a multi-task run names it here
FAST_EPOCH_S = 1.0  # epochs shorter than this are checkpointed at most every `every_s` seconds
BOARD_DIR = "tensorboard"  # --tensorboard: the epochs as TensorBoard event files (EpochBoard)


def run_targets(config: TrainConfig) -> list[Path]:
    """Every run folder a config will write: its own, and for a multi-task net the per-task runs
    it is split into at the end."""
    targets = [run_folder(config)]
    if config.tasks:
        targets += [Path(config.out) / task / config.name for task in multitask_tasks(config.tasks)]
    return targets


def never_committed(names: set[str]) -> bool:
    """Whether a run folder holding `names` is a start that never committed an epoch: its config,
    but no checkpoint.json (a run split from a multi-task run has none either, but has its
    multitask.json). Whatever else it holds (metrics.csv, curves.png, epoch files of an epoch cut
    off while being committed) belongs to no epoch a resume could continue from."""
    return "config.json" in names and CHECKPOINT not in names and SPLIT_INFO not in names


def check_free(path: Path, owner: Path | None = None) -> None:
    """FileExistsError unless `path` can take a new run: missing, empty, holding only what a run
    writes before its first epoch ends, or (with `owner`) a per-task run split from `owner`."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path} exists and is not a run folder; pick another --name or --out")
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    if names <= STARTED_FILES or never_committed(names):
        if names:
            log.warning("%s holds an earlier start of a run that finished no epoch: this run takes it over",
                        path)
        return
    if owner is not None and (path / SPLIT_INFO).is_file():
        made_by = json.loads((path / SPLIT_INFO).read_text()).get("multitask_run")
        if isinstance(made_by, str) and Path(made_by).resolve() == owner.resolve():
            return
    raise FileExistsError(f"{path} already holds a run; pick another --name, or continue it with --resume {path}")


def prepare_run_dir(config: TrainConfig) -> Path:
    """Claim the run's folders before anything is trained (`check_free`), then save the config."""
    run_dir = run_folder(config)
    if config.resume:
        saved = TrainConfig.of_run(run_dir)
        changed = [f for f in ARCH_FIELDS if getattr(saved, f) != getattr(config, f)]
        if changed:
            raise ValueError(f"--resume {run_dir}: cannot change {changed} of a run; start a new run instead")
        if saved.name != config.name or saved.out != config.out:
            raise ValueError(f"--resume {run_dir}: cannot change the run's name or --out")
        if not (run_dir / CHECKPOINT).is_file():  # only a start that finished no epoch begins again
            try:
                check_free(run_dir)
            except FileExistsError:
                raise FileExistsError(f"--resume {run_dir}: it has no {CHECKPOINT} but holds a run's files (a "
                                      "run split from a multi-task run cannot be resumed); train a new run "
                                      "with another --name") from None
    for target in run_targets(config):
        if target != run_dir or not config.resume:
            check_free(target, owner=run_dir if config.resume else None)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.resume:
        record_changes(run_dir, saved, config)
    save_config(config, run_dir)
    return run_dir


def record_changes(run_dir: Path, saved: TrainConfig, config: TrainConfig) -> None:
    """Append a resume's changed settings, and the epoch they apply from, to `changes.json`: the
    config then describes the epochs from there on, this file the ones before (and says so in the log)."""
    changes = resume_changes(saved, config)
    if not changes:
        return
    path = run_dir / CHANGES
    history = json.loads(path.read_text()) if path.is_file() else []
    epoch = json.loads((run_dir / CHECKPOINT).read_text())["epoch"] if (run_dir / CHECKPOINT).is_file() else 0
    history.append({"from_epoch": epoch, "changes": {k: {"before": old, "after": new}
                                                     for k, (old, new) in changes.items()}})
    write_json(path, history)
    log.warning("resumed with changed settings from epoch %d: %s (recorded in %s)", epoch,
                ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()), path)


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
    """The metrics row of the best epoch, by the rule FitState.record keeps (`epoch_rank`)."""
    return max(rows, key=lambda row: epoch_rank(row[BEST_METRIC], row.get("val_loss", math.nan), row["epoch"]))


def board_scalars(row: dict) -> dict[str, float]:
    """The row's numeric columns but `epoch` (the step), as floats: what metrics.csv holds as numbers."""
    return {k: float(v) for k, v in row.items()
            if k != "epoch" and isinstance(v, Real) and not isinstance(v, bool)}


class EpochBoard:
    """`fashionai train --tensorboard`: each finished epoch's metrics row (every number metrics.csv
    holds: losses, accuracies, val mAP, a multi-task run's per-task figures, LR, speed) as
    TensorBoard scalars at step = epoch in `<run_dir>/tensorboard/`, beside curves.png.

    Only the chief writes (it alone holds a RunWriter); tensorboardX is imported at the first epoch.
    A resumed run adds its own event file to the same folder, opened with a purge at its first
    epoch: TensorBoard then drops what a killed process logged after the checkpoint resumed from,
    so every epoch shows once.
    """

    def __init__(self, run_dir: Path, first_epoch: int):
        self.folder, self.first_epoch = Path(run_dir) / BOARD_DIR, first_epoch
        self._writer: SummaryWriter | None = None

    def _open(self) -> SummaryWriter:
        from tensorboardX import SummaryWriter

        purge = self.first_epoch if self.first_epoch > 0 else None
        return SummaryWriter(logdir=str(self.folder), purge_step=purge, flush_secs=30)

    def log(self, row: dict) -> None:
        """Add a finished epoch's row and flush it to disk (a killed run keeps what it logged)."""
        if self._writer is None:
            self._writer = self._open()
        for tag, value in board_scalars(row).items():
            self._writer.add_scalar(tag, value, int(row["epoch"]))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class RunWriter:
    """Writes the run directory as epochs finish.

    metrics.csv is rewritten and a checkpoint committed after every epoch, except that epochs
    shorter than FAST_EPOCH_S (head training on cached features) are committed at most every
    `every_s` seconds, so file writes do not dominate them; the first epoch of a process and the last
    of the run are always committed. curves.png (a matplotlib figure: ~0.3 s) is drawn at most every
    `every_s` seconds and at the end. The best epoch's weights are kept in memory until the next
    commit, so best.params is always that epoch's. With a `board` (--tensorboard) every epoch's row
    is also written as TensorBoard scalars.
    """

    def __init__(self, run_dir: Path, every_s: float = 10.0, board: EpochBoard | None = None):
        self.run_dir, self.every_s, self.board = run_dir, every_s, board
        self.last_commit = self.last_curves = -float("inf")
        self.best: dict | None = None
        self.committed = -1  # state.epoch of the last commit

    def epoch_done(self, net, trainer, state: FitState, rows: list[dict], improved: bool) -> None:
        write_metrics(rows, self.run_dir)
        if self.board is not None:
            self.board.log(rows[-1])
        if improved:
            # structural names and reduced values: what save_parameters would write now
            self.best = {k: p._reduce() for k, p in net._collect_params_with_prefix().items()}
        fast = rows[-1]["epoch_s"] < FAST_EPOCH_S
        if not fast or time.time() - self.last_commit >= self.every_s:
            self.flush(net, trainer, state, rows)

    def flush(self, net, trainer, state: FitState, rows: list[dict], final: bool = False) -> None:
        """Commit the checkpoint (with best.params if a better epoch came since); curves.png when due."""
        if rows and state.epoch != self.committed:
            commit(self.run_dir, state, net, trainer, self.best)
            self.best, self.last_commit, self.committed = None, time.time(), state.epoch
        if rows and (final or time.time() - self.last_curves >= self.every_s):
            save_curves(rows, self.run_dir / "curves.png")
            self.last_curves = time.time()

    def close(self) -> None:
        """Close the TensorBoard writer, if any (the run's other files are closed as written)."""
        if self.board is not None:
            self.board.close()


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


# --- a multi-task run split into single-task runs ----------------------------------------------


def slice_head(params: dict, head: str, start: int, k: int) -> dict:
    """Params of a save_parameters file with the head's Dense cut to rows [start, start + k)."""
    out = {}
    for key, value in params.items():
        if key.startswith(head + ".") and (key.endswith("weight") or key.endswith("bias")):
            value = value[start:start + k]
        out[key] = value
    return out


def split_run(run_dir: Path, config: TrainConfig, rows: Sequence[dict], layout) -> dict[str, Path]:
    """Write one single-task run per task next to the multi-task run; returns {task: run dir}.
    `layout` is the run's `fashionai.training.layout.TaskLayout` (its tasks, offsets and sizes).

    Each per-task folder is built aside and swapped in whole; all of them are checked first, so a
    folder another run took meanwhile stops the split before anything is replaced."""
    import mxnet as mx

    targets = {task: Path(config.out) / task / config.name for task in layout.tasks}
    for target in targets.values():
        check_free(target, owner=run_dir)
    head = head_attr(make_net(config.model, layout.total))
    weights = {name: mx.nd.load(str(run_dir / f"{name}.params")) for name in ("best", "last")
               if (run_dir / f"{name}.params").is_file()}
    for (task, out), start, k in zip(targets.items(), layout.offsets, layout.sizes):
        with building(out) as tmp:
            save_config(config.replace(task=task, tasks="", num_classes=k, resume=""), tmp)
            for name, params in weights.items():
                sliced = slice_head(params, head, start, k)
                atomic_save(tmp / f"{name}.params", lambda f, p=sliced: mx.nd.save(f, p))
            write_metrics([{**r, **{m: r[f"{m}/{task}"] for m in ("val_loss", "val_acc", "val_map",
                                                                   "val_basic_precision") if f"{m}/{task}" in r}}
                           for r in rows], tmp)
            scored = [r for r in rows if f"val_map/{task}" in r]
            best = best_row(scored) if scored else None  # the epoch best.params holds
            info = {"multitask_run": str(run_dir.resolve()), "tasks": list(layout.tasks),
                    "head_rows": [start, start + k], "best_epoch": best["epoch"] if best else None,
                    "sha1": {f"{name}.params": sha1_of(tmp / f"{name}.params") for name in weights},
                    "val_map_at_best_epoch": best[f"val_map/{task}"] if best else None}
            write_json(tmp / SPLIT_INFO, info)
    log.info("multi-task run split into %s", ", ".join(str(p) for p in targets.values()))
    return targets
