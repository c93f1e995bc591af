"""A small, learnable dataset in the exact FashionAI layout, drawn with OpenCV from a seed, in one
of two styles (STYLES): `shop` (fashionai.demodata.shop: like the competition's photos, uneven
classes, a few wrong training labels) or `classic` (fashionai.demodata.scenes: easy, balanced).

Written under `out` (docs/design.md, "The data" and "Files on disk", gives the formats):
```
base/Annotations/label.csv                 training labels, all selected tasks, grouped by task
base/Images/<task>/<id>.jpg
web/Annotations/skirt_length_labels.csv    warm-up labels (skirt task only, like the real data)
web/Images/skirt_length_labels/<id>.jpg
rank/Tests/question.csv                    test questions, grouped by task, third field `?`
rank/Tests/answers.csv                     their ground truth in label format, question order
rank/Images/<task>/<id>.jpg
demo.json                                  the generator's parameters and counts
.fashionai-demo-data                       the marker: `--overwrite` replaces only a folder carrying it
```
What an image shows is fashionai.demodata.scenes' business; this module plans the rows and writes them.

Determinism: each image draws from its own `numpy.random.Generator` seeded by (seed, task, split,
class, number), so the same arguments give byte-identical files whatever else is generated (the
marker alone records when the folder was made).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fashionai.core.io import atomic_write, building, claiming, write_marker
from fashionai.core.tasks import TASK_NAMES, check_task, label_string, num_classes
from fashionai.demodata.scenes import encode_jpeg, render
from fashionai.demodata.shop import render_shop

log = logging.getLogger(__name__)

WARMUP_TASK = "skirt_length_labels"
SUMMARY = "demo.json"
MARKER = ".fashionai-demo-data"
SPLITS = ("train", "warmup", "test")  # fixed order: part of every image's seed
# split -> (subset folder, annotation file inside it)
SPLIT_FILES = {
    "train": ("base", "Annotations/label.csv"),
    "warmup": ("web", f"Annotations/{WARMUP_TASK}.csv"),
    "test": ("rank", "Tests/question.csv"),
}
ANSWERS = "rank/Tests/answers.csv"
# The styles (`--style`): how images are drawn, and how uneven and noisy the training labels are.
# shop (fashionai.demodata.shop): like the competition's photos, classes 3:1 uneven, 3% wrong
# training labels; classic (fashionai.demodata.scenes): large centred features, balanced, clean.
STYLES = {
    "shop": dict(render=render_shop, imbalance=3.0, noise=0.03),
    "classic": dict(render=render, imbalance=1.0, noise=0.0),
}
DEFAULT_STYLE = "shop"


# --- rows ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoRow:
    """One generated image: where it goes, its labelled class and optional `m` class, its seed, and
    the class it shows (`shown`; differs from `index` on a row with a wrong label)."""

    split: str
    task: str
    image_id: str
    index: int
    maybe: int | None
    seed: tuple[int, ...]
    shown: int | None = None

    @property
    def image(self) -> str:
        """The path written in the CSV, relative to base/, web/ or rank/."""
        return f"Images/{self.task}/{self.image_id}.jpg"

    @property
    def label(self) -> str:
        return label_string(self.task, self.index, () if self.maybe is None else (self.maybe,))

    @property
    def drawn(self) -> int:
        """The class the image shows."""
        return self.index if self.shown is None else self.shown


def image_id(seed: int, split: str, task: str, index: int, number: int) -> str:
    """A 32-hex-digit id like the real data's, derived from the image's seed (so reproducible)."""
    return hashlib.blake2s(f"{seed}/{split}/{task}/{index}/{number}".encode(), digest_size=16).hexdigest()


def _maybe_class(task: str, index: int, rng: np.random.Generator) -> int:
    """An adjacent class for an `m` (a plausible second class); never Invisible for a visible one."""
    if index == 0:
        return 1
    options = [c for c in (index - 1, index + 1) if 1 <= c < num_classes(task)]
    return int(rng.choice(options))


def class_counts(task: str, per_class: int, imbalance: float, seed: int) -> list[int]:
    """Images per class: `per_class` each, or with `imbalance` r > 1 counts spread geometrically
    from r to 1 (most to fewest, in a seeded order of the classes, the same for every split) with
    the same total, at least one each: real annotation is uneven (skirt 19,333 rows, neck 5,696)."""
    k = num_classes(task)
    if imbalance <= 1.0:
        return [per_class] * k
    weights = imbalance ** -(np.arange(k) / max(k - 1, 1))
    order = np.random.default_rng([seed, TASK_NAMES.index(task), 99]).permutation(k)
    shares = weights[np.argsort(order)] / weights.sum()
    return [max(1, int(round(per_class * k * w))) for w in shares]


def plan_rows(task: str, split: str, counts: int | Sequence[int], maybe_fraction: float, seed: int,
              noise: float = 0.0) -> list[DemoRow]:
    """`counts` rows per class of `task` (one count for every class, or one per class) in shuffled
    order; round(fraction * rows) carry an `m`; round(noise * rows) carry a wrong label (another
    class, at random, while the image shows its own: annotation mistakes)."""
    t, sp = TASK_NAMES.index(task), SPLITS.index(split)
    k = num_classes(task)
    counts = [counts] * k if isinstance(counts, int) else list(counts)
    rng = np.random.default_rng([seed, t, sp])
    pairs = [(c, n) for c in range(k) for n in range(counts[c])]
    order = rng.permutation(len(pairs))
    with_maybe = set(rng.permutation(len(pairs))[:round(maybe_fraction * len(pairs))].tolist())
    rows = []
    for i in order.tolist():
        c, n = pairs[i]
        maybe = _maybe_class(task, c, rng) if i in with_maybe else None
        rows.append(DemoRow(split, task, image_id(seed, split, task, c, n), c, maybe, (seed, t, sp, c, n)))
    return _mislabel(rows, noise, np.random.default_rng([seed, t, sp, 1]))


def _mislabel(rows: list[DemoRow], noise: float, rng: np.random.Generator) -> list[DemoRow]:
    """round(noise * rows) of the rows, chosen at random, relabelled to another class (no `m`)."""
    if noise <= 0 or not rows:
        return rows
    k = num_classes(rows[0].task)
    for i in rng.permutation(len(rows))[:round(noise * len(rows))].tolist():
        wrong = int((rows[i].index + rng.integers(1, k)) % k)
        rows[i] = dataclasses.replace(rows[i], index=wrong, maybe=None, shown=rows[i].index)
    return rows


@dataclass(frozen=True)
class Plan:
    """What to generate besides sizes: images per class per split, tasks, the style's imbalance and
    label noise (train and warm-up rows only: the test answers stay the truth), `m` share, seed."""

    counts: dict[str, int]
    tasks: Sequence[str]
    maybe_fraction: float
    seed: int
    imbalance: float = 1.0
    noise: float = 0.0


def _all_rows(plan: Plan) -> list[DemoRow]:
    """Every row of every split, grouped by split then task; ids checked unique across the root."""
    rows = []
    for split in SPLITS:
        for task in plan.tasks:
            if split != "warmup" or task == WARMUP_TASK:
                counts = class_counts(task, plan.counts[split], plan.imbalance, plan.seed)
                noise = plan.noise if split != "test" else 0.0
                rows += plan_rows(task, split, counts, plan.maybe_fraction, plan.seed, noise)
    ids = [r.image_id for r in rows]
    if len(set(ids)) != len(ids):  # 128-bit hashes: would mean a bug in image_id
        raise AssertionError("duplicate demo image ids")
    return rows


# --- writing ------------------------------------------------------------------------------------
def _write_text(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(f"{line}\n" for line in lines))


def _write_csvs(rows: Sequence[DemoRow], root: Path) -> None:
    """label.csv, the warm-up CSV, question.csv and answers.csv (no header, `\\n` endings)."""
    for split, (subset, name) in SPLIT_FILES.items():
        chosen = [r for r in rows if r.split == split]
        if not chosen:
            continue
        third = (lambda r: "?") if split == "test" else (lambda r: r.label)
        _write_text(root / subset / name, (f"{r.image},{r.task},{third(r)}" for r in chosen))
        if split == "test":
            _write_text(root / ANSWERS, (f"{r.image},{r.task},{r.label}" for r in chosen))


def _write_images(rows: Sequence[DemoRow], root: Path, style: str, min_size: int, max_size: int,
                  quality: int) -> None:
    draw = STYLES[style]["render"]
    for row in tqdm(rows, desc="demo images", unit="img", disable=None, leave=False):
        rng = np.random.default_rng(list(row.seed))
        img = draw(row.task, row.drawn, rng, min_size=min_size, max_size=max_size, toward=row.maybe)
        path = root / SPLIT_FILES[row.split][0] / row.image
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(img, quality))


def _summary(rows: Sequence[DemoRow], tasks: Sequence[str], params: dict) -> dict:
    """Rows per task, split and class, and `m` rows per task and split."""
    per_task = {}
    for task in tasks:
        entry = {"classes": num_classes(task)}
        for split in SPLITS:
            mine = [r for r in rows if r.task == task and r.split == split]
            if mine:
                entry[split] = [sum(r.index == c for r in mine) for c in range(num_classes(task))]
                entry[f"{split}_maybe"] = sum(r.maybe is not None for r in mine)
                entry[f"{split}_wrong"] = sum(r.shown is not None for r in mine)
        per_task[task] = entry
    totals = {split: sum(r.split == split for r in rows) for split in SPLITS}
    return {"params": params, "images": len(rows), "rows": totals, "tasks": per_task}


def _check_args(counts: dict[str, int], min_size: int, max_size: int, maybe_fraction: float,
                quality: int, style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
    if counts["train"] < 1 or counts["test"] < 1 or counts["warmup"] < 0:
        raise ValueError(f"need train and test per class >= 1 and warm-up >= 0, got {counts}")
    if not 32 <= min_size <= max_size <= 4096:
        raise ValueError(f"image sizes need 32 <= min_size <= max_size <= 4096, got {min_size}, {max_size}")
    if not 0.0 <= maybe_fraction <= 1.0:
        raise ValueError(f"maybe_fraction must be in [0, 1], got {maybe_fraction}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")


def make_demo_data(
    out: str | Path, *, train_per_class: int = 80, test_per_class: int = 8, warmup_per_class: int = 10,
    min_size: int = 160, max_size: int = 256, maybe_fraction: float = 0.05, seed: int = 0,
    tasks: Sequence[str] = TASK_NAMES, quality: int = 90, overwrite: bool = False, style: str = "classic",
) -> dict:
    """Write a demo data root at `out` (layout in the module docstring); return its summary.

    `style` (STYLES): `shop` is what `fashionai demo-data` and the demo draw (DEFAULT_STYLE); the
    library keeps `classic` as its default because the test suite's fixtures count on balanced,
    clean classes. With an imbalanced style `*_per_class` is the mean per class.
    The summary (also saved as `out/demo.json`) has `params`, `images`, `rows` per split and, per
    task, rows per class for `train` (base/), `warmup` (web/, skirt only) and `test` (rank/), with
    the `m` rows and wrong labels of each.
    """
    out = Path(out)
    tasks = [check_task(t) for t in (tasks.split(",") if isinstance(tasks, str) else tasks)]
    counts = {"train": train_per_class, "warmup": warmup_per_class, "test": test_per_class}
    _check_args(counts, min_size, max_size, maybe_fraction, quality, style)
    plan = Plan(counts, tasks, maybe_fraction, seed, STYLES[style]["imbalance"], STYLES[style]["noise"])
    with claiming(out, MARKER, overwrite, "demo data") as target:
        params = {"seed": seed, "tasks": tasks, "per_class": counts, "min_size": min_size,
                  "max_size": max_size, "maybe_fraction": maybe_fraction, "quality": quality, "style": style,
                  "imbalance": plan.imbalance, "label_noise": plan.noise}
        rows = _all_rows(plan)
        with building(target) as tmp:
            _write_images(rows, tmp, style, min_size, max_size, quality)
            _write_csvs(rows, tmp)
            summary = _summary(rows, tasks, params)
            _write_text(tmp / SUMMARY, [json.dumps(summary, indent=2)])
            write_marker(tmp, MARKER, "demo-data")
    log.info("%s", summary_line(summary, out))
    return {**summary, "out": str(out)}


def summary_line(summary: dict, out: str | Path) -> str:
    """One line: where, how many images per split, tasks, seed."""
    rows = summary["rows"]
    return (f"demo data in {out}: {summary['images']} images (train {rows['train']}, warm-up "
            f"{rows['warmup']}, test {rows['test']}) for {len(summary['tasks'])} task(s), "
            f"seed {summary['params']['seed']}, style {summary['params']['style']}")
