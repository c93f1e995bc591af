"""Scoring: submission files against ground truth (as the leaderboard would), and trained runs on val.

`score_submission` is what the leaderboard computes: per task the official AP and BasicPrecision,
overall their unweighted means over the tasks present in the answers (see `fashionai.metrics`).
`evaluate_run` scores a run's val split with the per-class table, and `save_report` writes it
(CSV + JSON + confusion-matrix PNG) into the run directory. `compare_tta` puts every TTA mode's cost
and val mAP side by side (`save_table` / `format_table`; the precisions' table is
`fashionai.precision.compare_precisions`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fashionai import metrics
from fashionai.annotations import AnnotationError, CsvLine, LabelRow, read_csv_lines, read_labels
from fashionai.tasks import TASK_NAMES, class_names, num_classes

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (image, task): how a submission row is matched to its answer


@dataclass(frozen=True)
class TaskScore:
    """One task's leaderboard figures."""

    task: str
    rows: int
    ap: float
    basic_precision: float


@dataclass(frozen=True)
class Report:
    """A submission's score: per task figures and their unweighted means (the leaderboard's mAP)."""

    submission: str
    answers: str
    tasks: tuple[TaskScore, ...]
    map: float
    basic_precision: float

    def to_dict(self) -> dict:
        return _json_safe(asdict(self))


# --- submission files ---------------------------------------------------------------------------
def _answers_by_key(answers_path: str | Path) -> dict[Key, LabelRow]:
    """Ground-truth rows keyed by (image, task), in file order; a repeated key is an error."""
    answers: dict[Key, LabelRow] = {}
    for row in read_labels(answers_path):
        key = (row.image, row.task)
        if key in answers:
            raise AnnotationError(
                f"{row.source}:{row.line}: {row.image} {row.task} repeats line {answers[key].line}"
            )
        answers[key] = row
    return answers


def _parse_probabilities(line: CsvLine, k: int) -> list[float]:
    """The K numbers of a submission line; raise AnnotationError naming file:line otherwise."""
    values = line.fields[2].split(";")
    if len(values) != k:
        raise AnnotationError(
            f"{line.where}: {len(values)} probabilities, {line.fields[1]} has {k} classes"
        )
    try:
        return [float(v) for v in values]
    except ValueError:
        raise AnnotationError(f"{line.where}: not a number among {line.fields[2]!r}") from None


def _check_range(lines: list[CsvLine], probs: np.ndarray) -> None:
    """Raise AnnotationError at the first row with a value outside [0, 1] (checked per task, at once).

    The format promises probabilities, so anything else (logits, `nan`, `inf`) is a bug upstream
    that the leaderboard would not score as intended.
    """
    ok = np.isfinite(probs).all(axis=1) & (probs >= 0).all(axis=1) & (probs <= 1).all(axis=1)
    if not ok.all():
        line = lines[int(np.flatnonzero(~ok)[0])]
        raise AnnotationError(f"{line.where}: probabilities must lie in [0, 1], found {line.fields[2]!r}")


def read_submission(submission_path: str | Path, answers: dict[Key, LabelRow]) -> dict[str, np.ndarray]:
    """Submission probabilities per task, (N, K) in the answers' row order, read strictly: extra,
    repeated, malformed and missing rows are AnnotationErrors naming file:line (the answers' line
    for a missing row)."""
    found: dict[Key, tuple[CsvLine, list[float]]] = {}
    for line in read_csv_lines(submission_path):
        if len(line.fields) != 3:
            raise AnnotationError(f"{line.where}: expected 3 columns, found {len(line.fields)}")
        key = (line.fields[0], line.fields[1])
        if key not in answers:
            raise AnnotationError(f"{line.where}: {key[0]} {key[1]} is not in the answers")
        if key in found:
            raise AnnotationError(f"{line.where}: {key[0]} {key[1]} repeats line {found[key][0].line}")
        found[key] = (line, _parse_probabilities(line, num_classes(key[1])))
    missing = [row for key, row in answers.items() if key not in found]
    if missing:
        first = missing[0]
        raise AnnotationError(
            f"{first.source}:{first.line}: {first.image} {first.task} has no row in "
            f"{submission_path} ({len(missing)} answer rows missing)"
        )
    per_task: dict[str, np.ndarray] = {}
    for task in dict.fromkeys(task for _, task in answers):
        rows = [found[key] for key in answers if key[1] == task]
        per_task[task] = np.array([values for _, values in rows])
        _check_range([line for line, _ in rows], per_task[task])
    return per_task


def score_submission(submission_path: str | Path, answers_path: str | Path) -> Report:
    """Score a submission file against label-format answers the way the leaderboard would."""
    answers = _answers_by_key(answers_path)
    probs = read_submission(submission_path, answers)
    scores = []
    for task in sorted(probs, key=TASK_NAMES.index):
        labels = [row.label.values for key, row in answers.items() if key[1] == task]
        scores.append(TaskScore(
            task, len(labels), metrics.official_ap(probs[task], labels),
            metrics.basic_precision(probs[task], labels),
        ))
    report = Report(
        str(submission_path), str(answers_path), tuple(scores),
        metrics.mean_over_tasks([s.ap for s in scores]),
        metrics.mean_over_tasks([s.basic_precision for s in scores]),
    )
    log.info("%s: official mAP %.4f, BasicPrecision %.4f over %d tasks",
             submission_path, report.map, report.basic_precision, len(scores))
    return report


def format_submission_report(report: Report) -> str:
    """The leaderboard-style table: per task rows, AP, BasicPrecision, then the overall line."""
    lines = [
        "official FashionAI mAP (leaderboard metric; per-task threshold-averaged precision, "
        "'m' ignored, unweighted mean over tasks)",
        f"{'task':<24} {'rows':>6} {'AP':>8} {'BasicPrec':>9}",
    ]
    for s in report.tasks:
        lines.append(f"{s.task:<24} {s.rows:>6} {s.ap:>8.4f} {s.basic_precision:>9.4f}")
    rows = sum(s.rows for s in report.tasks)
    lines.append(f"{'mAP (official)':<24} {rows:>6} {report.map:>8.4f} {report.basic_precision:>9.4f}")
    return "\n".join(lines)


# --- predictions of one task --------------------------------------------------------------------
def evaluate_predictions(probs: np.ndarray, labels: Sequence[str], class_names: Sequence[str]) -> dict:
    """Every metric of one task's predictions: overall figures, the per-class table, the confusion matrix.

    probs: (N, K); labels: N full label strings (so `m` counts as on the leaderboard).
    """
    labels = list(labels)
    k = len(class_names)
    y = metrics.label_indices(labels, k)
    table = metrics.per_class_report(probs, y, k)
    classes = [
        {"index": i, "class": name, "precision": float(table["precision"][i]),
         "recall": float(table["recall"][i]), "f1": float(table["f1"][i]),
         "support": int(table["support"][i])}
        for i, name in enumerate(class_names)
    ]
    return {
        "rows": len(labels),
        "official_ap": metrics.official_ap(probs, labels),
        "basic_precision": metrics.basic_precision(probs, labels),
        "accuracy": metrics.accuracy(probs, y),
        "ranking_ap": metrics.ranking_ap(probs, y),
        "classes": classes,
        "confusion": metrics.confusion(probs, y, k).tolist(),
    }


def format_prediction_report(report: dict) -> str:
    """The per-class table and the overall figures of `evaluate_predictions`, as printable text."""
    lines = [f"{'#':>2} {'class':<24} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}"]
    for c in report["classes"]:
        lines.append(f"{c['index']:>2} {c['class']:<24} {c['precision']:>9.4f} {c['recall']:>7.4f} "
                     f"{c['f1']:>6.4f} {c['support']:>7}")
    lines.append(f"rows {report['rows']}  official AP {report['official_ap']:.4f}  BasicPrecision "
                 f"{report['basic_precision']:.4f}  accuracy {report['accuracy']:.4f}  ranking AP "
                 f"(tutorial's 'mAP', not official) {report['ranking_ap']:.4f}")
    return "\n".join(lines)


def _json_safe(value):
    """NaN -> None recursively: JSON has no NaN and strict parsers refuse Python's `NaN` token."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename: readers never see a half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _confusion_png(report: dict) -> bytes:
    """The confusion matrix as PNG bytes (Agg canvas, no pyplot figure state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    names = [c["class"] for c in report["classes"]]
    fig = Figure(figsize=(2 + 0.7 * len(names), 1.5 + 0.6 * len(names)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ConfusionMatrixDisplay(np.array(report["confusion"]), display_labels=names).plot(
        ax=ax, xticks_rotation=45, colorbar=False,
    )
    ax.set_title(f"{report.get('task', '')} val (official AP {report['official_ap']:.4f})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def save_report(report: dict, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write `<stem>.csv` (per-class table), `<stem>.json` (everything) and `<stem>_confusion.png`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in
             (("csv", f"{stem}.csv"), ("json", f"{stem}.json"), ("png", f"{stem}_confusion.png"))}
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["index", "class", "precision", "recall", "f1", "support"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(report["classes"])
    _atomic_write_bytes(paths["csv"], text.getvalue().encode())
    _atomic_write_bytes(paths["json"], json.dumps(_json_safe(report), indent=2).encode())
    _atomic_write_bytes(paths["png"], _confusion_png(report))
    log.info("report written: %s", ", ".join(str(p) for p in paths.values()))
    return paths


# --- trained runs -------------------------------------------------------------------------------
def _run_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; is {run_dir} a run directory (fashionai train)?")
    return json.loads(path.read_text())


def val_split(run_dir: str | Path) -> tuple[str, list[Path], list[str]]:
    """(task, image files, label strings) of the run's val split, the rows `prepare` kept.

    FileNotFoundError when the prepared folder or its manifest is gone (e.g. the run dir was moved
    to another machine), ValueError when the manifest has no usable val rows. The image files are
    not checked here (predict reports every unreadable one at once).
    """
    from fashionai.prepare import read_manifest

    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    prepared, task = Path(config["prepared"]), config["task"]
    manifest = read_manifest(prepared)
    val = manifest[(manifest["task"] == task) & (manifest["split"] == "val") & (manifest["status"] == "ok")]
    if val.empty:
        raise ValueError(f"{prepared}: the manifest has no usable val rows for {task}")
    return task, [prepared / p for p in val["prepared_path"]], val["label"].astype(str).tolist()


def evaluate_run(
    run_dir: str | Path, *, tta: str = "none", devices: str = "auto", batch_size: int = 32,
    precision: str = "fp32",
) -> dict:
    """Score a trained run on its val split (the rows `prepare` kept): `evaluate_predictions` + run info.

    `precision` is predict's (fp32 by default: the reference the other precisions are judged by).
    """
    from fashionai.predict import predict_run

    task, images, labels = val_split(run_dir)
    probs = predict_run(run_dir, images, tta=tta, devices=devices, batch_size=batch_size, precision=precision)
    report = evaluate_predictions(probs, labels, class_names(task))
    return {"run": str(run_dir), "task": task, "split": "val", "tta": tta, "precision": precision, **report}


# --- tables of several settings (TTA modes, precisions) -----------------------------------------
def compare_tta(
    run_dir: str | Path, *, modes: Sequence[str] | None = None, devices: str = "auto", batch_size: int = 32,
    precision: str = "fp32",
) -> list[dict]:
    """Per TTA mode: views, wall time of `evaluate_run` on the val split, img/s, cost relative to
    `none`, val official AP and accuracy. Answers "is ten-crop worth 10x the compute?" on the run's
    own data.

    The time is that of a whole evaluation (load, decode, views, net, metrics), i.e. what a predict
    of the same images costs. MXNet's one-off start-up (thread pool, first kernels; the precision's
    calibration or choice) would land on the first mode, so a short unreported prediction runs first.
    """
    import time

    from fashionai.predict import predict_run
    from fashionai.tta import TTA_MODES

    modes = list(TTA_MODES) if modes is None else list(modes)
    _, images, _ = val_split(run_dir)
    predict_run(run_dir, images[:2], tta="none", devices=devices, batch_size=batch_size, precision=precision)
    rows = []
    for mode in modes:
        start = time.perf_counter()
        report = evaluate_run(run_dir, tta=mode, devices=devices, batch_size=batch_size, precision=precision)
        seconds = time.perf_counter() - start
        rows.append({
            "tta": mode, "views": TTA_MODES[mode], "images": report["rows"], "seconds": seconds,
            "ms_per_image": 1000 * seconds / report["rows"], "img_s": report["rows"] / seconds,
            "val_map": report["official_ap"], "accuracy": report["accuracy"],
        })
        log.info("tta %s: %.1f ms/image, val official AP %.4f", mode, rows[-1]["ms_per_image"],
                 report["official_ap"])
    base = next((r for r in rows if r["tta"] == "none"), rows[0])
    for row in rows:
        row["relative_cost"] = row["seconds"] / base["seconds"]
        row["delta_map"] = row["val_map"] - base["val_map"]
    return rows


TTA_COLUMNS = (("tta", "{}"), ("views", "{:d}"), ("ms_per_image", "{:.2f}"), ("img_s", "{:.1f}"),
               ("relative_cost", "{:.2f}x"), ("val_map", "{:.4f}"), ("delta_map", "{:+.4f}"),
               ("accuracy", "{:.4f}"))


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as a fixed-width text table, text (`{}`) columns left-aligned and numbers right-aligned;
    a missing or NaN value prints as `-`."""
    def cell(row: dict, key: str, fmt: str) -> str:
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return fmt.format(value)

    cells = [[key for key, _ in columns]] + [[cell(r, key, fmt) for key, fmt in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    left = [fmt == "{}" for _, fmt in columns]
    return "\n".join("  ".join(c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(line, widths, left)).rstrip()
                     for line in cells)


def save_table(rows: Sequence[dict], out_dir: str | Path, stem: str, **meta) -> dict[str, Path]:
    """Write `<stem>.json` ({**meta, "rows": rows}) and `<stem>.csv` (one line per row), atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv"}
    fields = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write_bytes(paths["csv"], text.getvalue().encode())
    _atomic_write_bytes(paths["json"], json.dumps(_json_safe({**meta, "rows": list(rows)}), indent=2).encode())
    log.info("table written: %s", ", ".join(str(p) for p in paths.values()))
    return paths
