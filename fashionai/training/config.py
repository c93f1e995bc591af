"""`TrainConfig`: everything a training run needs, validated once, saved as the run's `config.json`.

The command line (`fashionai train` flags), `-c FILE` (YAML or JSON) and a run's `config.json` are
views of this dataclass (timm's layering: defaults, then a file, then flags). Defaults are the Gluon
FashionAI tutorial's (`train_task.py`: SGD, lr 0.001, momentum 0.9, wd 1e-4, step decay x0.75 at
epochs 10/20/30, 40 epochs, batch 64 per device) on ResNet50_v2 at 224 px, with the tutorial's 4
loader workers where there are 4 cores (`workers` -1: min(4, cores)); `TrainConfig.demo` is the
small from-scratch setting for generated data.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionai.core.runinfo import RUN_LEGACY
from fashionai.core.tasks import check_task, expand_tasks, num_classes
from fashionai.core.view import View
from fashionai.data.transforms import AUGMENTS
from fashionai.data.tta import TTA_MODES
from fashionai.training.distributed import is_distributed

CHOICES = {
    "optimizer": ("sgd", "nag"), "lr_mode": ("step", "cosine"), "balance": ("none", "sampler", "weights"),
    "kvstore": ("device", "local", "dist_sync", "dist_device_sync"),
    "dtype": ("float32", "bfloat16", "float16", "auto"),
    "cache_views": tuple(TTA_MODES),
    "feature_engine": ("mxnet", "openvino", "auto"),
    "augment": AUGMENTS,
    "input": ("auto", "folder", "rec"),
}
# A resume must not change these: the net's shape, and the view its predictions are made on.
ARCH_FIELDS = ("task", "tasks", "model", "data_shape", "num_classes", "crop_ratio")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as the run's `config.json`. CLI and YAML are views."""

    task: str = ""
    tasks: str = ""
    prepared: str = "data/prepared"
    out: str = "runs"
    name: str = ""
    model: str = "ResNet50_v2"
    num_classes: int = 0
    data_shape: int = 224
    pretrained: str = "cache"
    download: bool = False
    mxnet_home: str = ""
    devices: str = "auto"
    dtype: str = "auto"
    num_gpus: int | None = None
    kvstore: str = "device"
    workers: int = -1  # auto: fashionai.data.loaders.loader_workers / record_threads size it from the cores
    input: str = "auto"  # rec where GPUs train and the task's packs are fresh, else folder (inputs.input_kind)
    epochs: int = 40
    budget_s: float = 0.0  # > 0: the epochs (at most `epochs`) that fit in this many seconds here (training.budget)
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.9
    wd: float = 1e-4
    no_wd: bool = False
    lr_mode: str = "step"
    warmup_epochs: int = 0
    lr_steps: list[int] = field(default_factory=lambda: [10, 20, 30])
    lr_factor: float = 0.75
    head_lr_mult: float = 1.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    mixup_off_epochs: int = 0
    balance: str = "none"
    # Chosen by test mAP on held-out data (bench/bench_score.py, bench/RESULTS.md "Score"): the val
    # view's scale at a random position, plus colour jitter. GluonCV's ImageNet recipe (`imagenet`:
    # area 0.08-1, aspect 3/4-4/3, jitter 0.4, PCA lighting 0.1) stays an option. The val view keeps
    # the whole short side (crop_ratio 1.0): ImageNet's 0.875 cut off the ends of a garment that the
    # length tasks are about, and lost test mAP on both held-out sets.
    augment: str = "crop"
    crop_ratio: float = 1.0
    min_scale: float = 0.08
    jitter: float = 0.2
    lighting: float = 0.0
    patience: int = 0
    freeze_backbone: bool = False
    cache_features: bool = False
    cache_views: str = "none"
    # MXNet: the reference, what runs made before the choice used (so they need no RUN_LEGACY entry);
    # OpenVINO FP32's 1.2x (idle, 2-core AVX-512 CPU) pays its 10-15 s export only on large caches
    # and vanishes on a busy machine (training.backbone_pass)
    feature_engine: str = "mxnet"
    fine_tune_epochs: int = 0
    fine_tune_lr_mult: float = 0.1
    tensorboard: bool = False  # also write each epoch's metrics as TensorBoard events (training.rundir.EpochBoard)
    seed: int = 0
    # Same seed, same machine: the same metrics.csv and weights. Each training image's augmentation is
    # seeded from (seed, epoch, image) in whichever loader process draws it, the order from (seed,
    # epoch); MXNet is asked for deterministic kernels (MXNET_ENFORCE_DETERMINISM, for GPUs).
    deterministic: bool = True
    resume: str = ""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Config from a dict (JSON/YAML); `-` in keys is read as `_`; unknown keys are an error."""
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Config from a `.json` or `.yaml`/`.yml` file (`-c FILE`: a key it lacks takes today's default)."""
        return cls.from_dict(read_config_file(path))

    @classmethod
    def of_run(cls, run_dir: str | Path) -> TrainConfig:
        """A run's own config.json; a key the run predates takes the value the run was made with
        (RUN_LEGACY), not today's default, so a resume continues the run as it was."""
        return cls.from_dict({**RUN_LEGACY, **read_config_file(Path(run_dir) / "config.json")})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def view(self) -> View:
        """The view the run trains its val metrics and predicts on (ValueError if it cannot be one)."""
        return View(self.data_shape, self.crop_ratio)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def demo(cls, task: str, prepared: str | Path, out: str | Path, **changes: Any) -> TrainConfig:
        """The from-scratch setting for generated demo data (docs/stages.md, "The demo data"): all 8 tasks in
        about 5 minutes on 2 CPU cores. mobilenet0.25 at 64 px trains ~15x faster than
        cifar_resnet20_v1 at 64 px here (1200 vs 63 img/s compute) and, given 25 epochs, learns the
        demo classes better (skirt / collar / neckline val acc 0.59 / 0.86 / 0.78 at 80 images per
        class, chance 0.17 / 0.2 / 0.1). `--augment imagenet` crops keep >= 60% of the image (the
        length classes are about where a hem ends, which small crops would cut away); on the shop
        data they paid off only over more epochs than the tutorial's 25 (docs/score.md)."""
        preset = dict(
            task=task, prepared=str(prepared), out=str(out), name="demo", model="mobilenet0.25",
            data_shape=64, pretrained="none", devices="first", workers=0, epochs=25, batch_size=32,
            optimizer="nag", lr=0.1, wd=1e-4, lr_mode="cosine", warmup_epochs=1, lr_steps=[],
            min_scale=0.6, seed=0,
        )
        if changes.get("epochs", preset["epochs"]) < 2 and "warmup_epochs" not in changes:
            preset["warmup_epochs"] = 0  # a one-epoch run has no room for a warm-up
        return cls.from_dict({**preset, **changes})


PRESETS: dict[str, Callable[..., TrainConfig]] = {"demo": TrainConfig.demo}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A dict from a JSON or YAML file; ValueError when it is not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # only for YAML files: not every command needs it

        values = yaml.safe_load(path.read_text()) or {}
    else:
        values = json.loads(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def check_config(config: TrainConfig) -> TrainConfig:
    """Validate and fill derived fields (num_classes, name); returns the resolved config."""
    for key, allowed in CHOICES.items():
        if getattr(config, key) not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {getattr(config, key)!r}")
    if config.epochs < 1 or config.batch_size < 1 or config.data_shape < 8:
        raise ValueError("epochs and batch_size must be >= 1 and data_shape >= 8")
    config.view  # building the View refuses a crop ratio outside (0, 1]
    if not 0 < config.min_scale <= 1 or not 0 <= config.label_smoothing < 1 or config.mixup < 0:
        raise ValueError("min_scale must be in (0, 1], label_smoothing in [0, 1), mixup >= 0")
    if config.warmup_epochs >= config.epochs and config.warmup_epochs:
        raise ValueError(f"warmup_epochs ({config.warmup_epochs}) must be < epochs ({config.epochs})")
    check_head_training(config)
    check_input(config)
    if config.budget_s < 0 or (config.budget_s > 0 and is_distributed(config.kvstore)):
        raise ValueError("budget_s must be >= 0, and a distributed run needs --epochs (each worker would "
                         "measure its own budget)")
    config = _check_multitask(config) if config.tasks else config.replace(num_classes=_task_classes(config))
    name = config.name or f"{config.model.lower()}_{config.data_shape}px_{time.strftime('%Y%m%d-%H%M%S')}"
    return config.replace(name=check_name(name), lr_steps=[int(s) for s in config.lr_steps])


def check_name(name: str) -> str:
    """`name` if it is one plain folder name: it becomes part of run paths (`<out>/<task>/<name>`)."""
    if name in (".", "..") or any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"run name {name!r} must be one folder name: no '/', '\\', control characters, "
                         "'.' or '..'")
    return name


def _task_classes(config: TrainConfig) -> int:
    k = num_classes(check_task(config.task))
    if config.num_classes not in (0, k):
        raise ValueError(f"num_classes {config.num_classes} != {k} classes of {config.task}")
    return k


def multitask_tasks(spec: str) -> tuple[str, ...]:
    """The tasks of a `--tasks` spec (`length`, `design`, `all` or a comma list): at least two."""
    tasks = expand_tasks(spec)
    if len(tasks) < 2:
        raise ValueError(f"--tasks {spec!r} names {len(tasks)} task; a multi-task run needs two or more "
                         "(use --task for one)")
    return tuple(tasks)


def _check_multitask(config: TrainConfig) -> TrainConfig:
    """A `--tasks` run: no single --task, no mixup (it would blend two tasks' targets), no cache."""
    tasks = multitask_tasks(config.tasks)
    total = sum(num_classes(t) for t in tasks)
    if config.task:
        raise ValueError(f"give --task ({config.task}) or --tasks ({config.tasks}), not both")
    if config.mixup > 0 or config.cache_features:
        raise ValueError("--tasks trains on several tasks' images: no --mixup, no --cache-features")
    if config.num_classes not in (0, total):
        raise ValueError(f"num_classes {config.num_classes} != {total} outputs of {config.tasks}")
    return config.replace(tasks=",".join(tasks), num_classes=total)


def check_head_training(config: TrainConfig) -> None:
    """Refuse feature-cache options that cannot mean what they say (before anything is written)."""
    if config.fine_tune_epochs < 0:
        raise ValueError("fine_tune_epochs must be >= 0")
    if not config.cache_features:
        return
    why = {
        "needs --freeze-backbone (features of a backbone that trains go stale every step)":
            not config.freeze_backbone,
        "cannot run under a distributed kvstore (each worker would cache every image)":
            is_distributed(config.kvstore),
        "takes one view per cached sample: no mixup": config.mixup > 0,
        "has no sampler: use --balance weights": config.balance == "sampler",
        "reads the JPEG folders: use --input folder (or auto)": config.input == "rec",
        f"with --feature-engine openvino computes FP32 features, not {config.dtype}'s: use --dtype float32":
            config.feature_engine == "openvino" and config.dtype in ("bfloat16", "float16"),
    }
    problems = [reason for reason, bad in why.items() if bad]
    if problems:
        raise ValueError("--cache-features " + "; ".join(problems))


def run_folder(config: TrainConfig) -> Path:
    """`<out>/<task>/<name>` of a run (`<out>/multitask-<tasks>/<name>` for a multi-task net), or
    the run being resumed."""
    if config.resume:
        return Path(config.resume)
    if config.tasks:
        return Path(config.out) / ("multitask-" + config.tasks.replace(",", "+")) / config.name
    return Path(config.out) / config.task / config.name


def check_input(config: TrainConfig) -> None:
    """Refuse what `--input rec` cannot do (before anything is written): MXNet's ImageRecordIter
    has no weighted sampling, and a multi-task net reads several tasks' folders."""
    if config.input != "rec":
        return
    if config.balance == "sampler":
        raise ValueError("--input rec cannot draw class-balanced batches (MXNet's ImageRecordIter has no "
                         "weighted sampler): use --balance weights, or --input folder")
    if config.tasks:
        raise ValueError("--tasks reads every task's class folders: use --input folder")


def augmentation(config: TrainConfig) -> dict:
    """The training augmentation's settings besides the view, as the folder and RecordIO loaders take them."""
    return dict(augment=config.augment, min_scale=config.min_scale, jitter=config.jitter, lighting=config.lighting)


# Settings a resume may give anew without changing what the run computes: where and how fast it
# runs, and what only a new run reads (the initial weights). Anything else is the run's recipe.
RESUME_FREE = frozenset({"resume", "devices", "num_gpus", "workers", "input", "mxnet_home", "download",
                         "pretrained", "tensorboard", "deterministic", "feature_engine"})


def resume_changes(saved: TrainConfig, config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (the run's value, the new value)} of the recipe settings a resume would change."""
    return {f.name: (getattr(saved, f.name), getattr(config, f.name)) for f in dataclasses.fields(TrainConfig)
            if f.name not in RESUME_FREE and getattr(saved, f.name) != getattr(config, f.name)}


def check_resume(saved: TrainConfig, config: TrainConfig, allow_changes: bool) -> dict[str, tuple[Any, Any]]:
    """The changes a resume makes (`resume_changes`); ValueError listing them unless `allow_changes`.
    What a run is (its task, net, input size, view) never changes: a new run is needed for that."""
    changes = resume_changes(saved, config)
    shown = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
    fixed = [name for name in changes if name in ARCH_FIELDS]
    if fixed:
        raise ValueError(f"--resume {config.resume}: {', '.join(fixed)} of a run cannot change ({shown}); "
                         "train a new run with another --name")
    if changes and not allow_changes:
        raise ValueError(f"--resume {config.resume}: these settings differ from the run's: {shown}; resume without "
                         "them, or pass --allow-changes to continue with them (the run records from which epoch)")
    return changes
