"""The score benchmark: the project's defaults against the 2018 Gluon FashionAI tutorial's recipe.

    .venv/bin/python bench/bench_score.py [--tasks skirt_length_labels ...] [--seeds 0 1 2] [--epochs N]

Both sides get the same prepared data, model, epochs and LR schedule (the demo preset: mobilenet0.25
from scratch at 64 px, 25 epochs, batch 32, NAG lr 0.1, 1 warm-up epoch, cosine), and are scored
with the official metric on the test questions, as the leaderboard would score them:
- tutorial: the 2018 recipe on the project's loaders: short side resized, a fixed-size random crop
  and a mirror (`--augment crop`, no colour jitter), the last epoch's weights, ten-crop, FP32;
- defaults: `fashionai train --preset demo` and `fashionai submit` with nothing else given.
Two generated datasets (`fashionai demo-data`): the demo's (seed 0, 80 training and 8 test images
per class) and a second one (another seed, 40 and 10 per class, larger images). A finished run with
the same settings under the work folder is reused (one training serves both recipes where they
agree; a rerun after changing the defaults retrains only the defaults). Prints test mAP per task and the mean
over tasks, mean +- spread (max - min) over the seeds, and training and prediction seconds; then,
per dataset, the paired difference (same seed, same task) with its standard error, and whether the
target (the gain of the means larger than either recipe's spread) is met.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DATASETS = {
    "demo": dict(seed=0, train_per_class=80, test_per_class=8),
    "second": dict(seed=7, train_per_class=40, test_per_class=10, min_size=192, max_size=320),
}
TASKS = ("skirt_length_labels", "coat_length_labels", "collar_design_labels", "neckline_design_labels")
TUTORIAL_TRAIN = dict(augment="crop", crop_ratio=0.875, jitter=0.0, lighting=0.0)
TUTORIAL_PREDICT = dict(which="last", tta="ten-crop", precision="fp32")


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


def train(config) -> tuple[Path, float]:
    """(run dir, seconds): a finished run of the same settings under the work folder if there is
    one, else a new run. One training serves both recipes where their settings agree, and a rerun
    after changing one recipe retrains only that recipe."""
    from fashionai.core.devices import resolve_devices
    from fashionai.training.config import TrainConfig
    from fashionai.training.fit import fit, resolve_dtype

    config = config.replace(dtype=resolve_dtype(config.dtype, config.model, config.data_shape,
                                                 resolve_devices(config.devices))[0])  # as the run records it
    key = settings(config)
    for log in sorted((Path(config.out) / config.task).glob("*/train.log")):
        run = log.parent
        if " done: " in log.read_text() and settings(TrainConfig.of_run(run)) == key:
            return run, train_seconds(run)
    run = fit(config.replace(name=f"{config.name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"))
    return run, train_seconds(run)


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


def one_seed(data: Path, prepared: Path, work: Path, tasks: list[str], seed: int, changes: dict) -> dict:
    """Both recipes on one dataset and seed: {recipe: {"ap": {task: AP}, "train_s": .., "predict_s": ..}}."""
    from fashionai.training.config import TrainConfig

    recipes = {"tutorial": (TUTORIAL_TRAIN, TUTORIAL_PREDICT), "defaults": ({}, default_predict_kw())}
    out = {}
    for recipe, (train_changes, predict_kw) in recipes.items():
        runs, train_s = [], 0.0
        for task in tasks:
            config = TrainConfig.demo(task, prepared, work / "runs", name=f"{recipe}-s{seed}", seed=seed,
                                      **changes, **train_changes)
            run, seconds = train(config)
            runs.append(run)
            train_s += seconds
        ap, predict_s = score(data, runs, work / f"sub-{recipe}-s{seed}", predict_kw)
        out[recipe] = {"ap": ap, "train_s": train_s, "predict_s": predict_s}
    return out


def summary_rows(name: str, tasks: list[str], results: list[dict]) -> list[dict]:
    """Per task and for the mean over tasks: each recipe's mean +- spread over the seeds."""
    def cell(values: list[float]) -> str:
        return f"{statistics.mean(values):.3f} +- {max(values) - min(values):.3f}"

    rows = []
    for task in [*tasks, "mean over tasks"]:
        row = {"dataset": name, "task": task}
        for recipe in ("tutorial", "defaults"):
            values = [statistics.mean(r[recipe]["ap"].values()) if task == "mean over tasks" else r[recipe]["ap"][task]
                      for r in results]
            row[recipe] = cell(values)
        rows.append(row)
    for recipe in ("tutorial", "defaults"):
        rows[-1][f"{recipe} train s"] = statistics.mean(r[recipe]["train_s"] for r in results)
        rows[-1][f"{recipe} predict s"] = statistics.mean(r[recipe]["predict_s"] for r in results)
    return rows


def paired_note(name: str, tasks: list[str], results: list[dict]) -> str:
    """defaults - tutorial on the same seed and task: the gain itself, with its standard error. The
    target compares the gap of the means with the max - min range over seeds, which two or three
    uneven runs decide; the paired view shows how often and by how much the defaults win."""
    diffs = [r["defaults"]["ap"][t] - r["tutorial"]["ap"][t] for r in results for t in tasks]
    error = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    means = {k: [statistics.mean(r[k]["ap"].values()) for r in results] for k in ("tutorial", "defaults")}
    per_seed = [d - t for d, t in zip(means["defaults"], means["tutorial"])]
    spread = max(max(v) - min(v) for v in means.values())
    gain = statistics.mean(means["defaults"]) - statistics.mean(means["tutorial"])
    return (f"{name}: defaults - tutorial, paired by seed and task: {statistics.mean(diffs):+.3f} +- {error:.3f} "
            f"(standard error, {len(diffs)} pairs), defaults ahead in {sum(d > 0 for d in diffs)} of {len(diffs)}; "
            f"per seed {', '.join(f'{d:+.3f}' for d in per_seed)}; gain of the means {gain:+.3f} against the larger "
            f"spread {spread:.3f}: target {'met' if gain > spread else 'not met'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--epochs", type=int, help="both recipes' epochs (default: the demo preset's); fewer for a smoke run")
    p.add_argument("--workdir", default="bench/.work/score")
    p.add_argument("--json", help="append the result to this JSON lines file")
    args = p.parse_args()

    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    info = common.machine_info()
    rows, raw, paired = [], {}, []
    for name in args.datasets:
        work = Path(args.workdir) / name
        data, prepared = dataset(Path(args.workdir), name, args.tasks)
        changes = {"epochs": args.epochs} if args.epochs else {}
        results = [one_seed(data, prepared, work, args.tasks, seed, changes) for seed in args.seeds]
        raw[name] = results
        rows += summary_rows(name, args.tasks, results)
        paired.append(paired_note(name, args.tasks, results))
    columns = ["dataset", "task", "tutorial", "defaults", "tutorial train s", "defaults train s",
               "tutorial predict s", "defaults predict s"]
    notes = [f"test official AP (the leaderboard's metric), mean +- spread (max - min) over seeds {args.seeds}",
             f"tutorial: --augment crop, no colour jitter, last epoch, ten-crop, fp32; defaults: {default_predict_kw()}",
             "train s (epochs incl. validation, from metrics.csv) and predict s: per seed, all tasks (a training both recipes share is counted for each)",
             *paired]
    common.report("Score: the project's defaults vs the 2018 tutorial's recipe", info,
                  {"tasks": len(args.tasks), "seeds": len(args.seeds)}, rows, columns, notes, args.json)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"title": "score raw", "results": raw}) + "\n")


if __name__ == "__main__":
    main()
