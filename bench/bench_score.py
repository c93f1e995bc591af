"""The score benchmark: the project's defaults (and levers tried for them) against the 2018 Gluon
FashionAI tutorial's recipe, as paired differences over seeds.

    .venv/bin/python bench/bench_score.py [--tasks skirt_length_labels ...] [--seeds 0 1 2 3 4]
        [--datasets shop classic] [--recipes tutorial demo demo+moving-crop ...] [--epochs N]

Every recipe gets the same prepared data and the demo preset's model (mobilenet0.25 from scratch at
64 px, batch 32, NAG lr 0.1, 1 warm-up epoch, cosine), one OpenMP thread and MXNet's naive engine,
and is scored with the official metric on the test questions, as the leaderboard would score them:
- tutorial: the 2018 recipe at the demo budget (TUTORIAL_EPOCHS, 25 epochs) on the project's
  loaders: short side resized to 64 / 0.875, a fixed-size random crop and a mirror (no colour
  jitter), one net per task, the last epoch's weights, ten-crop, FP32; the project's loaders
  (images kept in memory, numpy augmentation) make its epochs faster than the tutorial's own code,
  so the time ratio is against a faster baseline than the one the 2018 code would set;
- demo: what `fashionai demo` trains and submits (the demo preset, one net per task group) with
  `fashionai submit`'s defaults;
- levers (RECIPES): the demo with one thing changed.
Two generated datasets (`fashionai demo-data`): `shop` (the demo's style: square shop-like photos,
small design details, 3:1 uneven classes, 3% wrong training labels) and `classic` (large centred
features, balanced, clean), 80 training and 24 test images per class (mean: 8 left a task's AP to
~50 test images, and a seed moved it by up to 0.36), seed 0. The seed of a
pair is the training seed (data fixed). A finished run with the same settings under the work folder
is reused (one training serves two recipes where they agree). Prints, per dataset, each recipe's
test mAP (mean +- spread over seeds) and wall time, then every recipe against the baseline: the
paired difference per task and overall (per seed, the mean over tasks) with its standard error,
wins, and the time ratio; the target: overall gain >= +0.10, more than 2 standard errors, at no
more than 1.5x the baseline's wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DATASETS = {
    "shop": dict(style="shop", seed=0, train_per_class=80, test_per_class=24),
    "classic": dict(style="classic", seed=0, train_per_class=80, test_per_class=24),
}
TASKS = ("skirt_length_labels", "coat_length_labels", "collar_design_labels", "neckline_design_labels")
TUTORIAL_TRAIN = dict(augment="crop", crop_ratio=0.875, jitter=0.0, lighting=0.0)
TUTORIAL_EPOCHS = 25  # the tutorial's recipe "switched only to the demo budget" (issue 27)
TUTORIAL_PREDICT = dict(which="last", tta="ten-crop", precision="fp32")


NOTHING: Mapping = MappingProxyType({})


LAYOUTS = ("task", "groups", "all")  # one net per task; per task group (as `fashionai demo`); one for all


class Recipe(NamedTuple):
    """A training and prediction recipe: changes to the demo preset (`design`: more for the design
    tasks only), the submit settings (None: `fashionai submit`'s defaults), and the nets' layout per
    ensemble member (LAYOUTS: `task` one net per task; `groups` one shared net, a head per task, per
    task group of two or more tasks, as `fashionai demo` trains; `all` one shared net for every
    task, `--tasks`). Member k trains on its own seed; the submission averages a task's members.
    (A NamedTuple: the tests load this script without registering it as a module, which a
    dataclass needs.)"""

    train: Mapping = NOTHING
    predict: Mapping | None = None
    design: Mapping = NOTHING
    nets: tuple[str, ...] = ("task",)  # a layout per ensemble member
    epochs_scale: float | None = None  # x TUTORIAL_EPOCHS; None: the demo preset's own epochs


RECIPES = {
    "tutorial": Recipe(TUTORIAL_TRAIN, TUTORIAL_PREDICT, epochs_scale=1.0),
    # what `fashionai demo` trains: one net per task group (length, design), the demo preset
    "demo": Recipe(nets=("groups",)),
    # the demo with one thing changed
    "defaults": Recipe(),  # one net per task (`fashionai train --preset demo --task T`)
    "shared": Recipe(nets=("all",)),  # one net for every task
    "demo-x1.2": Recipe(nets=("groups",), epochs_scale=1.2),  # 30 epochs
    # crops that move (and zoom) the garment on square images: area >= 60%, aspect 3/4-4/3
    "demo+moving-crop": Recipe(dict(augment="imagenet"), nets=("groups",)),
    "demo+moving-crop-x1.12": Recipe(dict(augment="imagenet"), nets=("groups",), epochs_scale=1.12),
    "demo+moving-crop-x1.2": Recipe(dict(augment="imagenet"), nets=("groups",), epochs_scale=1.2),
    "demo+moving-crop-x1.4": Recipe(dict(augment="imagenet"), nets=("groups",), epochs_scale=1.4),
    "demo+shift": Recipe(dict(augment="shift"), nets=("groups",)),
    "demo+smoothing": Recipe(dict(label_smoothing=0.1), nets=("groups",)),
    "design-96": Recipe(design=dict(data_shape=96), nets=("groups",)),  # the design tasks' details at 96 px
    # two nets on two seeds, averaged: per task; per task group; a group net and a net per task
    "ensemble": Recipe(nets=("task", "task")),
    "demo-ensemble": Recipe(nets=("groups", "groups")),
    "groups+task": Recipe(nets=("groups", "task")),
    "demo-ensemble-x0.68": Recipe(dict(augment="imagenet"), nets=("groups", "groups"), epochs_scale=0.68),
    "defaults-x2": Recipe(epochs_scale=2.0),
}
MEMBER_SEED_STEP = 1000  # an ensemble member's seed: the pair's seed + k x this (never another pair's)


def describe(recipe: Recipe) -> str:
    """A recipe in words: what it changes from the demo preset and submit's defaults."""
    parts = [f"train {dict(recipe.train)}" if recipe.train else "",
             f"design tasks {dict(recipe.design)}" if recipe.design else "",
             f"nets per {' + '.join(recipe.nets)}" if recipe.nets != ("task",) else "",
             f"{recipe.epochs_scale:g}x the tutorial's epochs" if recipe.epochs_scale is not None else "",
             f"the average of {len(recipe.nets)} nets per task (seeds)" if len(recipe.nets) > 1 else "",
             f"predict {dict(recipe.predict)}" if recipe.predict is not None else ""]
    return "; ".join(p for p in parts if p) or "the defaults"


def dataset(root: Path, name: str, tasks: list[str]) -> tuple[Path, Path]:
    """(data root, prepared root) of a generated dataset, made once under `root` and reused."""
    from fashionai.demodata.generate import make_demo_data
    from fashionai.data.prepare import prepare

    data, prepared = root / f"data-{name}", root / f"prepared-{name}"
    if not (prepared / ".fashionai-prepared").is_file():
        make_demo_data(data, tasks=tasks, overwrite=True, **DATASETS[name])
        prepare(data, prepared, seed=0, val_fraction=0.2, tasks=tasks, overwrite=True)
    return data, prepared


def default_predict_kw() -> dict:
    """What `fashionai submit` predicts with when nothing is given (its flags' defaults)."""
    from fashionai.cli import build_parser, predict_kw

    return predict_kw(build_parser().parse_args(["submit", "--runs", "r", "--questions", "q"]))


def settings(config) -> str:
    """A training's settings as one comparable string: its name aside, and num_classes (filled in
    from the data when training starts)."""
    return json.dumps({k: v for k, v in config.to_dict().items() if k not in ("name", "num_classes")},
                      sort_keys=True)


def train_seconds(run: Path) -> float:
    """Seconds the run's epochs took (training and validation), from its metrics.csv."""
    from fashionai.training.rundir import read_metrics

    return sum(row["epoch_s"] for row in read_metrics(run))


def train(config) -> tuple[list[Path], float]:
    """(run dir per task, seconds): a finished run of the same settings under the work folder if
    there is one, else a new run. One training serves two recipes where their settings agree, and a
    rerun after changing one recipe retrains only that recipe. A shared net (`config.tasks`) counts
    once and gives the per-task runs it was split into."""
    from fashionai.core.devices import resolve_devices
    from fashionai.training.config import TrainConfig, run_folder
    from fashionai.training.fit import fit, resolve_dtype

    config = config.replace(dtype=resolve_dtype(config.dtype, config.model, config.data_shape,
                                                 resolve_devices(config.devices))[0])  # as the run records it
    key = settings(config)
    named = config.replace(name=f"{config.name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}")
    run = run_folder(named)
    done = [log.parent for log in sorted(run.parent.glob("*/train.log"))
            if " done: " in log.read_text() and settings(TrainConfig.of_run(log.parent)) == key]
    run = done[0] if done else fit(named)
    tasks = config.tasks.split(",") if config.tasks else [config.task]
    runs = [Path(config.out) / t / run.name for t in tasks] if config.tasks else [run]
    return runs, train_seconds(run)


def score(data: Path, runs: list[Path], out: Path, predict_kw: dict) -> tuple[dict[str, float], float]:
    """({task: test official AP}, seconds) of a validated submission made from `runs`."""
    from fashionai.pipeline.submit import make_submission
    from fashionai.scoring.scores import score_submission

    start = time.time()
    questions = data / "rank" / "Tests" / "question.csv"
    make_submission(questions, out, runs=runs, overwrite=True, **predict_kw)
    seconds = time.time() - start
    report = score_submission(out / "submission.csv", data / "rank" / "Tests" / "answers.csv")
    return {s.task: s.ap for s in report.tasks}, seconds


def recipe_changes(recipe: Recipe, changes: Mapping) -> dict:
    """What a recipe changes in the demo preset: the run's `changes` (--epochs), its own training
    settings over them, and its epochs as a multiple of the tutorial's (of --epochs where given);
    without an epochs_scale the preset's own (or --epochs)."""
    out = {**changes, **recipe.train}
    if recipe.epochs_scale is not None:
        out["epochs"] = round(changes.get("epochs", TUTORIAL_EPOCHS) * recipe.epochs_scale)
    return out


def recipe_runs(recipe: Recipe, prepared: Path, work: Path, tasks: list[str], name: str, seed: int,
                changes: dict) -> tuple[list[Path], float]:
    """(runs, training seconds) of one recipe on one seed: a run per task and ensemble member (the
    submission averages a task's members); member k trains with seed + k x MEMBER_SEED_STEP."""
    runs, seconds = [], 0.0
    for k, layout in enumerate(recipe.nets):
        member_runs, took = member_runs_of(recipe, layout, prepared, work, tasks, name,
                                           seed + k * MEMBER_SEED_STEP, changes)
        runs += member_runs
        seconds += took
    return runs, seconds


def layout_groups(layout: str, tasks: Sequence[str]) -> list[list[str]]:
    """The tasks of each net an ensemble member trains, as laid out by `layout` (LAYOUTS)."""
    from fashionai.pipeline.demo import training_groups

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {LAYOUTS}")
    return [list(tasks)] if layout == "all" else training_groups(tasks, shared=layout == "groups")


def member_runs_of(recipe: Recipe, layout: str, prepared: Path, work: Path, tasks: list[str], name: str,
                   seed: int, changes: dict) -> tuple[list[Path], float]:
    """(run per task, training seconds) of one ensemble member on one seed: its nets laid out as
    `layout` (LAYOUTS)."""
    from fashionai.core.tasks import expand_tasks
    from fashionai.pipeline.demo import group_config

    common_kw = dict(recipe_changes(recipe, changes), name=name, seed=seed)
    design = set(expand_tasks("design"))
    runs, seconds = [], 0.0
    for group in layout_groups(layout, tasks):
        extra = recipe.design if design.issuperset(group) else {}
        group_runs, took = train(group_config(group, prepared, work / "runs", **{**common_kw, **extra}))
        runs += group_runs
        seconds += took
    return runs, seconds


def one_seed(data: Path, prepared: Path, work: Path, tasks: list[str], seed: int, changes: dict,
             recipes: Sequence[str] = ("tutorial", "demo")) -> dict:
    """Every recipe on one dataset and seed: {recipe: {"ap": {task: AP}, "train_s": .., "predict_s": ..}}."""
    out = {}
    for name in recipes:
        recipe = RECIPES[name]
        runs, train_s = recipe_runs(recipe, prepared, work, tasks, f"{name}-s{seed}", seed, changes)
        predict_kw = default_predict_kw() if recipe.predict is None else dict(recipe.predict)
        ap, predict_s = score(data, runs, work / f"sub-{name}-s{seed}", predict_kw)
        out[name] = {"ap": ap, "train_s": train_s, "predict_s": predict_s}
    return out


def summary_rows(name: str, tasks: list[str], results: list[dict],
                 recipes: Sequence[str] = ("tutorial", "demo")) -> list[dict]:
    """Per task and for the mean over tasks: each recipe's mean +- spread over the seeds, and its
    wall time (training + prediction, all tasks, mean over seeds)."""
    def cell(values: list[float]) -> str:
        return f"{statistics.mean(values):.3f} +- {max(values) - min(values):.3f}"

    rows = []
    for task in [*tasks, "mean over tasks"]:
        row = {"dataset": name, "task": task}
        for recipe in recipes:
            values = [statistics.mean(r[recipe]["ap"].values()) if task == "mean over tasks" else r[recipe]["ap"][task]
                      for r in results]
            row[recipe] = cell(values)
        rows.append(row)
    for recipe in recipes:
        rows[-1][f"{recipe} train s"] = statistics.mean(r[recipe]["train_s"] for r in results)
        rows[-1][f"{recipe} predict s"] = statistics.mean(r[recipe]["predict_s"] for r in results)
    return rows


def paired_stats(diffs: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error) of paired differences: the sample standard deviation (n - 1) over
    sqrt(n); NaN for one pair. Pairs share a seed, so the seed's luck cancels out of each."""
    mean = statistics.mean(diffs)
    return mean, statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")


def wall_seconds(results: list[dict], recipe: str) -> float:
    """A recipe's mean wall time over the seeds: training (epochs incl. validation) plus prediction."""
    return statistics.mean(r[recipe]["train_s"] + r[recipe]["predict_s"] for r in results)


def paired_rows(name: str, tasks: list[str], results: list[dict], recipe: str, baseline: str) -> list[dict]:
    """`recipe` - `baseline` per task and overall (per seed the mean over tasks, so the overall
    standard error counts seeds, not seed x task pairs), each with its standard error, the number
    of seeds it wins, the ratio of the differences to their error, and the wall-time ratio."""
    rows = []
    for task in [*tasks, "overall"]:
        def ap(r: dict, k: str) -> float:
            return statistics.mean(r[k]["ap"][t] for t in tasks) if task == "overall" else r[k]["ap"][task]

        diffs = [ap(r, recipe) - ap(r, baseline) for r in results]
        mean, error = paired_stats(diffs)
        rows.append({"dataset": name, "recipe": f"{recipe} - {baseline}", "task": task,
                     "difference": f"{mean:+.3f} +- {error:.3f}", "wins": f"{sum(d > 0 for d in diffs)}/{len(diffs)}",
                     "in errors": f"{mean / error:+.1f}" if error > 0 else "-"})
    rows[-1]["time ratio"] = f"{wall_seconds(results, recipe) / wall_seconds(results, baseline):.2f}"
    return rows


def target_met(row: dict, gain: float = 0.10, errors: float = 2.0, time_ratio: float = 1.5) -> bool:
    """Whether an overall paired row meets the target: a gain of at least `gain`, more than
    `errors` standard errors, in at most `time_ratio` times the baseline's wall time."""
    mean, error = (float(x) for x in row["difference"].split(" +- "))
    return mean >= gain and mean > errors * error and float(row["time ratio"]) <= time_ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--recipes", nargs="+", default=["tutorial", "demo"], choices=list(RECIPES))
    p.add_argument("--baseline", default="tutorial", choices=list(RECIPES))
    p.add_argument("--epochs", type=int, help="epochs of the tutorial and of every recipe (recipes with an epochs_scale: that multiple; default: 25, and the demo preset's); fewer for a smoke run")
    p.add_argument("--workdir", default="bench/.work/score")
    p.add_argument("--json", help="append the result to this JSON lines file")
    args = p.parse_args()

    from fashionai.cli import SMALL_NET_THREADS
    from fashionai.core.runtime import configure_runtime

    # as `fashionai demo` trains the preset's net (one thread), on MXNet's naive engine: the threaded
    # engine's results depend on the machine's load (docs/score.md, "Reproducibility"), and a pair
    # must differ by its recipe only
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
    configure_runtime(most_threads=SMALL_NET_THREADS)
    info = common.machine_info()
    recipes = list(dict.fromkeys([args.baseline, *args.recipes]))
    rows, paired, raw = [], [], {}
    for name in args.datasets:
        work = Path(args.workdir) / name
        data, prepared = dataset(Path(args.workdir), name, args.tasks)
        changes = {"epochs": args.epochs} if args.epochs else {}
        results = [one_seed(data, prepared, work, args.tasks, seed, changes, recipes) for seed in args.seeds]
        raw[name] = results
        rows += summary_rows(name, args.tasks, results, recipes)
        paired += [row for recipe in recipes if recipe != args.baseline
                   for row in paired_rows(name, args.tasks, results, recipe, args.baseline)]
    columns = ["dataset", "task", *recipes, *(f"{r} train s" for r in recipes)]
    notes = [f"test official AP (the leaderboard's metric), mean +- spread (max - min) over seeds {args.seeds}",
             *(f"{r}: {describe(RECIPES[r])}" for r in recipes), f"submit's defaults: {default_predict_kw()}",
             "train s: epochs incl. validation, from metrics.csv, per seed, all tasks"]
    common.report("Score: recipes on the held-out demo data", info,
                  {"tasks": len(args.tasks), "seeds": len(args.seeds)}, rows, columns, notes, args.json)
    met = [f"{r['dataset']} {r['recipe']}: target {'met' if target_met(r) else 'not met'}"
           for r in paired if r["task"] == "overall"]
    common.report("Score: paired differences (same seed), standard errors", info, {}, paired,
                  ["dataset", "recipe", "task", "difference", "in errors", "wins", "time ratio"],
                  ["target: overall >= +0.10, more than 2 standard errors, time ratio <= 1.5", *met], args.json)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"title": "score raw", "results": raw}) + "\n")


if __name__ == "__main__":
    main()
