"""`fashionai train`: its flags are generated from `TrainConfig`, so the command line, `-c FILE` and
a run's config.json stay views of one config."""

from __future__ import annotations

import argparse
import dataclasses
import shlex

from fashionai.cli.common import Handler
from fashionai.training.config import CHOICES, PRESETS, TrainConfig, check_resume, read_config_file, run_folder
from fashionai.training.fit import fit
from fashionai.training.rundir import best_row, read_metrics

# Flag help for each TrainConfig field; the flags themselves are generated from the dataclass so that
# the CLI, `-c FILE` and config.json stay views of one config. Aliases keep the tutorial's / GluonCV's
# flag names (--num-epochs, --lr-decay, --input-size, -j, ...).
TRAIN_HELP = {
    "task": ("attribute task, e.g. skirt_length_labels", ()),
    "tasks": ("instead of --task: one net with a head per task, trained on their union: length, design, "
              "all or a comma list; split into one run per task at the end", ()),
    "prepared": ("prepared root (fashionai prepare --out)", ("--data-dir",)),
    "out": ("runs root: the run goes to OUT/<task>/<name>", ("--save-dir",)),
    "name": ("run name (default: <model>_<px>px_<time>)", ()),
    "model": ("GluonCV model-zoo name", ()),
    "num_classes": ("(derived from the task)", ()),
    "data_shape": ("input size in px", ("--input-size",)),
    "pretrained": ("'cache' (MXNet model cache, never downloads), 'none' (from scratch) or a params file",
                   ("--pretrained-path",)),
    "download": ("allow downloading the pretrained weights from the model zoo", ()),
    "mxnet_home": ("folder whose models/ holds the weights (default $MXNET_HOME or ~/.mxnet)", ()),
    "devices": ("auto (every GPU, else the CPU), first (one GPU, else the CPU), cpu, cpu:N, gpu, gpu:0,1", ()),
    "dtype": ("training precision: float32, bfloat16 (AMP on CPUs with BF16 kernels) or float16 (AMP on "
              "GPUs); refused where the hardware cannot run it. auto: bfloat16 where oneDNN runs it on AMX, "
              "at inputs of 128 px or more and for nets without grouped convolutions (where it trains "
              "faster), else float32; the run's config records the choice",
              ()),
    "num_gpus": ("tutorial flag: 0 = CPU, N = gpu:0..N-1 (overrides --devices)", ()),
    "kvstore": ("device or local (one process, several devices); dist_sync or dist_device_sync "
                "under `fashionai launch` (several processes or hosts)", ()),
    "workers": ("data loader worker processes (--input folder; 0 = in the training process) or decoding "
                "threads (--input rec; MXNet uses at most half the cores); -1 = auto: 4 processes per "
                "training GPU (4 on the CPU), at most one per core, or one thread per core",
                ("-j", "--num-workers", "--num-data-workers")),
    "input": ("auto: rec where GPUs train and the task's packs are there and fresh, else folder; folder: "
              "decode the prepared JPEG folders in Python workers (the tutorial's way); rec: read the "
              "RecordIO packs of `fashionai pack` with MXNet's C++ ImageRecordIter (decoding and "
              "augmentation in native threads: the fast path for GPU hosts; no --balance sampler)", ()),
    "epochs": ("training epochs", ("--num-epochs",)),
    "budget_s": ("a time budget in seconds: before training, a few timed steps on this machine choose the "
                 "epochs that fit (at most --epochs), recorded in config.json; 0 = off", ("--budget-seconds",)),
    "batch_size": ("images per device per step", ("-b",)),
    "optimizer": ("sgd or nag", ()),
    "lr": ("base learning rate", ()),
    "momentum": ("SGD momentum", ()),
    "wd": ("weight decay", ()),
    "no_wd": ("no weight decay on BN parameters and biases", ()),
    "lr_mode": ("step or cosine (after the warm-up)", ()),
    "warmup_epochs": ("linear LR warm-up epochs", ()),
    "lr_steps": ("epochs where the step schedule multiplies the LR by --lr-factor", ("--lr-decay-epoch",)),
    "lr_factor": ("step schedule factor", ("--lr-decay",)),
    "head_lr_mult": ("LR multiplier of the new head", ()),
    "label_smoothing": ("label smoothing epsilon (0 = off)", ()),
    "mixup": ("mixup Beta(alpha, alpha); 0 = off", ("--mixup-alpha",)),
    "mixup_off_epochs": ("last epochs without mixup", ("--mixup-off-epoch",)),
    "balance": ("imbalanced classes: none, sampler (balanced draws) or weights (loss weights)", ()),
    "augment": ("training views: crop (the val view's scale at a random position, the Gluon FashionAI "
                "tutorial's), shift (the same from an image up to 15%% larger: it moves the garment on "
                "square images, where crop cannot) or imagenet (GluonCV's random resized crop, area >= "
                "--min-scale)", ()),
    "crop_ratio": ("share of the short side the val view keeps: resize the short side to data_shape / "
                   "crop_ratio, then crop data_shape (GluonCV's --crop-ratio; ImageNet's 0.875 cuts the "
                   "ends of a garment off that length tasks are about)", ()),
    "min_scale": ("--augment imagenet: smallest crop area share", ()),
    "jitter": ("colour jitter strength (0 = off)", ()),
    "lighting": ("PCA lighting noise (0 = off)", ()),
    "patience": ("early stop after this many epochs without a val mAP gain (0 = off)", ()),
    "freeze_backbone": ("train the new head only (backbone weights fixed)", ()),
    "cache_features": ("with --freeze-backbone: compute the backbone's features once, cache them under "
                       "PREPARED/feature_cache/, and train the head on them (seconds per epoch)", ()),
    "cache_views": ("views cached per training image: none, flip, five-crop, ten-crop", ()),
    "feature_engine": ("what runs the backbone pass of --cache-features: mxnet; openvino (its ONNX export on "
                       "OpenVINO's CPU plugin in FP32, held to MXNet's features on the first batch; one error "
                       "where it cannot run); auto (OpenVINO where it runs, agrees and measures faster on the "
                       "first batch, else MXNet, said). Each engine keeps its own cache file", ()),
    "fine_tune_epochs": ("after the --epochs of head training, unfreeze and fine-tune the whole net for "
                         "this many epochs", ()),
    "fine_tune_lr_mult": ("LR of the fine-tuning epochs = --lr x this", ()),
    "tensorboard": ("also write each epoch's metrics (every number of metrics.csv) as TensorBoard event "
                    "files into RUN/tensorboard/ (tensorboard --logdir OUT); a resume appends to them", ()),
    "seed": ("seed of python, numpy and mxnet", ()),
    "deterministic": ("same seed, same machine: identical metrics.csv and weights (each training image's "
                      "augmentation seeded from seed, epoch and image in any loader process; deterministic "
                      "kernels on GPUs; folder input)", ()),
    "resume": ("continue the run in this folder from its last checkpoint", ()),
}


def add_config_flag(p: argparse.ArgumentParser, field) -> None:
    """One `--field-name` flag for a TrainConfig field; SUPPRESS keeps unset flags out of args."""
    help_text, aliases = TRAIN_HELP[field.name]
    flags = [f"--{field.name.replace('_', '-')}", *aliases]
    kw: dict = dict(dest=field.name, default=argparse.SUPPRESS, help=help_text)
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if field.name == "no_wd":
        kw["action"] = "store_true"
    elif isinstance(default, bool):
        kw["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, list):
        kw.update(type=int, nargs="*")
    elif field.name == "num_gpus":
        kw["type"] = int
    else:
        kw["type"] = type(default)
    if field.name in CHOICES:
        kw["choices"] = CHOICES[field.name]
    kw["help"] += f" (default: {default!r})" if default not in ("", None) else ""
    p.add_argument(*flags, **kw)


def add_train(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("train", help="fine-tune a network on one task's prepared folders",
                       description="fine-tune a network on one task's prepared folders. Precedence: "
                       "flags > -c FILE > --preset > defaults (the Gluon FashionAI tutorial's).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", metavar="FILE", help="YAML or JSON file of options (e.g. a run's config.json)")
    p.add_argument("--preset", choices=("demo",), help="demo: the small from-scratch setting for generated data")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue with settings that differ from the run's (its changes.json "
                        "records from which epoch); without it such a resume is refused, listing them")
    for field in dataclasses.fields(TrainConfig):
        if field.name != "num_classes":
            add_config_flag(p, field)
    return _cmd_train


def train_config(args: argparse.Namespace):
    """TrainConfig from, in rising precedence: defaults, --preset, -c FILE, explicit flags."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values = read_config_file(args.config) if args.config else {}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    merged = {**values, **flags}
    saved = TrainConfig.of_run(flags["resume"]) if flags.get("resume") else None
    if saved is not None and not args.config:  # a resume keeps the run's own settings unless told otherwise
        merged = {**saved.to_dict(), **flags}
    if not merged.get("task") and not merged.get("tasks"):
        raise ValueError("--task (or --tasks for a multi-task net) is required, or a config file with task:")
    if args.preset:
        config = PRESETS[args.preset](merged.pop("task", ""), merged.pop("prepared", "data/prepared"),
                                      merged.pop("out", "runs"), **merged)
    else:
        config = TrainConfig.from_dict(merged)
    if saved is not None:
        check_resume(saved, config, getattr(args, "allow_changes", False))
    return config


def _cmd_train(args: argparse.Namespace) -> int:
    config = train_config(args)
    try:
        run_dir = fit(config)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: every finished epoch is committed (checkpoint.json)
        err.args = (f"the run keeps its last finished epoch; continue it with: fashionai train --resume "
                    f"{shlex.quote(str(config.resume or run_folder(config)))}",)
        raise
    rows = read_metrics(run_dir)
    if config.tasks and rows:
        best = best_row(rows)
        for task in [k.split("/", 1)[1] for k in best if k.startswith("val_map/")]:
            print(f"{task}: val mAP {best[f'val_map/{task}']:.4f} -> {run_dir.parent.parent / task / run_dir.name}")
    if rows:
        best = best_row(rows)
        print(f"{run_dir}: best val mAP {best['val_map']:.4f} (acc {best['val_acc']:.4f}) at epoch {best['epoch']}")
    return 0
