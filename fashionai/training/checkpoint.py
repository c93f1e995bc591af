"""Checkpoints: one consistent set per commit, so a run killed at any instant resumes correctly.

A commit writes the finished epoch's weights and trainer states (and the best weights, when a
better epoch came) under new, versioned names (`epoch-0048.params`, `epoch-0048.states`,
`best-0045.params`), then `checkpoint.json`, which names those files with their SHA-1: writing it
(one atomic rename) is the commit point. Only then do the stable names `last.params`,
`last.states` and `best.params` become hard links to the new versions, and older versions go.
A kill before the commit point leaves the previous checkpoint and its files untouched (the new
files are orphans, removed at the next commit or resume); a kill after it leaves a complete new
one. A resume reads the files checkpoint.json names, checks their SHA-1 and repairs the stable
names, so weights of one epoch never continue under another epoch's state.

`last.states` is a pickle (MXNet's Trainer.save_states): a run folder is code, to be resumed
only from a source you trust.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fashionai.core.io import atomic_save, sha1_of, write_json

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.json"
BEST_METRIC = "val_map"  # official FashionAI AP on the val split
ALIASES = {"params": "last.params", "states": "last.states", "best": "best.params"}
VERSIONED = re.compile(r"(epoch-\d{4,}\.(params|states)|best-\d{4,}\.params)")
LEFTOVER = re.compile(r"\.(last|best)\.(params|states)\.\d+\.link")  # an alias swap a kill interrupted


def epoch_rank(score: float, loss: float, epoch: int) -> tuple:
    """The best-epoch rule as a sort key (the larger, the better): the highest score (NaN below any
    number), then the lowest val loss (NaN below any number), then the later epoch.

    Why loss and epoch: on a small val split the score saturates early (every epoch from 12 of 25 at
    AP 1.0), and keeping the first of them kept half-trained weights. `FitState.record` and
    `fashionai.training.rundir.best_row` both rank epochs by it, so the checkpoint's best.params and
    the best row read back from metrics.csv are always the same epoch.
    """
    return (not math.isnan(score), -math.inf if math.isnan(score) else score,
            -math.inf if math.isnan(loss) else -loss, epoch)


@dataclass
class FitState:
    """Where a run stands after an epoch: what `checkpoint.json` commits and a resume starts from."""

    epoch: int = 0  # the next epoch to run
    metric: str = BEST_METRIC
    best_score: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since the score last rose (early stopping)
    best_loss: float = math.nan  # the best epoch's val loss: breaks ties of the score

    def record(self, epoch: int, score: float, loss: float = math.nan) -> bool:
        """Account for a finished epoch's val score and loss; True when it is the best so far
        (`epoch_rank`; an epoch without a score is never the best). Patience counts epochs since
        the score last rose: a tie may become the best weights, but is no progress.
        """
        rose = not math.isnan(score) and (math.isnan(self.best_score) or score > self.best_score)
        best = not math.isnan(score) and (epoch_rank(score, loss, epoch)
                                          > epoch_rank(self.best_score, self.best_loss, self.best_epoch))
        if best:
            self.best_score, self.best_epoch, self.best_loss = score, epoch, loss
        self.bad_epochs = 0 if rose else self.bad_epochs + 1
        self.epoch = epoch + 1
        return best

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint: the state and the files it names (`params`, `states`, `best`)."""

    state: FitState
    files: dict[str, str]
    sha1: dict[str, str]


def read_checkpoint(run_dir: Path) -> Checkpoint:
    """checkpoint.json; FileNotFoundError when no epoch was committed yet. A checkpoint written
    before files were versioned names the stable files and has no SHA-1 to check."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from (no epoch of this run finished)")
    saved = json.loads(path.read_text())
    files = saved.pop("files", None) or {k: v for k, v in ALIASES.items() if (run_dir / v).is_file()}
    sha1 = saved.pop("sha1", {})
    for key in ("best_score", "best_loss"):
        saved[key] = math.nan if saved.get(key) is None else saved[key]
    return Checkpoint(FitState(**saved), files, sha1)


def commit(run_dir: Path, state: FitState, net, trainer, best: dict | None) -> Checkpoint:
    """Write the epoch just finished (`state.epoch - 1`) as a new checkpoint (module docstring).

    `best` holds the best epoch's parameters when they changed since the last commit (MXNet
    arrays by structural name, as `save_parameters` writes them), else None.
    """
    import mxnet as mx

    epoch = state.epoch - 1
    previous = read_checkpoint(run_dir).files if (run_dir / CHECKPOINT).is_file() else {}
    files = {"params": f"epoch-{epoch:04d}.params", "states": f"epoch-{epoch:04d}.states",
             "best": previous.get("best")}
    atomic_save(run_dir / files["params"], net.save_parameters)
    atomic_save(run_dir / files["states"], trainer.save_states)
    if best is not None:
        files["best"] = f"best-{state.best_epoch:04d}.params"
        atomic_save(run_dir / files["best"], lambda f: mx.nd.save(f, best))
    elif files["best"] is None:  # no best epoch yet (every val mAP undefined so far): this epoch's weights
        files["best"] = f"best-{epoch:04d}.params"
        atomic_save(run_dir / files["best"], net.save_parameters)
    sha1 = {name: sha1_of(run_dir / name) for name in files.values()}
    write_json(run_dir / CHECKPOINT, {**state.to_dict(), "files": files, "sha1": sha1})  # the commit point
    checkpoint = Checkpoint(state, files, sha1)
    tidy(run_dir, checkpoint)
    return checkpoint


def verify(run_dir: Path, checkpoint: Checkpoint) -> None:
    """ValueError unless every file the checkpoint names is there with the SHA-1 it recorded."""
    for kind, name in checkpoint.files.items():
        path = run_dir / name
        if not path.is_file():
            raise ValueError(f"{run_dir / CHECKPOINT} names {name} ({kind}), which is missing: the run folder "
                             "was changed after its last checkpoint; it cannot be resumed as it is")
        want = checkpoint.sha1.get(name)
        if want is not None and sha1_of(path) != want:
            raise ValueError(f"{path} is not the file {CHECKPOINT} committed (SHA-1 differs): the run folder was "
                             "changed after its last checkpoint; it cannot be resumed as it is")


def tidy(run_dir: Path, checkpoint: Checkpoint) -> None:
    """Point the stable names at the checkpoint's files and remove versions it does not name."""
    for kind, name in checkpoint.files.items():
        alias, target = run_dir / ALIASES[kind], run_dir / name
        if alias.name != name and not (alias.exists() and os.path.samefile(alias, target)):
            tmp = alias.with_name(f".{alias.name}.{os.getpid()}.link")
            tmp.unlink(missing_ok=True)
            try:
                os.link(target, tmp)
            except OSError:  # a file system without hard links: a copy, renamed into place all the same
                shutil.copyfile(target, tmp)
            os.replace(tmp, alias)
    named = set(checkpoint.files.values())
    for path in run_dir.iterdir():
        if (VERSIONED.fullmatch(path.name) and path.name not in named) or LEFTOVER.fullmatch(path.name):
            path.unlink(missing_ok=True)


def restore(run_dir: Path, net, trainer, ctx: Sequence) -> FitState:
    """Load the committed weights and trainer state (momentum, update count) into `net` and
    `trainer`; returns the state to resume from.

    The states pickle the whole optimizer, LR schedule included, so a resume with more --epochs
    would follow the old, shorter schedule's tail; the trainer keeps this config's schedule instead,
    which then continues from the saved update count.
    """
    checkpoint = read_checkpoint(run_dir)
    verify(run_dir, checkpoint)
    net.load_parameters(str(run_dir / checkpoint.files["params"]), ctx=list(ctx))
    schedule = trainer.optimizer.lr_scheduler
    trainer.load_states(str(run_dir / checkpoint.files["states"]))
    trainer.optimizer.lr_scheduler = schedule
    tidy(run_dir, checkpoint)
    return checkpoint.state
