"""The `fashionai` command line: the only place that reads argv or configures logging.

Each subcommand has a `_add_<name>` (its flags, a view of the stage's config) and a `_cmd_<name>`
(calls the stage's library functions). Stage modules are imported inside the handlers so that
`fashionai.runtime.configure_threads` runs before MXNet is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence

from fashionai import __version__
from fashionai.runtime import configure_threads

log = logging.getLogger("fashionai")

Handler = Callable[[argparse.Namespace], int]


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help (unless the help says it already, or there is none) and keeps
    description line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, [], False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _subparser(sub: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, formatter_class=_Formatter)


# --- demo-data ----------------------------------------------------------------------------------
def _add_demo_data(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "demo-data", "write a small learnable dataset in the FashionAI layout")
    p.add_argument("out", help="output data root (gets base/, web/, rank/)")
    p.add_argument("--train-per-class", type=int, default=80, help="base/ images per class")
    p.add_argument("--test-per-class", type=int, default=8, help="rank/ question images per class")
    p.add_argument("--warmup-per-class", type=int, default=10, help="web/ warm-up images per skirt class")
    p.add_argument("--min-size", type=int, default=160, help="smallest long side of an image, px")
    p.add_argument("--max-size", type=int, default=256, help="largest long side of an image, px")
    p.add_argument("--maybe-fraction", type=float, default=0.05, help="share of rows with an 'm' class")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--seed", type=int, default=0, help="same seed and sizes = byte-identical files")
    p.add_argument("--tasks", default="all", help="comma list of tasks, or a group: length, design, all")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo data root")
    return _cmd_demo_data


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from fashionai.demodata import make_demo_data
    from fashionai.tasks import expand_tasks

    make_demo_data(
        args.out, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
        warmup_per_class=args.warmup_per_class, min_size=args.min_size, max_size=args.max_size,
        maybe_fraction=args.maybe_fraction, seed=args.seed, tasks=expand_tasks(args.tasks),
        quality=args.quality, overwrite=args.overwrite,
    )  # logs its one-line summary
    return 0


# --- prepare ------------------------------------------------------------------------------------
def _add_prepare(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "prepare", "annotation CSVs -> per-task train/val class folders + manifest")
    p.add_argument("--data", default="data", help="data root in the FashionAI layout")
    p.add_argument("--out", default="data/prepared", help="prepared root to write")
    p.add_argument("--seed", type=int, default=0, help="split seed (same inputs + seed = same split)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of each class's base images in val")
    p.add_argument("--folds", type=int, metavar="K", help="k-fold split instead of --val-fraction")
    p.add_argument("--fold", type=int, metavar="I", help="with --folds: which fold (0..K-1) is val")
    p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="add the web/ warm-up rows (train only)")
    p.add_argument("--strict", action="store_true", help="fail on any bad row, writing nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing prepared root")
    p.add_argument("-j", "--workers", type=int, help="parallel image checks (None: one per core)")
    p.add_argument("--tasks", default="all", help="comma list of tasks, or a group: length, design, all")
    return _cmd_prepare


def _cmd_prepare(args: argparse.Namespace) -> int:
    from fashionai.prepare import format_summary, prepare

    summary = prepare(
        args.data, args.out, seed=args.seed, val_fraction=args.val_fraction, folds=args.folds,
        fold=args.fold, warmup=args.warmup, strict=args.strict, overwrite=args.overwrite,
        workers=args.workers, tasks=args.tasks,
    )
    print(format_summary(summary))
    return 0


# --- pack ---------------------------------------------------------------------------------------
def _add_pack(sub: argparse._SubParsersAction) -> Handler:
    from fashionai.pack import DEFAULT_QUALITY, DEFAULT_SHORT_SIDE

    p = _subparser(sub, "pack", "prepared class folders -> RecordIO packs (<task>/{train,val}.rec) for "
                   "`fashionai train --input rec`")
    p.add_argument("--prepared", default="data/prepared", help="prepared root (fashionai prepare --out)")
    p.add_argument("--tasks", default="all", help="comma list of tasks, or a group: length, design, all "
                   "(a group packs the tasks the prepared root has)")
    p.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE, metavar="N",
                   help="resize each image's short side to N px once; at least the eval resize of the "
                        "training size (data_shape / 0.875: 256 for 224, 384 for 336)")
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality of the packed images")
    p.add_argument("-j", "--threads", type=int, help="encoding threads (default: one per core)")
    return _cmd_pack


def _cmd_pack(args: argparse.Namespace) -> int:
    from fashionai.pack import pack

    metas = pack(args.prepared, args.tasks, short_side=args.short_side, quality=args.quality,
                 threads=args.threads)
    for meta in metas:
        print(f"{meta['task']}/{meta['split']}: {meta['count']} images, {meta['rec_bytes'] / 1e6:.1f} MB")
    return 0


# --- train --------------------------------------------------------------------------------------
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
    "devices": ("auto, cpu, cpu:N, gpu, gpu:0,1", ()),
    "dtype": ("training precision: float32, bfloat16 (AMP on CPUs with BF16 kernels) or float16 (AMP on "
              "GPUs); refused where the hardware cannot run it", ()),
    "num_gpus": ("tutorial flag: 0 = CPU, N = gpu:0..N-1 (overrides --devices)", ()),
    "kvstore": ("device or local (one process, several devices); dist_sync or dist_device_sync "
                "under `fashionai launch` (several processes or hosts)", ()),
    "workers": ("data loader worker processes (--input folder; 0 = in the training process) or decoding "
                "threads (--input rec; MXNet uses at most half the cores); -1 = auto: min(4, cores) "
                "processes, or one thread per core",
                ("-j", "--num-workers", "--num-data-workers")),
    "input": ("folder: decode the prepared JPEG folders in Python workers (the tutorial's way); rec: read the "
              "RecordIO packs of `fashionai pack` with MXNet's C++ ImageRecordIter (decoding and "
              "augmentation in native threads: the fast path for GPU hosts; no --balance sampler)", ()),
    "epochs": ("training epochs", ("--num-epochs",)),
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
    "min_scale": ("smallest random-resized-crop area share", ()),
    "jitter": ("colour jitter strength (0 = off)", ()),
    "lighting": ("PCA lighting noise (0 = off)", ()),
    "patience": ("early stop after this many epochs without a val mAP gain (0 = off)", ()),
    "freeze_backbone": ("train the new head only (backbone weights fixed)", ()),
    "cache_features": ("with --freeze-backbone: compute the backbone's features once, cache them under "
                       "PREPARED/feature_cache/, and train the head on them (seconds per epoch)", ()),
    "cache_views": ("views cached per training image: none, flip, five-crop, ten-crop", ()),
    "fine_tune_epochs": ("after the --epochs of head training, unfreeze and fine-tune the whole net for "
                         "this many epochs", ()),
    "fine_tune_lr_mult": ("LR of the fine-tuning epochs = --lr x this", ()),
    "seed": ("seed of python, numpy and mxnet", ()),
    "resume": ("continue the run in this folder from its last checkpoint", ()),
}


def _add_config_flag(p: argparse.ArgumentParser, field) -> None:
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
    from fashionai.train import CHOICES

    if field.name in CHOICES:
        kw["choices"] = CHOICES[field.name]
    kw["help"] += f" (default: {default!r})" if default not in ("", None) else ""
    p.add_argument(*flags, **kw)


def _add_train(sub: argparse._SubParsersAction) -> Handler:
    from fashionai.train import TrainConfig

    p = sub.add_parser("train", help="fine-tune a network on one task's prepared folders",
                       description="fine-tune a network on one task's prepared folders. Precedence: "
                       "flags > -c FILE > --preset > defaults (the Gluon FashionAI tutorial's).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", metavar="FILE", help="YAML or JSON file of options (e.g. a run's config.json)")
    p.add_argument("--preset", choices=("demo",), help="demo: the small from-scratch setting for generated data")
    for field in dataclasses.fields(TrainConfig):
        if field.name != "num_classes":
            _add_config_flag(p, field)
    return _cmd_train


def train_config(args: argparse.Namespace):
    """TrainConfig from, in rising precedence: defaults, --preset, -c FILE, explicit flags."""
    from fashionai.train import PRESETS, TrainConfig, read_config_file

    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values = read_config_file(args.config) if args.config else {}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    merged = {**values, **flags}
    if flags.get("resume") and not args.config:  # a resume keeps the run's own settings unless told otherwise
        merged = {**TrainConfig.load(f"{flags['resume']}/config.json").to_dict(), **flags}
    if not merged.get("task") and not merged.get("tasks"):
        raise ValueError("--task (or --tasks for a multi-task net) is required, or a config file with task:")
    if args.preset:
        return PRESETS[args.preset](merged.pop("task", ""), merged.pop("prepared", "data/prepared"),
                                    merged.pop("out", "runs"), **merged)
    return TrainConfig.from_dict(merged)


def _cmd_train(args: argparse.Namespace) -> int:
    from fashionai.train import fit, read_metrics

    config = train_config(args)
    run_dir = fit(config)
    rows = read_metrics(run_dir)
    if config.tasks and rows:
        best = max(rows, key=lambda r: (r["val_map"] == r["val_map"], r["val_map"]))
        for task in [k.split("/", 1)[1] for k in best if k.startswith("val_map/")]:
            print(f"{task}: val mAP {best[f'val_map/{task}']:.4f} -> {run_dir.parent.parent / task / run_dir.name}")
    if rows:
        best = max(rows, key=lambda r: (r["val_map"] == r["val_map"], r["val_map"]))
        print(f"{run_dir}: best val mAP {best['val_map']:.4f} (acc {best['val_acc']:.4f}) at epoch {best['epoch']}")
    return 0


# --- evaluate -----------------------------------------------------------------------------------
def _add_evaluate(sub: argparse._SubParsersAction) -> Handler:
    from fashionai.precision import CHOICES, MAP_TOLERANCE

    p = _subparser(sub, "evaluate", "official mAP / BasicPrecision of a run or a submission file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", metavar="RUN_DIR", help="trained run to score on its val split")
    what.add_argument("--submission", metavar="FILE", help="submission file to score (needs --answers)")
    p.add_argument("--answers", metavar="FILE", help="ground truth for --submission, label format")
    p.add_argument("--tta", default="none", help="test-time augmentation for --run (see predict)")
    p.add_argument("--devices", default="auto", help="devices for --run, as predict takes them")
    p.add_argument("-b", "--batch-size", type=int, default=32, help="batch size for --run")
    p.add_argument("--precision", default="fp32", choices=CHOICES,
                   help="precision of the net for --run (default fp32, the reference; auto: what predict "
                        "would run)")
    p.add_argument("--compare-tta", action="store_true",
                   help="--run: views, time per image, relative cost and val mAP of every TTA mode "
                        "(-> RUN/tta_compare.json, .csv)")
    p.add_argument("--compare-precision", action="store_true",
                   help=f"--run: img/s, speed-up, val mAP and agreement with fp32 of every precision; also "
                        f"saves auto's choice (fastest within {MAP_TOLERANCE} val mAP of fp32) "
                        f"(-> RUN/precision_compare.json, .csv, RUN/precision.json)")
    return _cmd_evaluate


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fashionai import evaluate, precision

    if args.submission:
        if not args.answers:
            raise ValueError("--submission needs --answers FILE (the ground truth in label format)")
        if args.compare_tta or args.compare_precision:
            raise ValueError("--compare-tta / --compare-precision measure a --run, not a submission file")
        print(evaluate.format_submission_report(evaluate.score_submission(args.submission, args.answers)))
        return 0
    if args.answers:
        raise ValueError("--answers goes with --submission; --run scores the run's own val split")
    if args.compare_precision:  # one measurement gives the table and auto's choice: both are saved
        decision = precision.choose_precision(args.run, devices=args.devices, batch_size=args.batch_size,
                                              refresh=True)
        if not decision.table:
            raise ValueError(f"cannot compare precisions on {args.run}: {decision.reason}")
        paths = precision.save_comparison(decision.table, args.run, chosen=decision.precision,
                                          reason=decision.reason, batch_size=args.batch_size)
        print(f"precisions on {args.run} val (img/s: batch {args.batch_size} on the first device; "
              "agreement: vs fp32)")
        print(precision.format_comparison(decision.table))
        print(f"auto: {decision.precision}: {decision.reason}")
        print(f"-> {paths['json']}, {paths['csv']}, {Path(args.run) / precision.DECISION_FILE}")
    if args.compare_tta:
        rows = evaluate.compare_tta(args.run, devices=args.devices, batch_size=args.batch_size,
                                    precision=args.precision)
        paths = evaluate.save_table(rows, args.run, "tta_compare", precision=args.precision,
                                    batch_size=args.batch_size)
        print(f"TTA on {args.run} val, precision {args.precision} (time: whole evaluation incl. decoding)")
        print(evaluate.format_table(rows, evaluate.TTA_COLUMNS))
        print(f"-> {paths['json']}, {paths['csv']}")
    if args.compare_tta or args.compare_precision:
        return 0
    report = evaluate.evaluate_run(args.run, tta=args.tta, devices=args.devices, batch_size=args.batch_size,
                                   precision=args.precision)
    stem = "eval_val" if args.tta == "none" else f"eval_val_{args.tta}"
    stem += "" if args.precision == "fp32" else f"_{args.precision}"
    evaluate.save_report(report, args.run, stem)
    print(f"{report['task']} val, tta {args.tta}, precision {args.precision}: official AP "
          "(FashionAI leaderboard metric)")
    print(evaluate.format_prediction_report(report))
    return 0


# --- predict ------------------------------------------------------------------------------------
def _add_inference_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by predict and submit: weights file, precision, TTA, devices, batch size, image root."""
    from fashionai.precision import CHOICES, MAP_TOLERANCE
    from fashionai.tta import REDUCTIONS, TTA_MODES

    p.add_argument("--which", default="best", choices=("best", "last"), help="weights of the run to use")
    p.add_argument("--precision", default="auto", choices=CHOICES,
                   help="fp32; fused (oneDNN-fused fp32 graph, CPU); bf16 (CPUs with BF16 kernels); int8 "
                        "(quantized, calibrated on the run's train images, cached in RUN/quantized); auto: the "
                        f"fastest whose val mAP is within {MAP_TOLERANCE} of fp32, measured once and cached in "
                        "RUN/precision.json (default: auto)")
    p.add_argument("--tta", default="ten-crop", choices=tuple(TTA_MODES), help="test-time views per image")
    p.add_argument("--tta-scales", type=int, nargs="+", metavar="S",
                   help="short-side sizes to take the views at (default: data_shape / 0.875)")
    p.add_argument("--tta-reduce", default="mean", choices=REDUCTIONS, help="how views are combined")
    p.add_argument("--devices", default="auto", help="auto, cpu, or GPUs as training takes them")
    p.add_argument("-b", "--batch-size", type=int, default=32, help="network inputs (views) per device per pass")
    p.add_argument("--images-root", metavar="DIR",
                   help="folder question image paths are relative to (default: the question file's ../)")


def _predict_kw(args: argparse.Namespace) -> dict:
    return dict(tta=args.tta, scales=args.tta_scales, reduce=args.tta_reduce, devices=args.devices,
                batch_size=args.batch_size, which=args.which, precision=args.precision)


def _add_predict(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "predict", "class probabilities of a trained run for images or questions")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory (fashionai train)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", nargs="+", metavar="IMG", help="image files")
    what.add_argument("--questions", metavar="FILE", help="question.csv: predict the run's task's rows")
    p.add_argument("--out", metavar="FILE", help="write .npy (+ .json image list) or .csv (submission format)")
    _add_inference_flags(p)
    return _cmd_predict


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fashionai import predict, submission
    from fashionai.tasks import class_names

    task = predict.read_run_config(args.run)["task"]
    if args.questions:
        names, files = predict.question_images(args.questions, task, args.images_root)
    else:
        names, files = list(args.images), [Path(i) for i in args.images]
    probs = predict.predict_run(args.run, files, **_predict_kw(args))
    if args.out and args.out.endswith(".csv"):
        submission.write_prob_csv(args.out, task, names, probs)
    elif args.out:
        submission.save_probs(args.out, task, names, probs, run=args.run, **_predict_kw(args))
    classes = class_names(task)
    for name, row in list(zip(names, probs))[:20]:
        print(f"{name}  {classes[int(row.argmax())]}  {row.max():.4f}")
    print(f"{len(names)} images, {task}, tta {args.tta}" + (f" -> {args.out}" if args.out else ""))
    return 0


# --- submit -------------------------------------------------------------------------------------
def _add_submit(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "submit", "validated leaderboard submission from trained runs")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR", help="trained runs (any tasks)")
    p.add_argument("--from-probs", nargs="+", default=[], metavar="NPY", help="saved probabilities to merge")
    p.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="one per run, then one per --from-probs file (default: equal)")
    p.add_argument("--questions", required=True, metavar="FILE", help="question.csv")
    p.add_argument("--out", default="submissions", metavar="DIR", help="gets submission.csv + <task>.csv")
    p.add_argument("--save-probs", metavar="DIR", help="also save each run's probabilities here (.npy + .json)")
    _add_inference_flags(p)
    return _cmd_submit


def _cmd_submit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fashionai.submission import make_submission

    if not args.runs and not args.from_probs:
        raise ValueError("give --runs RUN_DIR ... and/or --from-probs FILE.npy ...")
    members = make_submission(
        args.questions, args.out, runs=args.runs, prob_files=args.from_probs, weights=args.weights,
        images_root=args.images_root, save_probs_dir=args.save_probs, **_predict_kw(args),
    )
    for task, count in members.items():
        print(f"{task:24s} {count} member(s)")
    print(f"{Path(args.out) / 'submission.csv'}: validated against {args.questions}, tta {args.tta}")
    return 0


# --- check-submission ---------------------------------------------------------------------------
def _add_check_submission(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "check-submission", "check a submission file the way the leaderboard would")
    p.add_argument("file", help="submission file")
    p.add_argument("--questions", required=True, metavar="FILE", help="the question.csv it answers")
    return _cmd_check_submission


def _cmd_check_submission(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fashionai.annotations import read_questions
    from fashionai.submission import check_submission

    check_submission(args.file, args.questions)  # SubmissionError (a ValueError): exit status 2
    tasks = dict.fromkeys(q.task for q in read_questions(args.questions))
    print(f"{args.file}: OK, {len(Path(args.file).read_text().splitlines())} rows, {len(tasks)} task(s): {', '.join(tasks)}")
    return 0


# --- export -------------------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "export", "a run's net (with softmax) as MXNet symbol + params, optionally ONNX, "
                   "plus model.json (classes, input, preprocessing)")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory (fashionai train)")
    p.add_argument("--which", default="best", choices=("best", "last"), help="weights of the run to export")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export)")
    p.add_argument("--onnx", action="store_true", help='also write <task>.onnx (needs: pip install -c constraints.txt -e ".[onnx]")')
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="batch of the ONNX input; 0 = any batch (dynamic). The symbol takes any batch")
    return _cmd_export


def _cmd_export(args: argparse.Namespace) -> int:
    from fashionai.export import export_run

    try:
        files = export_run(args.run, args.out, which=args.which, onnx=args.onnx, batch_size=args.batch_size or None)
    except ImportError as err:  # the optional onnx package: the message says what to install
        log.error("%s", err)
        return 2
    for path in files.values():
        print(path)
    return 0


# --- launch -------------------------------------------------------------------------------------
def _add_launch(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "launch", "run a command as a distributed job with MXNet's launcher (ps-lite)")
    p.add_argument("-n", "--num-workers", type=int, required=True, help="worker processes")
    p.add_argument("-s", "--num-servers", type=int, help="parameter servers (default: as many as workers)")
    p.add_argument("--launcher", default="local", choices=("local", "ssh", "mpi", "sge", "yarn"),
                   help="local: every process on this host; ssh/mpi: the hosts of -H")
    p.add_argument("-H", "--hostfile", help="hosts for ssh/mpi, one per line")
    p.add_argument("--sync-dst-dir", help="ssh: copy the working folder to this folder on every host")
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="ssh/mpi: pass this environment variable to every process (repeatable)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="what every worker runs, e.g. -- fashionai train --kvstore dist_sync ...")
    return _cmd_launch


def _cmd_launch(args: argparse.Namespace) -> int:
    from fashionai.distributed import launch

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    launch(job, num_workers=args.num_workers, num_servers=args.num_servers, launcher=args.launcher,
           hostfile=args.hostfile, sync_dst_dir=args.sync_dst_dir, env=args.env)
    return 0


# --- demo ---------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> Handler:
    p = _subparser(sub, "demo", "the whole pipeline end to end on generated demo data (no download)")
    p.add_argument("--workdir", default="demo", help="where data, prepared, runs and submissions go (replaced)")
    p.add_argument("--tasks", default="all", help="comma list of tasks, or a group: length, design, all")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the split and training")
    p.add_argument("--train-per-class", type=int, default=80, help="demo base/ images per class")
    p.add_argument("--test-per-class", type=int, default=8, help="demo test questions per class")
    p.add_argument("--tta", default="ten-crop", help="test-time views of the submission (see submit)")
    p.add_argument("--epochs", type=int, help="override the demo preset's epochs")
    p.add_argument("--model", help="override the preset's model, e.g. ResNet50_v2 (with --pretrained cache)")
    p.add_argument("--pretrained", help="override the preset's 'none': cache or a params file")
    p.add_argument("--data-shape", type=int, help="override the preset's input size")
    p.add_argument("--devices", help="override the preset's devices (auto)")
    return _cmd_demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from fashionai.demo import format_demo, run_demo

    overrides = {k: getattr(args, k) for k in ("epochs", "model", "pretrained", "data_shape", "devices")
                 if getattr(args, k) is not None}
    result = run_demo(args.workdir, tasks=args.tasks, seed=args.seed, train_per_class=args.train_per_class,
                      test_per_class=args.test_per_class, tta=args.tta, train_overrides=overrides)
    print(format_demo(result))
    return 0


# --- main ---------------------------------------------------------------------------------------
COMMANDS = (
    _add_demo_data, _add_prepare, _add_pack, _add_train, _add_evaluate, _add_predict, _add_submit,
    _add_check_submission, _add_export, _add_launch, _add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each subcommand's handler is stored as `args.handler`."""
    parser = argparse.ArgumentParser(
        prog="fashionai", description="FashionAI attribute recognition pipeline (MXNet Gluon)",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"fashionai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        handler = add(sub)
        sub.choices[list(sub.choices)[-1]].set_defaults(handler=handler)
    return parser


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr in one format; run directories add their own file handler."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    threads = configure_threads()
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    log.info("threads: %s (set before MXNet is imported; export OMP_NUM_THREADS to change)",
             ", ".join(f"{k}={v}" for k, v in threads.items()))
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        log.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
