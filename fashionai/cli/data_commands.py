"""Subcommands that make and pack data: demo-data, prepare, pack."""

from __future__ import annotations

import argparse

from fashionai.cli.common import Handler, subparser
from fashionai.core.tasks import expand_tasks
from fashionai.demodata.generate import DEFAULT_STYLE, STYLES, make_demo_data
from fashionai.data.pack import DEFAULT_QUALITY, DEFAULT_SHORT_SIDE, pack
from fashionai.data.prepare import format_summary, prepare


# --- demo-data ----------------------------------------------------------------------------------
def add_demo_data(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "demo-data", "write a small learnable dataset in the FashionAI layout")
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
    p.add_argument("--style", choices=sorted(STYLES), default=DEFAULT_STYLE,
                   help="shop: square shop-like photos, small design details, classes 3:1 uneven, 3%% wrong "
                        "training labels; classic: large centred features, balanced, clean labels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo data root")
    return _cmd_demo_data


def _cmd_demo_data(args: argparse.Namespace) -> int:
    make_demo_data(
        args.out, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
        warmup_per_class=args.warmup_per_class, min_size=args.min_size, max_size=args.max_size,
        maybe_fraction=args.maybe_fraction, seed=args.seed, tasks=expand_tasks(args.tasks),
        quality=args.quality, overwrite=args.overwrite, style=args.style,
    )  # logs its one-line summary
    return 0


# --- prepare ------------------------------------------------------------------------------------
def add_prepare(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "prepare", "annotation CSVs -> per-task train/val class folders + manifest")
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
    summary = prepare(
        args.data, args.out, seed=args.seed, val_fraction=args.val_fraction, folds=args.folds,
        fold=args.fold, warmup=args.warmup, strict=args.strict, overwrite=args.overwrite,
        workers=args.workers, tasks=args.tasks,
    )
    print(format_summary(summary))
    return 0


# --- pack ---------------------------------------------------------------------------------------
def add_pack(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "pack", "prepared class folders -> RecordIO packs (<task>/{train,val}.rec) for "
                  "`fashionai train --input rec`")
    p.add_argument("--prepared", default="data/prepared", help="prepared root (fashionai prepare --out)")
    p.add_argument("--tasks", default="all", help="comma list of tasks, or a group: length, design, all "
                   "(a group packs the tasks the prepared root has)")
    p.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE, metavar="N",
                   help="resize each image's short side to N px once; at least the eval resize of the "
                        "training size (data_shape / crop_ratio: 224 for 224 at the default 1.0, 256 at 0.875)")
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality of the packed images")
    p.add_argument("-j", "--threads", type=int, help="encoding threads (default: one per core)")
    return _cmd_pack


def _cmd_pack(args: argparse.Namespace) -> int:
    metas = pack(args.prepared, args.tasks, short_side=args.short_side, quality=args.quality,
                 threads=args.threads)
    for meta in metas:
        print(f"{meta['task']}/{meta['split']}: {meta['count']} images, {meta['rec_bytes'] / 1e6:.1f} MB")
    return 0
