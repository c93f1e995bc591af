"""The manifest of a prepared root: one row per input line, and what later stages read from it.

`<prepared>/manifest.csv` has the columns `MANIFEST_COLUMNS`; `prepared_path` is relative to the
prepared root and empty for a skipped row. Training and evaluation read the full label strings
(with their `m` classes, which the official metric needs) of the val images from here.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from fashionai.core.tasks import label_string

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = (
    "source", "line", "image", "task", "label", "class_index", "split", "status", "reason",
    "prepared_path",
)


def manifest_text(rows: Sequence[Sequence]) -> str:
    """CSV text of the manifest: the header, then one line per row (values in column order)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def read_manifest(prepared_root: str | Path) -> pd.DataFrame:
    """The manifest of a prepared folder; `class_index` is nullable Int64, text columns are str."""
    import pandas as pd

    path = Path(prepared_root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; run `fashionai prepare --out {prepared_root}` first")
    text = [c for c in MANIFEST_COLUMNS if c not in ("line", "class_index")]
    frame = pd.read_csv(path, dtype={"line": int, "class_index": "Int64", **dict.fromkeys(text, str)},
                        keep_default_na=False, na_values={"class_index": [""]})
    if tuple(frame.columns) != MANIFEST_COLUMNS:
        raise ValueError(f"{path}: columns {list(frame.columns)}, expected {list(MANIFEST_COLUMNS)}")
    return frame


def split_images(prepared: str | Path, task: str, split: str = "val") -> tuple[list[Path], list[str]]:
    """(image files, full label strings) of `task`'s `split`: the rows `prepare` kept, in manifest order.

    FileNotFoundError when the prepared folder or its manifest is gone (e.g. a run dir moved to
    another machine), ValueError when the manifest has no usable rows of that split. The files are
    not checked here (prediction reports every unreadable one at once).
    """
    prepared = Path(prepared)
    manifest = read_manifest(prepared)
    rows = manifest[(manifest["task"] == task) & (manifest["split"] == split) & (manifest["status"] == "ok")]
    if rows.empty:
        raise ValueError(f"{prepared}: the manifest has no usable {split} rows for {task}")
    return [prepared / p for p in rows["prepared_path"]], rows["label"].astype(str).tolist()


def label_strings(dataset, prepared: Path, task: str) -> list[str]:
    """Full label strings (with `m`) of a dataset's items (`(path, class index)` pairs), from the
    manifest by `prepared_path`.

    An image without a manifest row (hand-made folders) gets the plain label of its folder; one
    warning says how many.
    """
    try:
        manifest = read_manifest(prepared)
        by_path = dict(zip(manifest["prepared_path"], manifest["label"]))
    except FileNotFoundError:
        by_path = {}
    labels, missing = [], 0
    for path, y in dataset.items:
        rel = PurePosixPath(*Path(path).relative_to(prepared).parts).as_posix()
        if rel in by_path:
            labels.append(by_path[rel])
        else:
            labels.append(label_string(task, int(y)))
            missing += 1
    if missing:
        log.warning("%d of %d val images have no row in %s/%s: using their folder's class "
                    "as the label (no 'maybe' classes)", missing, len(labels), prepared, MANIFEST)
    return labels
