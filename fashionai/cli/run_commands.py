"""Subcommands that use trained runs: evaluate, predict, submit, check-submission, export."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fashionai.cli.common import Handler, add_engine_flag, add_inference_flags, predict_kw, subparser
from fashionai.core.annotations import read_questions
from fashionai.core.io import check_writable
from fashionai.core.runinfo import RunInfo
from fashionai.core.tasks import class_names
from fashionai.data.loaders import IMAGE_EXTENSIONS
from fashionai.inference.export import export_run
from fashionai.inference.predict import question_images
from fashionai.pipeline import auto_choice, evaluate, precision
from fashionai.pipeline.resolve import predict_resolved
from fashionai.pipeline.submit import make_submission
from fashionai.pipeline.tta_choice import DEFAULT_TTA, TTA_CHOICES
from fashionai.scoring import submission
from fashionai.scoring.probs import save_probs
from fashionai.scoring.scores import format_prediction_report, format_submission_report, score_submission
from fashionai.scoring.tables import format_table, save_report, save_table

log = logging.getLogger("fashionai")


# --- evaluate -----------------------------------------------------------------------------------
def add_evaluate(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "evaluate", "official mAP / BasicPrecision of a run or a submission file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", metavar="RUN_DIR", help="trained run to score on its val split")
    what.add_argument("--submission", metavar="FILE", help="submission file to score (needs --answers)")
    p.add_argument("--answers", metavar="FILE", help="ground truth for --submission, label format")
    p.add_argument("--tta", default=DEFAULT_TTA, choices=TTA_CHOICES,
                   help="test-time views for --run (see predict)")
    p.add_argument("--devices", default="auto", help="devices for --run, as predict takes them")
    p.add_argument("-b", "--batch-size", type=int, default=32, help="batch size for --run")
    p.add_argument("--precision", default="fp32", choices=precision.CHOICES,
                   help="precision of the net for --run (default fp32, the reference; auto: what predict "
                        "would run)")
    add_engine_flag(p, "mxnet")
    p.add_argument("--compare-tta", action="store_true",
                   help="--run: views, time per image, relative cost and val mAP of every TTA mode "
                        "(-> RUN/tta_compare.json, .csv)")
    p.add_argument("--compare-precision", action="store_true",
                   help=f"--run: img/s, speed-up, val mAP and agreement with MXNet fp32 of every engine and "
                        f"precision that runs here; also saves auto's choice (the fastest within "
                        f"{precision.MAP_TOLERANCE} val mAP of MXNet fp32 that agrees with it) "
                        f"(-> RUN/precision_compare.json, .csv, RUN/precision.json)")
    return _cmd_evaluate


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.submission:
        if not args.answers:
            raise ValueError("--submission needs --answers FILE (the ground truth in label format)")
        if args.compare_tta or args.compare_precision:
            raise ValueError("--compare-tta / --compare-precision measure a --run, not a submission file")
        print(format_submission_report(score_submission(args.submission, args.answers)))
        return 0
    if args.answers:
        raise ValueError("--answers goes with --submission; --run scores the run's own val split")
    check_writable(args.run)  # its reports go there: say so before predicting, not after
    if args.compare_precision:  # one measurement gives the table and auto's choice: both are saved
        decision = auto_choice.choose_precision(args.run, devices=args.devices, batch_size=args.batch_size,
                                                refresh=True, engine="auto", precision="auto")
        if not decision.table:
            raise ValueError(f"cannot compare precisions on {args.run}: {decision.reason}")
        paths = precision.save_comparison(decision.table, args.run, chosen=decision.choice.label,
                                          reason=decision.reason, batch_size=args.batch_size)
        print(f"engines and precisions on {args.run} val (img/s: batch {args.batch_size} on the first device; "
              "agreement: vs MXNet fp32)")
        print(precision.format_comparison(decision.table))
        print(f"auto: {decision.engine} {decision.precision}: {decision.reason}")
        print(f"-> {paths['json']}, {paths['csv']}, {Path(args.run) / auto_choice.DECISION_FILE}")
    if args.compare_tta:
        rows = evaluate.compare_tta(args.run, devices=args.devices, batch_size=args.batch_size,
                                    precision=args.precision, engine=args.engine)
        paths = save_table(rows, args.run, "tta_compare", precision=args.precision, batch_size=args.batch_size)
        print(f"TTA on {args.run} val, precision {args.precision} (time: whole evaluation incl. decoding)")
        print(format_table(rows, evaluate.TTA_COLUMNS))
        print(f"-> {paths['json']}, {paths['csv']}")
    if args.compare_tta or args.compare_precision:
        return 0
    report = evaluate.evaluate_run(args.run, tta=args.tta, devices=args.devices, batch_size=args.batch_size,
                                   precision=args.precision, engine=args.engine)
    stem = "eval_val" if args.tta == "none" else f"eval_val_{args.tta}"
    stem += "" if args.precision == "fp32" else f"_{args.precision}"
    stem += "" if args.engine == "mxnet" else f"_{args.engine}"
    save_report(report, args.run, stem)
    print(f"{report['task']} val, tta {args.tta}, {report['engine']} {report['precision']}: official AP "
          "(FashionAI leaderboard metric)")
    print(format_prediction_report(report))
    return 0


# --- predict ------------------------------------------------------------------------------------
def add_predict(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "predict", "class probabilities of a trained run for images or questions")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory (fashionai train)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", nargs="+", metavar="IMG", help="image files, or folders of .jpg/.jpeg/.png images")
    what.add_argument("--questions", metavar="FILE", help="question.csv: predict the run's task's rows")
    p.add_argument("--out", metavar="FILE", help="write .npy (+ .json image list) or .csv (submission format)")
    add_inference_flags(p)
    return _cmd_predict


def image_files(given: list[str]) -> list[Path]:
    """The images `--images` names: files as given, and the .jpg/.jpeg/.png files directly inside a
    folder (sorted); a folder without any is an error rather than an empty prediction."""
    files: list[Path] = []
    for path in map(Path, given):
        if not path.is_dir():
            files.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not inside:
            raise ValueError(f"{path} is a folder with no {'/'.join(IMAGE_EXTENSIONS)} images in it (sub-folders "
                             "are not searched); give image files, or a folder that holds them")
        files += inside
    return files


def _cmd_predict(args: argparse.Namespace) -> int:
    task = RunInfo.read(args.run).task
    if args.questions:
        names, files = question_images(args.questions, task, args.images_root)
    else:
        files = image_files(args.images)
        names = [str(f) for f in files]
    probs = predict_resolved(args.run, files, **predict_kw(args))
    if args.out and args.out.endswith(".csv"):
        submission.write_prob_csv(args.out, task, names, probs)
    elif args.out:
        save_probs(args.out, task, names, probs, run=args.run, **predict_kw(args))
    classes = class_names(task)
    for name, row in list(zip(names, probs))[:20]:
        print(f"{name}  {classes[int(row.argmax())]}  {row.max():.4f}")
    print(f"{len(names)} images, {task}, tta {args.tta}" + (f" -> {args.out}" if args.out else ""))
    return 0


# --- submit -------------------------------------------------------------------------------------
def add_submit(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "submit", "validated leaderboard submission from trained runs")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR", help="trained runs (any tasks)")
    p.add_argument("--from-probs", nargs="+", default=[], metavar="NPY", help="saved probabilities to merge")
    p.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="one per run, then one per --from-probs file (default: equal)")
    p.add_argument("--questions", required=True, metavar="FILE", help="question.csv")
    p.add_argument("--out", default="submissions", metavar="DIR", help="gets submission.csv + <task>.csv")
    p.add_argument("--save-probs", metavar="DIR", help="also save each run's probabilities here (.npy + .json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier submission in --out (only a folder `fashionai submit` made)")
    add_inference_flags(p)
    return _cmd_submit


def _cmd_submit(args: argparse.Namespace) -> int:
    if not args.runs and not args.from_probs:
        raise ValueError("give --runs RUN_DIR ... and/or --from-probs FILE.npy ...")
    members = make_submission(
        args.questions, args.out, runs=args.runs, prob_files=args.from_probs, weights=args.weights,
        images_root=args.images_root, save_probs_dir=args.save_probs, overwrite=args.overwrite, **predict_kw(args),
    )
    for task, count in members.items():
        print(f"{task:24s} {count} member(s)")
    print(f"{Path(args.out) / 'submission.csv'}: validated against {args.questions}, tta {args.tta}")
    return 0


# --- check-submission ---------------------------------------------------------------------------
def add_check_submission(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "check-submission", "check a submission file the way the leaderboard would")
    p.add_argument("file", help="submission file")
    p.add_argument("--questions", required=True, metavar="FILE", help="the question.csv it answers")
    return _cmd_check_submission


def _cmd_check_submission(args: argparse.Namespace) -> int:
    submission.check_submission(args.file, args.questions)  # SubmissionError (a ValueError): exit status 2
    tasks = dict.fromkeys(q.task for q in read_questions(args.questions))
    print(f"{args.file}: OK, {len(Path(args.file).read_text().splitlines())} rows, {len(tasks)} task(s): {', '.join(tasks)}")
    return 0


# --- export -------------------------------------------------------------------------------------
def add_export(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "export", "a run's net (with softmax) as MXNet symbol + params, optionally ONNX, "
                  "plus model.json (classes, input, preprocessing)")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory (fashionai train)")
    p.add_argument("--which", default="best", choices=("best", "last"), help="weights of the run to export")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export)")
    p.add_argument("--onnx", action="store_true", help='also write <task>.onnx (needs: pip install -c constraints.txt -e ".[onnx]")')
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="batch of the ONNX input; 0 = any batch (dynamic). The symbol takes any batch")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out (only an export)")
    return _cmd_export


def _cmd_export(args: argparse.Namespace) -> int:
    try:
        files = export_run(args.run, args.out, which=args.which, onnx=args.onnx, batch_size=args.batch_size or None,
                           overwrite=args.overwrite)
    except ImportError as err:  # the optional onnx package: the message says what to install
        log.error("%s", err)
        return 2
    for path in files.values():
        print(path)
    return 0
