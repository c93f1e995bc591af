"""A submission from trained runs and saved probabilities: predict each run on its task's questions
(at its chosen precision), average the members of each task, validate, write.

The out folder is written as a whole: `submission.csv`, one `<task>.csv` per task and the marker
`.fashionai-submission` are built beside it and swapped in, so a submission never sits beside an
earlier one's task files, and a failed run leaves the earlier submission as it was. An earlier
submission is replaced only with `overwrite`, and only a folder carrying the marker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fashionai.core.annotations import read_questions
from fashionai.core.io import building, check_writable, claiming, text_id, write_marker
from fashionai.core.runinfo import DEFAULT_WHICH, RunInfo
from fashionai.inference.predict import question_images
from fashionai.pipeline.resolve import predict_resolved
from fashionai.pipeline.tta_choice import DEFAULT_TTA
from fashionai.scoring.probs import align, ensemble, load_probs, prob_file_task, save_probs
from fashionai.scoring.submission import build_submission, write_submission, write_task_files

log = logging.getLogger(__name__)

MARKER = ".fashionai-submission"  # written into every submission folder; --overwrite replaces only such a folder


def _run_members(runs: Sequence[RunInfo], weights, questions_path, images_root, save_dir, predict_kw
                 ) -> dict[str, list]:
    """Per task a list of (probs aligned to the task's questions, weight), one per run."""
    members: dict[str, list] = {}
    for run, weight in zip(runs, weights):
        task = run.task
        names, files = question_images(questions_path, task, images_root)
        probs = predict_resolved(run.run_dir, files, **predict_kw)
        if save_dir is not None:
            save_probs(Path(save_dir) / probs_stem(run, predict_kw["tta"]), task, names, probs, run=str(run.run_dir),
                       **predict_kw)
        members.setdefault(task, []).append((probs, weight))
    return members


def probs_stem(run: RunInfo, tta: str) -> str:
    """The name of a run's saved probabilities: task, the run's name, the views, and a short hash of
    the run's full path, so two runs of one name in different folders never share a file."""
    where = run.run_dir.resolve()
    return "__".join((run.task, where.name[:60], tta, text_id(str(where))))


def _check_coverage(asked: Sequence[str], covered: Sequence[str]) -> None:
    """Raise before any net runs if a task of the question file has neither a run nor saved probs."""
    missing = [t for t in asked if t not in covered]
    if missing:
        raise ValueError(f"no run or saved probabilities for task(s) in the question file: {', '.join(missing)}")
    extra = sorted(set(covered) - set(asked))
    if extra:
        log.warning("ignoring runs/probabilities for tasks the question file does not ask: %s", ", ".join(extra))


def make_submission(
    questions_path: str | Path, out_dir: str | Path, *, runs: Sequence[str | Path] = (),
    prob_files: Sequence[str | Path] = (), weights: Sequence[float] | None = None,
    images_root: str | Path | None = None, save_probs_dir: str | Path | None = None, overwrite: bool = False,
    **predict_kw,
) -> dict[str, int]:
    """Predict with every run (and/or load saved probabilities), average the members of each task
    (`weights`: one per run, then one per prob file), validate, and write `out_dir/submission.csv`
    plus one `<task>.csv` per task. `predict_kw` goes to `predict_run` (tta, devices, ...).
    Returns {task: number of ensemble members}.

    Refused before any prediction: an `out_dir` that holds an earlier submission (unless
    `overwrite`), anything else that is not empty, and one that holds an input of this command."""
    predict_kw.setdefault("tta", DEFAULT_TTA)
    predict_kw.setdefault("which", DEFAULT_WHICH)
    inputs = [("the question file", questions_path), ("the images root", images_root),
              ("the --save-probs folder", save_probs_dir)]
    inputs += [("the run", run) for run in runs] + [("the saved probabilities", p) for p in prob_files]
    with claiming(out_dir, MARKER, overwrite, "a submission", inputs=inputs) as out:
        return _submit(out, questions_path, runs, prob_files, weights, images_root, save_probs_dir, predict_kw)


def _submit(out: Path, questions_path, runs, prob_files, weights, images_root, save_probs_dir, predict_kw
            ) -> dict[str, int]:
    """make_submission's work, once `out` is held."""
    if save_probs_dir is not None:
        check_writable(save_probs_dir)  # before any prediction, not after all of it
    questions = read_questions(questions_path)
    asked = list(dict.fromkeys(q.task for q in questions))
    sources = len(runs) + len(prob_files)
    weights = [1.0] * sources if weights is None else [float(w) for w in weights]
    if len(weights) != sources:
        raise ValueError(f"{len(weights)} weights for {sources} runs + probability files; give one each")
    infos = [RunInfo.read(r) for r in runs]
    _check_coverage(asked, [run.task for run in infos] + [prob_file_task(p) for p in prob_files])
    keep = [i for i, run in enumerate(infos) if run.task in asked]
    members = _run_members(
        [infos[i] for i in keep], [weights[i] for i in keep], questions_path, images_root, save_probs_dir, predict_kw,
    )
    for path, weight in zip(prob_files, weights[len(runs):]):
        task, images, probs = load_probs(path)
        if task in asked:
            wanted = [q.image for q in questions if q.task == task]
            members.setdefault(task, []).append((align(images, probs, wanted, str(path)), weight))
    probs_by_task = {t: ensemble([p for p, _ in members[t]], [w for _, w in members[t]]) for t in asked}
    rows = build_submission(questions, probs_by_task)
    with building(out) as tmp:
        write_submission(rows, tmp / "submission.csv", questions_path)  # validates before writing
        write_task_files(rows, tmp)
        write_marker(tmp, MARKER, "submit")
    log.info("wrote %s (%d rows, validated) and one file per task", out / "submission.csv", len(rows))
    return {t: len(members[t]) for t in asked}
