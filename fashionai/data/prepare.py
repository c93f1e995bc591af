"""FashionAI annotation CSVs -> per-task train/val class folders (links) + a manifest of every row.

Layout written (see docs/design.md): `<out>/<task>/{train,val}/<class index>/<file>`, readable by
`gluon.data.vision.ImageFolderDataset`, plus `<out>/manifest.csv` (one row per input line, kept or
not; fashionai.data.manifest), `<out>/summary.json` and the marker `<out>/.fashionai-prepared`
(`--overwrite` replaces only a folder carrying it). Nothing is dropped silently: a bad row is
`skipped` with a reason.

File names inside a task folder: base images keep their basename (`200ff0.jpg`); warm-up images
get their subset as a prefix (`web_200ff0.jpg`), so base and warm-up ids never collide. Images are
hard-linked, else symlinked (absolute target), else copied, the cheapest way that works for each.

Symbolic links among the images are followed, also when they point outside the data root (a data
root whose `Images/` lives on another disk is common; the paths *in the CSVs* are what is confined
to the data root): the file a link points to is what gets checked and placed, so a prepared image
is never a link that dangles from its new place. A link that points nowhere is a missing image.
The output is built in a temporary folder next to `out` and swapped in (fashionai.core.io), so a
run never mixes with an earlier one and a failed run leaves nothing behind.
"""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fashionai.core.annotations import AnnotationError, CsvLine, image_path_problem, parse_label_line, read_csv_lines
from fashionai.core.cpu import usable_cores
from fashionai.core.io import atomic_write, building, claiming, write_json, write_marker
from fashionai.core.tasks import TASK_NAMES, TASKS, check_task, expand_tasks, num_classes
from fashionai.data.imagecheck import check_image, strict_pillow
from fashionai.data.loaders import IMAGE_EXTENSIONS
from fashionai.data.manifest import MANIFEST, manifest_text
from fashionai.data.placement import place_all
from fashionai.data.split import stratified_split

log = logging.getLogger(__name__)

BASE_CSV = "base/Annotations/label.csv"
WARMUP_GLOB = "web/Annotations/*.csv"
NOT_SELECTED = "task not selected"
MARKER = ".fashionai-prepared"  # written into every prepared root; --overwrite replaces only such a folder
SHOWN_EXAMPLES = 10


# Short kinds for counting skipped rows; the manifest keeps the precise reason. The AnnotationError
# texts come from fashionai.core.tasks / fashionai.core.annotations (tests pin every kind).
_ANNOTATION_KINDS = (
    ("columns", "wrong number of columns"),
    ("unknown task", "unknown task"),
    ("characters other than", "label with other characters"),
    ("has no 'y'", "label without y"),
    ("exactly one expected", "label with several y"),
    ("classes", "label of the wrong length"),
)


@dataclass
class Row:
    """One input line and what became of it (one manifest row)."""

    source: str
    line: int
    image: str = ""
    task: str = ""
    label: str = ""
    class_index: int | None = None
    split: str = ""
    status: str = "ok"
    reason: str = ""
    prepared_path: str = ""
    subset: str = "base"
    image_key: str = ""  # normalised path relative to the data root, once the path checks pass
    kind: str = ""

    def skip(self, kind: str, reason: str) -> None:
        self.status, self.kind, self.reason = "skipped", kind, reason

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


# --- reading and row checks ---------------------------------------------------------------------
def _input_csvs(data_root: Path, warmup: bool) -> list[Path]:
    """The label CSVs to read: base first, then the warm-up files in name order."""
    base = data_root / BASE_CSV
    if not base.is_file():
        raise FileNotFoundError(
            f"{base}: no such file; --data must be a FashionAI data root (with {BASE_CSV})")
    return [base] + (sorted(data_root.glob(WARMUP_GLOB)) if warmup else [])


def _annotation_kind(reason: str) -> str:
    """The short kind of an AnnotationError reason, so the summary can count rows by kind."""
    return next((kind for text, kind in _ANNOTATION_KINDS if text in reason), "bad label")


def _path_problem(image: str, task: str, subset: str) -> tuple[str, str] | None:
    """(kind, reason) when `image` breaks the shared path rule (fashionai.core.annotations) inside its
    subset folder, or has an extension ImageFolderDataset skips."""
    problem = image_path_problem(image, task, f"{subset}/")
    if problem:
        return problem
    if posixpath.splitext(image)[1].lower() not in IMAGE_EXTENSIONS:
        return ("unsupported file type",
                f"image path {image!r} does not end in {'/'.join(IMAGE_EXTENSIONS)} "
                "(ImageFolderDataset skips it)")
    return None


def _row_from_line(line: CsvLine, source: str, subset: str, selected: frozenset[str]) -> Row:
    """Parse and path-check one CSV line; the row comes back `ok` or `skipped` with its reason."""
    fields = line.fields + ("",) * (3 - len(line.fields))
    row = Row(source, line.line, image=fields[0], task=fields[1], label=fields[2], subset=subset)
    if len(line.fields) == 3 and row.task in TASKS and row.task not in selected:
        row.skip(NOT_SELECTED, f"{NOT_SELECTED} (--tasks)")
        return row
    try:
        parsed = parse_label_line(line)
    except AnnotationError as err:
        reason = str(err).removeprefix(f"{line.where}: ")
        row.skip(_annotation_kind(reason), reason)
        return row
    row.class_index = parsed.label.index
    problem = _path_problem(row.image, row.task, subset)
    if problem:
        row.skip(*problem)
    else:
        row.image_key = posixpath.normpath(posixpath.join(subset, row.image))
    return row


def _read_rows(data_root: Path, csvs: Sequence[Path], selected: frozenset[str]) -> list[Row]:
    """Every line of every CSV as a Row, in file then line order."""
    rows = []
    for path in csvs:
        source = path.relative_to(data_root).as_posix()
        subset = source.split("/")[0]
        lines = read_csv_lines(path)
        rows += [_row_from_line(line, source, subset, selected) for line in lines]
        log.info("%s: %d lines", source, len(lines))
    return rows


def _mark_duplicates(rows: Iterable[Row]) -> None:
    """Rows naming one image (after path normalisation): identical repeats keep the first row and
    skip the later ones; rows that give it different labels are all skipped, each naming the rows
    it conflicts with, since nothing tells which label is right."""
    by_image: dict[str, list[Row]] = {}
    for row in rows:
        if row.status == "ok":
            by_image.setdefault(row.image_key, []).append(row)
    for group in by_image.values():
        if len({row.label for row in group}) == 1:
            for row in group[1:]:
                row.skip("duplicate row", f"duplicate of {group[0].where}")
            continue
        for row in group:
            others = [f"{other.label} at {other.where}" for other in group if other.label != row.label]
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            row.skip("conflicting labels", f"conflicting labels for one image: {row.label} here, "
                     f"{', '.join(others[:3])}{more}")


def _check_images(rows: Sequence[Row], data_root: Path, workers: int) -> None:
    """Run `check_image` on every still-ok row in parallel threads and skip the failures."""
    todo = [row for row in rows if row.status == "ok"]
    paths = [data_root / row.image_key for row in todo]
    bar = tqdm(total=len(todo), desc="checking images", unit="img")
    with strict_pillow(), ThreadPoolExecutor(max_workers=workers) as pool, bar:  # strict for all threads
        for row, problem in zip(todo, pool.map(check_image, paths)):
            bar.update()
            if problem:
                row.skip(*problem)


def _check_usable(rows: Sequence[Row], data_root: Path) -> None:
    """Raise, before anything is written, when an input file has rows but not one usable (all bad,
    a header alone), or when no row at all is usable: an empty prepared root would only fail later,
    in training, and replacing a good one with it loses the user's work."""
    by_source: dict[str, list[Row]] = {}
    for row in rows:
        by_source.setdefault(row.source, []).append(row)
    for source, mine in by_source.items():
        bad = [r for r in mine if r.status != "ok" and r.kind != NOT_SELECTED]
        if bad and not any(r.status == "ok" for r in mine):
            kinds = ", ".join(f"{kind}: {n}" for kind, n in Counter(r.kind for r in bad).most_common())
            raise ValueError(f"{data_root / source}: no usable row among its {len(mine)} ({kinds}); nothing "
                             "written. First:\n  " + "\n  ".join(f"{r.where}: {r.reason}" for r in bad[:3]))
    if not any(r.status == "ok" for r in rows):
        raise ValueError(f"{data_root}: no rows of the selected tasks in {', '.join(by_source)} "
                         "(see --tasks); nothing written")


# --- split --------------------------------------------------------------------------------------
def _assign_splits(
    rows: Sequence[Row], seed: int, val_fraction: float, folds: int | None, fold: int | None,
) -> None:
    """Set `split` on the ok rows: base rows split per task, warm-up rows always train."""
    by_task: dict[str, list[Row]] = {}
    for row in rows:
        if row.status == "ok":
            row.split = "train"
            if row.subset == "base":
                by_task.setdefault(row.task, []).append(row)
    for task, task_rows in by_task.items():
        task_rows.sort(key=lambda r: r.image_key)  # the split must not depend on CSV row order
        try:
            is_val = stratified_split([r.class_index for r in task_rows], seed=seed,
                                      val_fraction=val_fraction, folds=folds, fold=fold)
        except ValueError as err:
            raise ValueError(f"{task}: {err}") from None
        for row, val in zip(task_rows, is_val):
            row.split = "val" if val else "train"
        if not is_val.any() and (folds or val_fraction > 0):
            log.warning("%s: no val images (%d usable base rows)", task, len(task_rows))


# --- output -------------------------------------------------------------------------------------
def _name_files(rows: Iterable[Row]) -> None:
    """Give every ok row its `prepared_path`, unique within its task folder."""
    used: set[tuple[str, str]] = set()
    for row in rows:
        if row.status != "ok":
            continue
        base = posixpath.basename(row.image_key)
        name = base if row.subset == "base" else f"{row.subset}_{base}"
        stem, ext = posixpath.splitext(name)
        n = 1
        while (row.task, name) in used:  # only if a base file is itself named like `web_<id>`
            n, name = n + 1, f"{stem}-{n}{ext}"
        used.add((row.task, name))
        row.prepared_path = f"{row.task}/{row.split}/{row.class_index}/{name}"


def _make_class_folders(tmp: Path, tasks: Iterable[str]) -> None:
    """Create every class folder, even empty: ImageFolderDataset numbers classes by folder order,
    so a missing folder would shift the labels of all later classes."""
    for task in tasks:
        for split in ("train", "val"):
            for index in range(num_classes(task)):
                (tmp / task / split / str(index)).mkdir(parents=True, exist_ok=True)


def _link_all(rows: Sequence[Row], data_root: Path, tmp: Path) -> str:
    """Place every ok row's image in `tmp` (fashionai.data.placement: links followed, the cheapest
    way that works per image); return the way, or the mix of ways with counts."""
    todo = [row for row in rows if row.status == "ok"]
    return place_all([(data_root / row.image_key, tmp / row.prepared_path) for row in todo])


def _write_manifest(rows: Iterable[Row], path: Path) -> None:
    atomic_write(path, manifest_text(
        [r.source, r.line, r.image, r.task, r.label, "" if r.class_index is None else r.class_index, r.split,
         r.status, r.reason, r.prepared_path] for r in rows))


def _build(rows: Sequence[Row], summary: dict, data_root: Path, out: Path) -> None:
    """Write links, manifest, summary and marker into a temp folder next to `out`, then swap it in."""
    with building(out) as tmp:
        _make_class_folders(tmp, summary["tasks"])
        summary["link_mode"] = _link_all(rows, data_root, tmp)
        _write_manifest(rows, tmp / MANIFEST)
        write_json(tmp / "summary.json", summary)
        write_marker(tmp, MARKER, "prepare")


# --- summary ------------------------------------------------------------------------------------
def _summarise(rows: Sequence[Row], tasks: Sequence[str]) -> dict:
    """Counts per task (train/val per class, skipped by kind) and the first skipped rows."""
    per_task = {}
    for task in tasks:
        k = num_classes(task)
        mine = [r for r in rows if r.task == task]
        ok = [r for r in mine if r.status == "ok"]
        per_task[task] = {
            "rows": len(mine), "ok": len(ok),
            "warmup": sum(r.subset != "base" for r in ok),
            "train": np.bincount([r.class_index for r in ok if r.split == "train"], minlength=k).tolist(),
            "val": np.bincount([r.class_index for r in ok if r.split == "val"], minlength=k).tolist(),
            "skipped": dict(Counter(r.kind for r in mine if r.status != "ok")),
        }
    skipped = [r for r in rows if r.status != "ok" and r.kind != NOT_SELECTED]
    return {
        "rows": len(rows), "ok": sum(r.status == "ok" for r in rows), "skipped": len(skipped),
        "not_selected": sum(r.kind == NOT_SELECTED for r in rows),
        "skipped_by_reason": dict(Counter(r.kind for r in skipped).most_common()),
        "first_skipped": [f"{r.where}: {r.reason}" for r in skipped[:SHOWN_EXAMPLES]],
        "tasks": per_task,
    }


def format_summary(summary: dict) -> str:
    """The summary as a printable table (per task, then skipped rows by reason and examples)."""
    lines = [f"{'task':<24}{'rows':>7}{'ok':>7}{'warmup':>7}{'train':>7}{'val':>6}{'skipped':>8}  "
             "train/val per class"]
    for task, t in summary["tasks"].items():
        per_class = " ".join(f"{i}:{a}/{b}" for i, (a, b) in enumerate(zip(t["train"], t["val"])))
        lines.append(f"{task:<24}{t['rows']:>7}{t['ok']:>7}{t['warmup']:>7}{sum(t['train']):>7}"
                     f"{sum(t['val']):>6}{sum(t['skipped'].values()):>8}  {per_class}")
    unselected = f", {summary['not_selected']} rows of unselected tasks" if summary["not_selected"] else ""
    lines.append(f"{summary['ok']} of {summary['rows']} rows prepared into {summary['out']} "
                 f"(images by {summary.get('link_mode', '-')}); "
                 f"{summary['skipped']} bad rows skipped{unselected}")
    lines += [f"  {n:>6}  {kind}" for kind, n in summary["skipped_by_reason"].items()]
    if summary["first_skipped"]:
        lines.append("first skipped rows:")
        lines += [f"  {example}" for example in summary["first_skipped"]]
    return "\n".join(lines)


# --- entry points -------------------------------------------------------------------------------
def _check_args(
    seed: int, val_fraction: float, folds: int | None, fold: int | None, workers: int | None,
) -> int:
    """Validate the split options; return the worker count."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in 0..2**32-1 (numpy and scikit-learn seeds), got {seed}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    if (folds is None) != (fold is None):
        raise ValueError("--folds K and --fold I go together")
    if folds is not None and not (folds >= 2 and 0 <= fold < folds):
        raise ValueError(f"need --folds K >= 2 and --fold I in 0..K-1, got K={folds}, I={fold}")
    workers = usable_cores() if workers is None else workers
    if workers < 1:
        raise ValueError(f"-j must be at least 1, got {workers}")
    return workers


def prepare(
    data_root: str | Path, out: str | Path, *, seed: int = 0, val_fraction: float = 0.1,
    folds: int | None = None, fold: int | None = None, warmup: bool = True, strict: bool = False,
    overwrite: bool = False, workers: int | None = None, tasks: str | Sequence[str] | None = None,
) -> dict:
    """Prepare `data_root` (FashionAI layout) into `out`; return the summary (also summary.json).

    `tasks`: None for all, a spec for `expand_tasks` (`length`, `a,b`) or a list of task names.
    With `strict`, any bad row raises ValueError and nothing is written. Without it, bad rows are
    skipped with their reason, but an input file with rows and not one usable (all bad, a header
    alone), or no usable row at all, raises ValueError naming the file and why, and writes nothing.
    Rows that give one image different labels are all skipped, each naming the others.
    """
    data_root, out = Path(data_root), Path(out)
    workers = _check_args(seed, val_fraction, folds, fold, workers)
    if tasks is None:
        selected = TASK_NAMES
    else:
        selected = expand_tasks(tasks) if isinstance(tasks, str) else tuple(check_task(t) for t in tasks)
    if not selected:
        raise ValueError("no tasks selected")
    with claiming(out, MARKER, overwrite, "a prepared folder", inputs=[("the data root", data_root)]) as target:
        rows = _read_rows(data_root, _input_csvs(data_root, warmup), frozenset(selected))
        _mark_duplicates(rows)
        _check_images(rows, data_root, workers)
        _check_usable(rows, data_root)
        _assign_splits(rows, seed, val_fraction, folds, fold)
        summary = _summarise(rows, selected)
        if strict and summary["skipped"]:
            raise ValueError(f"strict: {summary['skipped']} bad rows, nothing written; first:\n  "
                             + "\n  ".join(summary["first_skipped"]))
        _name_files(rows)
        summary = {"data_root": str(data_root), "out": str(out), "seed": seed, "val_fraction": val_fraction,
                   "folds": folds, "fold": fold, "warmup": warmup, **summary}
        _build(rows, summary, data_root, target)
    log.info("%d of %d rows prepared into %s; %d bad rows skipped", summary["ok"], summary["rows"], out,
             summary["skipped"])
    return summary
