"""A trained run as inference, scoring and the pipeline see it: `RunInfo`, read once from its
`config.json` and validated before any value is used.

A run folder is input like any other: its config could have been edited or copied from elsewhere.
Every value that later becomes part of a file name, a network or an image size is checked here
(a task name with `/` or `..` would otherwise make export write outside the run).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from fashionai.core.io import sha1_of
from fashionai.core.tasks import check_task, num_classes
from fashionai.core.view import IMAGENET_CROP_RATIO, MIN_SIZE, View, check_crop_ratio

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # GluonCV model-zoo names
MAX_SIZE = 4096  # the largest input size in px a config may ask for (the smallest: core.view.MIN_SIZE)
# The share of the short side the val view keeps (core.view.View). ImageNet's 0.875 is what every run
# made before `crop_ratio` was a setting used: a config without the key is read as 0.875, so an older
# run is predicted on the views it was trained on. New runs default to 1.0 (TrainConfig.crop_ratio).
# What a run's config.json means where it lacks a key, because the run predates the setting: the
# value the run was made with, not today's default (read by RunInfo and by TrainConfig.of_run).
RUN_LEGACY = {"crop_ratio": IMAGENET_CROP_RATIO}
# Which weights predict, submit and the demo use unless told otherwise: the last epoch's. On the same
# held-out data the last epoch scored at least the best-val-epoch's test mAP in 8 of 9 runs (+0.014
# on average): the best epoch is picked on a val split of a few images per class, and the cosine
# schedule ends at LR 0. `evaluate --run` keeps scoring the best epoch's (what training reported).
DEFAULT_WHICH = "last"


@dataclass(frozen=True)
class RunInfo:
    """What a run's config says about its net and data: the fields every reader needs, typed."""

    run_dir: Path
    task: str
    model: str
    data_shape: int
    num_classes: int
    prepared: Path
    crop_ratio: float  # RUN_LEGACY's for a run that predates the setting (`from_config`)
    name: str = ""

    @property
    def view(self) -> View:
        """The view the run's net was trained and is predicted on."""
        return View(self.data_shape, self.crop_ratio)

    @classmethod
    def read(cls, run_dir: str | Path) -> RunInfo:
        """The run's `config.json`, validated; FileNotFoundError if `run_dir` is not a run directory,
        ValueError naming the file and field for a value that cannot be right."""
        run_dir = Path(run_dir)
        path = run_dir / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; is {run_dir} a run directory (fashionai train)?")
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{path}: expected a JSON object of settings")
        return cls.from_config(config, run_dir, path)

    @classmethod
    def from_config(cls, config: dict, run_dir: Path, source: Path | str = CONFIG_FILE) -> RunInfo:
        """Validate the fields of a config dict (see `read`)."""
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"{source}: {field} {config.get(field)!r} {why}")

        if not config.get("task") and config.get("tasks"):
            raise ValueError(f"{source}: a multi-task run ({config['tasks']}); use the per-task runs it was "
                             "split into (runs/<task>/<name>)")
        task = config.get("task")
        try:
            check_task(task if isinstance(task, str) else "")
        except ValueError as err:
            raise bad("task", f"is not a task: {err}") from None
        model = config.get("model")
        if not isinstance(model, str) or not MODEL_NAME.fullmatch(model):
            raise bad("model", "is not a model-zoo name")
        size = config.get("data_shape")
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
            raise bad("data_shape", f"is not an input size in {MIN_SIZE}..{MAX_SIZE} px")
        k = config.get("num_classes") or num_classes(task)
        if k != num_classes(task):
            raise bad("num_classes", f"does not match the {num_classes(task)} classes of {task}")
        prepared = config.get("prepared")
        if not isinstance(prepared, str):
            raise bad("prepared", "is not a folder path")
        name = config.get("name", "")
        try:
            crop_ratio = check_crop_ratio({**RUN_LEGACY, **config}["crop_ratio"])
        except ValueError:
            raise bad("crop_ratio", "is not a share of the short side in (0, 1]") from None
        return cls(Path(run_dir), task, model, size, k, Path(prepared), crop_ratio,
                   name if isinstance(name, str) else "")

    def weights(self, which: str = "best") -> Path:
        """`<which>.params` of the run; FileNotFoundError when it has none yet."""
        if which not in ("best", "last"):
            raise ValueError(f"which must be 'best' or 'last', got {which!r}")
        path = self.run_dir / f"{which}.params"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; the run has no {which} checkpoint yet")
        return path

    def verified_weights(self, which: str = "best") -> Path:
        """`weights(which)`, checked against the SHA-1 the run recorded for it (`recorded_sha1`):
        changed or corrupt weights are refused before they predict anything."""
        path = self.weights(which)
        record = recorded_sha1(self.run_dir, which)
        if record is None:
            log.warning("%s: the run keeps no SHA-1 of it (no checkpoint.json): loaded unchecked", path)
            return path
        want, source = record
        if sha1_of(path) != want:
            raise ValueError(f"{path} is not the file {source} recorded (its SHA-1 differs: changed or corrupt "
                             "since training); restore it from a copy of the run, or train again")
        return path


# checkpoint.json's name for each weights file (fashionai.training.checkpoint.ALIASES)
CHECKPOINT_KINDS = {"best": "best", "last": "params"}


def recorded_sha1(run_dir: Path, which: str) -> tuple[str, Path] | None:
    """(the SHA-1 the run recorded for `<which>.params`, the file that records it): checkpoint.json
    of a trained run, multitask.json of a run split from a multi-task run; None when neither has it.
    ValueError naming the record when it cannot be read."""
    for name in ("checkpoint.json", "multitask.json"):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
            sha1 = record["sha1"]
            file = record["files"][CHECKPOINT_KINDS[which]] if name == "checkpoint.json" else f"{which}.params"
        except (ValueError, KeyError, TypeError) as err:
            if name == "multitask.json":  # split before splits recorded their weights' SHA-1
                return None
            raise ValueError(f"{path} is not a checkpoint record this project wrote ({err!r}); the run's "
                             "weights cannot be checked") from None
        return (sha1[file], path) if isinstance(sha1, dict) and file in sha1 else None
    return None
