"""The whole pipeline on generated data: demo-data -> prepare -> train per task -> submit -> score.

This is what `make demo` runs on a fresh machine with no download: it proves every stage works
together and prints the official mAP of a validated leaderboard submission against the demo test
set's ground truth. Nothing here is demo-only logic: each step calls the stage's public function
with the demo's settings, so the demo breaks when the pipeline does.

Work folder layout: `data/` (FashionAI layout), `prepared/`, `runs/<task>/demo[-N]/` (one per ensemble
member), `submissions/`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionai.core.io import has_marker, write_marker
from fashionai.core.runinfo import DEFAULT_WHICH
from fashionai.core.tasks import TASK_NAMES, expand_tasks, num_classes
from fashionai.demodata.generate import DEFAULT_STYLE, make_demo_data
from fashionai.data.prepare import prepare
from fashionai.pipeline.submit import make_submission
from fashionai.pipeline.tta_choice import DEFAULT_TTA
from fashionai.scoring.scores import Report, format_submission_report, score_submission
from fashionai.training.config import TrainConfig
from fashionai.training.fit import fit
from fashionai.training.rundir import best_row, read_metrics

log = logging.getLogger(__name__)

MARKER = ".fashionai-demo"  # a work folder the demo made; only such a folder is cleared on a rerun
PARTS = ("data", "prepared", "runs", "submissions")


@dataclass
class DemoResult:
    """What the demo produced: run directories, per-task val scores, the submission and its score."""

    workdir: Path
    runs: dict[str, list[Path]] = field(default_factory=dict)  # per task, one run per ensemble member
    val: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # per member, the submitted weights' row
    submission: Path | None = None
    report: Report | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def clear_workdir(workdir: Path) -> None:
    """Empty a previous demo's work folder; refuse a non-empty folder the demo did not make.

    Only the demo's own parts are removed (the folder itself stays, so `--workdir .` works in an
    empty folder); a part that is a link or a file was not made by the demo and is refused.
    """
    if workdir.exists() and not workdir.is_dir():
        raise FileExistsError(f"{workdir} exists and is not a folder; pick another --workdir")
    if workdir.is_dir() and any(workdir.iterdir()) and not has_marker(workdir, MARKER):
        raise FileExistsError(f"{workdir} is not empty and was not made by `fashionai demo` (it has no {MARKER}); "
                              "pick another --workdir")
    odd = [p.name for p in map(workdir.joinpath, PARTS) if p.is_symlink() or (p.exists() and not p.is_dir())]
    if odd:
        raise FileExistsError(f"{workdir}: {', '.join(odd)} is a link or a file, not a folder the demo made; "
                              "remove it yourself or pick another --workdir")
    for part in PARTS:
        if (workdir / part).exists():
            shutil.rmtree(workdir / part)
    workdir.mkdir(parents=True, exist_ok=True)
    write_marker(workdir, MARKER, "demo")


# One backbone per task group (length, design), a head per task: each task's images teach the
# others; it beat one net per task at the same training time (docs/score.md, "One network for
# several tasks"; bench/bench_score.py recipe `shared`).
SHARED = True
# One net per task group: on the shop data two nets on two seeds, averaged, gained nothing
# measurable for twice the time (docs/score.md). `--members N` trains N, on seeds seed, seed + 1,
# ..., into runs/<task>/demo (k = 0) and demo-<k + 1>, and submits their average.
MEMBERS = 1


def member_name(k: int) -> str:
    """The run name of ensemble member k: `demo`, `demo-2`, ..."""
    return "demo" if k == 0 else f"demo-{k + 1}"


def training_groups(names: Sequence[str], shared: bool) -> list[list[str]]:
    """The nets to train, as lists of tasks in task order: one per task, or (`shared`) one per task
    group (length, design) that holds two or more of `names`, one per task for the rest."""
    ordered = sorted(names, key=TASK_NAMES.index)
    if not shared:
        return [[t] for t in ordered]
    groups = [[t for t in ordered if t in expand_tasks(g)] for g in ("length", "design")]
    return [g for g in groups if len(g) > 1] + [[t] for g in groups if len(g) == 1 for t in g]


def group_config(group: Sequence[str], prepared: str | Path, out: str | Path, **changes: Any) -> TrainConfig:
    """The demo preset for one net: one task's, or a shared net's over `group` (`--tasks`)."""
    if len(group) == 1:
        return TrainConfig.demo(group[0], prepared, out, **changes)
    return TrainConfig.demo("", prepared, out, tasks=",".join(group), **changes)


def train_group(group: Sequence[str], workdir: Path, seed: int, overrides: dict[str, Any]) -> dict[str, Path]:
    """{task: run dir} of one net trained with the demo preset: one task's run, or a shared net's
    split into one ordinary run per task (`fashionai train --tasks`)."""
    out = workdir / "runs"
    run = fit(group_config(group, workdir / "prepared", out, seed=seed, **overrides))
    return {group[0]: run} if len(group) == 1 else {task: out / task / run.name for task in group}


def run_demo(
    workdir: str | Path = "demo", *, tasks: str | Sequence[str] = "all", seed: int = 0,
    train_per_class: int = 80, test_per_class: int = 8, val_fraction: float = 0.2,
    tta: str = DEFAULT_TTA, train_overrides: dict[str, Any] | None = None, style: str = DEFAULT_STYLE,
    shared: bool = SHARED, members: int = MEMBERS,
) -> DemoResult:
    """Run every stage on fresh demo data (`style`: fashionai.demodata.generate.STYLES) in `workdir`;
    `shared`: one net per task group (`training_groups`) instead of one per task; `members` nets of
    each (seeds seed, seed + 1, ...) whose predictions the submission averages; `train_overrides`
    change the demo preset (e.g. {"model": "ResNet50_v2", "pretrained": "cache", "data_shape": 224}
    with cached weights)."""
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    workdir = Path(workdir)
    names = expand_tasks(tasks) if isinstance(tasks, str) else list(tasks)
    result = DemoResult(workdir)
    clear_workdir(workdir)
    clock = time.time()
    make_demo_data(workdir / "data", train_per_class=train_per_class, test_per_class=test_per_class,
                   seed=seed, tasks=names, style=style)
    prepare(workdir / "data", workdir / "prepared", seed=seed, val_fraction=val_fraction, tasks=names)
    result.seconds["data"] = time.time() - clock
    nets = [(k, group) for k in range(members) for group in training_groups(names, shared)]
    for i, (k, group) in enumerate(nets, 1):
        log.info("demo: training %s, net %d of %d", ",".join(group), i, len(nets))
        clock = time.time()
        runs = train_group(group, workdir, seed + k, {**(train_overrides or {}), "name": member_name(k)})
        for task, run in runs.items():
            result.runs.setdefault(task, []).append(run)
            result.val.setdefault(task, []).append(submitted_row(read_metrics(run), DEFAULT_WHICH))
            # a shared net's time, split evenly
            result.seconds[task] = result.seconds.get(task, 0.0) + (time.time() - clock) / len(group)
    clock = time.time()
    questions = workdir / "data" / "rank" / "Tests" / "question.csv"
    make_submission(questions, workdir / "submissions", runs=[r for runs in result.runs.values() for r in runs],
                    tta=tta, precision="auto", engine="auto")  # what `submit` does by default
    result.submission = workdir / "submissions" / "submission.csv"
    result.report = score_submission(result.submission, workdir / "data" / "rank" / "Tests" / "answers.csv")
    result.seconds["submit"] = time.time() - clock
    return result


def submitted_row(rows: list[dict], which: str) -> dict:
    """The metrics row of the weights a submission uses: the last epoch's, or the best's (`which`)."""
    return rows[-1] if which == "last" else best_row(rows)


def format_demo(result: DemoResult) -> str:
    """Per-task training summary (val split, the weights the submission uses: DEFAULT_WHICH) followed
    by the submission's leaderboard table."""
    lines = [f"val split, {DEFAULT_WHICH} epoch's weights (what the submission uses; with several nets per task, "
             "their mean):",
             f"{'task':<24} {'classes':>7} {'val acc':>8} {'chance':>7} {'val AP':>7} {'epoch':>5} {'nets':>4} "
             f"{'train s':>8}"]
    for task, rows in sorted(result.val.items(), key=lambda item: TASK_NAMES.index(item[0])):
        k, acc, ap = num_classes(task), *(sum(r[m] for r in rows) / len(rows) for m in ("val_acc", "val_map"))
        lines.append(f"{task:<24} {k:>7} {acc:>8.3f} {1 / k:>7.3f} {ap:>7.3f} {int(rows[0]['epoch']):>5} "
                     f"{len(rows):>4} {result.seconds[task]:>8.1f}")
    total = sum(result.seconds.values())
    lines += ["", "test set (rank/Tests/question.csv) scored against rank/Tests/answers.csv:",
              format_submission_report(result.report), "",
              f"submission: {result.submission} (validated before writing)",
              f"runs: {result.workdir / 'runs'}/<task>/demo[-N] (curves.png, metrics.csv, train.log)",
              f"total {total:.0f} s (data + prepare {result.seconds['data']:.0f} s, "
              f"submit + score {result.seconds['submit']:.0f} s)"]
    return "\n".join(lines)
