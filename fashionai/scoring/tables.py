"""Score tables on disk and on screen: a task's report (CSV + JSON + confusion-matrix PNG) and any
list of rows (a TTA or precision comparison) as CSV + JSON or as a fixed-width text table."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from fashionai.core.io import atomic_write, write_csv, write_json
from fashionai.core.plots import confusion_png, gallery_png

log = logging.getLogger(__name__)

CLASS_COLUMNS = ("index", "class", "precision", "recall", "f1", "support")


def save_report(report: dict, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write `<stem>.csv` (per-class table), `<stem>.json` (everything), `<stem>_confusion.png` (the
    confusion matrix beside each class's precision and recall) and, when the report lists its
    worst predictions, `<stem>_mistakes.png` (those images with their true and predicted class)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in
             (("csv", f"{stem}.csv"), ("json", f"{stem}.json"), ("png", f"{stem}_confusion.png"))}
    write_csv(paths["csv"], report["classes"], CLASS_COLUMNS)
    write_json(paths["json"], report)
    classes = report["classes"]
    title = f"{report.get('task', '')} val (official AP {report['official_ap']:.4f})"
    atomic_write(paths["png"], confusion_png(report["confusion"], [c["class"] for c in classes], title,
                                             [c["precision"] for c in classes], [c["recall"] for c in classes]))
    if report.get("worst"):
        paths["mistakes"] = out_dir / f"{stem}_mistakes.png"
        atomic_write(paths["mistakes"], gallery_png(
            [{"path": w["image"], "caption": f"true {w['true']}\npredicted {w['predicted']} ({w['p_predicted']:.2f})"}
             for w in report["worst"]],
            f"{report.get('task', '')} val: the {len(report['worst'])} worst predictions (lowest probability of "
            "the true class)"))
    log.info("report written: %s", ", ".join(str(p) for p in paths.values()))
    return paths


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
    write_csv(paths["csv"], rows)
    write_json(paths["json"], {**meta, "rows": list(rows)})
    log.info("table written: %s", ", ".join(str(p) for p in paths.values()))
    return paths
