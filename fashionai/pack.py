"""Pack prepared class folders into RecordIO once, for the fast training input (`--input rec`).

Why: on GPU hosts, decoding full-size JPEGs and augmenting them in Python loader workers is the
bottleneck (~190 full-size images/s per core). Packing resizes every image once (short side
`short_side`) into one `.rec` file per split, which MXNet's C++ `mx.io.ImageRecordIter` decodes and
augments in native threads (fashionai.data.RecordLoader).

Files written next to the split folders (docs/design.md layout):
`<prepared>/<task>/<split>.lst` (our list: index, class index = the class folder's name, path
relative to the split folder; val in `ImageFolderDataset` order (class folders 0..K-1, file names
sorted), so val batches come in the folder path's order; train in a fixed shuffle of that order
(im2rec --list's seed), so the contiguous parts ImageRecordIter gives distributed workers hold every
class), `<split>.rec` + `<split>.idx`
(encoded by MXNet's own `tools/im2rec.py` functions) and `<split>.rec.json` (the packed settings and
a fingerprint of the folder: sorted relative paths, labels and byte sizes). Training compares that
fingerprint with the folder and refuses a stale pack. The sidecar is written last: it is the commit
point, so an interrupted pack is never read.

Short side: 256 by default = `data.resize_size(224)`, the evaluation resize of the default 224 px
input, so the val view of a pack matches the folder path's up to one JPEG re-encode. Training crops
(random-resized, area >= min_scale) are then cut from a 256 px image instead of the full-size one:
small crops are upsampled more, a deliberate trade of some detail for a ~4x cheaper decode of
512 px originals (im2rec resizes every image, so smaller ones are upsampled). For larger inputs
pack at least `resize_size(data_shape)` (e.g. 384 for 336 px); training warns when the pack is
smaller than that.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import random
import time
from argparse import Namespace
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

from fashionai.data import usable_cores
from fashionai.tasks import TASK_GROUPS, expand_tasks, num_classes

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
DEFAULT_SHORT_SIDE = 256  # resize_size(224): see the module docstring
DEFAULT_QUALITY = 90
FORMAT = 1  # version of the sidecar layout
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # what gluon's ImageFolderDataset reads
SHOWN_EXAMPLES = 10
TRAIN_ORDER_SEED = 100  # im2rec --list shuffles with random.seed(100); any fixed seed would do


class StalePackError(ValueError):
    """The pack is missing, from another layout, or older than the folder it was made from."""


@dataclass(frozen=True)
class PackFiles:
    """The four files of one packed split."""

    folder: Path  # the split's class folders
    lst: Path
    rec: Path
    idx: Path
    meta: Path

    @classmethod
    def of(cls, prepared: str | Path, task: str, split: str) -> PackFiles:
        base = Path(prepared) / task
        return cls(base / split, base / f"{split}.lst", base / f"{split}.rec", base / f"{split}.idx",
                   base / f"{split}.rec.json")


def repack_hint(prepared: str | Path, task: str) -> str:
    return f"run `fashionai pack --prepared {prepared} --tasks {task}` again"


# --- the folder ---------------------------------------------------------------------------------
def list_split(folder: str | Path, classes: int) -> list[tuple[str, int]]:
    """(path relative to `folder`, class index) of every image, in ImageFolderDataset's order.

    Same rules as gluon's ImageFolderDataset (sorted class folders, sorted file names, .jpg /
    .jpeg / .png), so item i of a pack is item i of the folder dataset and its label is the folder's
    class index; the folders must be exactly 0..K-1 (as fashionai.data.image_folder checks).
    """
    folder = Path(folder)
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    expected = [str(i) for i in range(classes)]
    if found != expected:
        raise ValueError(f"{folder}: class folders {found}, expected {expected} (fashionai prepare)")
    items = []
    for label, name in enumerate(expected):
        for file in sorted(os.listdir(folder / name)):
            if os.path.splitext(file)[1].lower() in IMAGE_EXTENSIONS:
                items.append((f"{name}/{file}", label))
    if not items:
        raise ValueError(f"{folder}: no images")
    return items


def pack_order(items: Sequence[tuple[str, int]], split: str) -> list[tuple[str, int]]:
    """The order written to the pack: val as listed, train shuffled by a fixed seed (the module
    docstring says why). Deterministic: the same folder always packs the same way."""
    items = list(items)
    if split == "train":
        random.Random(TRAIN_ORDER_SEED).shuffle(items)
    return items


def fingerprint(folder: str | Path, items: Sequence[tuple[str, int]]) -> str:
    """sha256 of the sorted (relative path, label, byte size) lines: changes when an image is added,
    removed, moved to another class or rewritten with another size. Sizes, not contents, so that
    checking a split before training costs one stat per image, not a read."""
    folder = Path(folder)
    lines = sorted(f"{rel}\t{label}\t{(folder / rel).stat().st_size}\n" for rel, label in items)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def write_lst(path: Path, items: Sequence[tuple[str, int]]) -> None:
    """im2rec's list format: index \\t label \\t relative path, one image a line."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(f"{i}\t{label}\t{rel}\n" for i, (rel, label) in enumerate(items)))
    os.replace(tmp, path)


def read_lst(path: str | Path) -> list[tuple[str, int]]:
    """(relative path, class index) of every line of a `.lst` file we wrote, in order. Parsed here
    rather than by im2rec's `read_list`, whose module imports OpenCV (seconds at training start)."""
    items = []
    for line in Path(path).read_text().splitlines():
        _, label, rel = line.split("\t")
        items.append((rel, int(float(label))))
    return items


# --- im2rec -------------------------------------------------------------------------------------
def load_im2rec() -> ModuleType:
    """MXNet's own `tools/im2rec.py`, shipped inside the installed mxnet package, as a module.

    Imported (not run as a script) so packing can use its `image_encode` (resize, JPEG encode,
    RecordIO header) image by image: a failed image is then known by name, and progress shows.
    """
    import mxnet as mx

    path = Path(mx.__file__).parent / "tools" / "im2rec.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MXNet's im2rec tool is missing from the installed mxnet package")
    spec = importlib.util.spec_from_file_location("mxnet_tools_im2rec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def im2rec_args(folder: Path, short_side: int, quality: int) -> Namespace:
    """The im2rec options `image_encode` reads. No --pass-through (it would store the original
    bytes, unresized); no --pack-label (one label per image: im2rec stores it in the header's
    float label, which ImageRecordIter reads with label_width=1); no centre crop (the iterator
    crops); colour; JPEG."""
    return Namespace(root=str(folder), resize=short_side, quality=quality, pass_through=False,
                     pack_label=False, center_crop=False, color=1, encoding=".jpg")


class _Slot:
    """Stands in for im2rec's output queue: keeps the one (i, record bytes or None, item) put."""

    value: tuple | None = None

    def put(self, value: tuple) -> None:
        self.value = value


def _encode(im2rec: ModuleType, args: Namespace, i: int, item: list) -> tuple[int, bytes | None]:
    slot = _Slot()
    im2rec.image_encode(args, i, item, slot)
    return i, slot.value[1] if slot.value else None


# --- packing ------------------------------------------------------------------------------------
def pack_split(prepared: str | Path, task: str, split: str, *, short_side: int = DEFAULT_SHORT_SIDE,
               quality: int = DEFAULT_QUALITY, threads: int | None = None) -> dict:
    """Pack one split; returns its sidecar dict. ValueError naming every image im2rec could not
    read or encode (nothing is published then: a pack never silently lacks images)."""
    import mxnet as mx

    files = PackFiles.of(prepared, task, split)
    if not files.folder.is_dir():
        raise FileNotFoundError(f"{files.folder}: no such folder; run `fashionai prepare --out {prepared}` first")
    items = pack_order(list_split(files.folder, num_classes(task)), split)
    stamp = fingerprint(files.folder, items)  # before reading: a change while packing shows as stale
    files.meta.unlink(missing_ok=True)  # the commit point goes first: a failed pack leaves no valid one
    write_lst(files.lst, items)
    im2rec, args = load_im2rec(), im2rec_args(files.folder, short_side, quality)
    threads = threads or usable_cores()
    tmp_rec, tmp_idx = (p.with_name(p.name + ".partial") for p in (files.rec, files.idx))
    start, failed = time.time(), []
    record = mx.recordio.MXIndexedRecordIO(str(tmp_idx), str(tmp_rec), "w")
    printed = io.StringIO()  # im2rec prints its errors; they go to the debug log
    try:
        with ThreadPoolExecutor(threads) as pool, contextlib.redirect_stdout(printed):
            # im2rec's list items are [index, relative path, label]; cv2 releases the GIL
            jobs = pool.map(lambda i: _encode(im2rec, args, i, [i, items[i][0], float(items[i][1])]),
                            range(len(items)))
            for i, packed in tqdm(jobs, total=len(items), desc=f"pack {task}/{split}", unit="img",
                                  leave=False, disable=None):
                if packed is None:
                    failed.append(items[i][0])
                else:
                    record.write_idx(i, packed)
    finally:
        record.close()
    if printed.getvalue().strip():
        log.debug("im2rec output for %s/%s:\n%s", task, split, printed.getvalue().rstrip())
    packed_count = _record_count(tmp_idx, tmp_rec)
    if failed or packed_count != len(items):
        tmp_rec.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
        shown = ", ".join(str(files.folder / f) for f in failed[:SHOWN_EXAMPLES])
        more = f" and {len(failed) - SHOWN_EXAMPLES} more" if len(failed) > SHOWN_EXAMPLES else ""
        raise ValueError(f"{task}/{split}: {len(items) - packed_count} of {len(items)} images could not be "
                         f"read or encoded by im2rec: {shown}{more}. Replace or remove them (fashionai "
                         f"prepare checks images) and {repack_hint(prepared, task)}")
    os.replace(tmp_rec, files.rec)
    os.replace(tmp_idx, files.idx)
    meta = {
        "format": FORMAT, "task": task, "split": split, "count": len(items), "classes": num_classes(task),
        "short_side": short_side, "quality": quality, "encoding": ".jpg", "lst": files.lst.name,
        "fingerprint": stamp, "tool": f"mxnet {mx.__version__} tools/im2rec.py",
        "rec_bytes": files.rec.stat().st_size, "packed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp = files.meta.with_name(files.meta.name + ".partial")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, files.meta)
    seconds = time.time() - start
    log.info("%s/%s: packed %d images (short side %d, quality %d) into %s, %.1f MB, %.1f s (%.0f img/s, "
             "%d threads)", task, split, len(items), short_side, quality, files.rec, meta["rec_bytes"] / 1e6,
             seconds, len(items) / max(seconds, 1e-9), threads)
    return meta


def pack(prepared: str | Path, tasks: str | Sequence[str] = "all", *, short_side: int = DEFAULT_SHORT_SIDE,
         quality: int = DEFAULT_QUALITY, threads: int | None = None) -> list[dict]:
    """Pack the train and val split of each task; returns the sidecars.

    `tasks="all"` (or a group) packs the tasks the prepared root has; a named task must be there.
    Every split is attempted; the unreadable images of all of them are reported in one ValueError.
    """
    if short_side < 8 or not 1 <= quality <= 100:
        raise ValueError(f"short side must be >= 8 px and quality in 1..100, got {short_side}, {quality}")
    prepared = Path(prepared)
    if not prepared.is_dir():
        raise FileNotFoundError(f"{prepared}: no such prepared root; run `fashionai prepare --out {prepared}` "
                                "first")
    group = isinstance(tasks, str) and tasks in TASK_GROUPS
    names = expand_tasks(tasks) if isinstance(tasks, str) else tuple(tasks)
    if group:
        names = tuple(t for t in names if (prepared / t).is_dir())
        if not names:
            raise FileNotFoundError(f"{prepared}: no prepared task folders of {tasks!r}")
    metas, errors = [], []
    for task in names:
        for split in SPLITS:
            try:
                metas.append(pack_split(prepared, task, split, short_side=short_side, quality=quality,
                                        threads=threads))
            except ValueError as err:
                errors.append(str(err))
    if errors:
        raise ValueError("\n".join(errors))
    return metas


def _record_count(idx: Path, rec: Path) -> int:
    """Records in a written pack, read back from its index (the count im2rec really wrote)."""
    import mxnet as mx

    record = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
    try:
        return len(record.keys)
    finally:
        record.close()


# --- the reading side's check -------------------------------------------------------------------
def check_pack(prepared: str | Path, task: str, split: str) -> tuple[PackFiles, dict, list[tuple[str, int]]]:
    """(files, sidecar, items of the .lst) of a pack that matches its folder; StalePackError
    (a ValueError) or FileNotFoundError saying to run `fashionai pack` again otherwise."""
    files = PackFiles.of(prepared, task, split)
    if not files.folder.is_dir():
        raise FileNotFoundError(f"{files.folder}: no such folder; run `fashionai prepare --out {prepared}` first")
    missing = [p.name for p in (files.lst, files.rec, files.idx, files.meta) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{files.folder.parent}: no complete RecordIO pack of {split} (missing "
                                f"{', '.join(missing)}) for --input rec: {repack_hint(prepared, task)}")
    try:
        meta = json.loads(files.meta.read_text())
    except json.JSONDecodeError as err:
        raise StalePackError(f"{files.meta}: unreadable ({err}): {repack_hint(prepared, task)}") from None
    if meta.get("format") != FORMAT:
        raise StalePackError(f"{files.meta}: pack format {meta.get('format')}, this version reads {FORMAT}: "
                             f"{repack_hint(prepared, task)}")
    packed = read_lst(files.lst)
    current = list_split(files.folder, num_classes(task))
    if len(packed) != meta["count"] or fingerprint(files.folder, current) != meta["fingerprint"]:
        change = _difference(packed, current, meta["count"])
        raise StalePackError(f"{files.folder} changed after it was packed ({change}); the pack is stale: "
                             f"{repack_hint(prepared, task)}")
    return files, meta, packed


def _difference(packed: list[tuple[str, int]], current: list[tuple[str, int]], count: int) -> str:
    """A short description of what changed: added / removed files, else 'an image was rewritten'."""
    old, new = {p for p, _ in packed}, {p for p, _ in current}
    parts = [f"{len(new)} images now, {count} packed"]
    for word, names in (("added", sorted(new - old)), ("removed", sorted(old - new))):
        if names:
            parts.append(f"{word} {', '.join(names[:3])}" + (" ..." if len(names) > 3 else ""))
    if len(parts) == 1:
        parts.append("an image was rewritten or its label changed")
    return "; ".join(parts)


# --- benchmark ----------------------------------------------------------------------------------
def bench_input(prepared: str | Path, task: str, *, data_shape: int = 224, images: int = 300,
                batch_size: int = 32, threads: int = 1, min_scale: float = 0.08, jitter: float = 0.4,
                lighting: float = 0.1) -> dict:
    """Training-input throughput of the two paths on `task`'s train split (which must be packed):
    the tutorial's (ImageFolderDataset + `data.train_transform`, DataLoader(num_workers=0): one
    Python process decodes and augments) against `--input rec` (ImageRecordIter with `threads`
    decoding threads). Each path draws one warm-up batch, then is timed over `images` images (whole
    batches, each waited for; an epoch boundary, if crossed, counts).

    For per-core figures run it pinned to one core (`taskset -c 0 python ...`, or
    os.sched_setaffinity before MXNet starts its threads); `cores` in the result says how many the
    process could use. Returns, per path, images, img_s (wall clock) and img_per_cpu_s (per CPU
    second of the process: robust to other load on shared cores), their ratios rec / folder
    (`ratio`, `cpu_ratio`) and the settings.
    """
    from fashionai import data

    augment = dict(min_scale=min_scale, jitter=jitter, lighting=lighting)
    folder = data.image_folder(data.split_dir(prepared, task, "train"), num_classes(task))
    loader = data.make_loader(folder, data.train_transform(data_shape, **augment), batch_size, train=True,
                              workers=0)
    folder = _time_batches(lambda: loader, images)
    rec = _time_batches(lambda: data.record_loader(prepared, task, "train", batch_size, train=True,
                                                   data_shape=data_shape, workers=threads, **augment), images)
    result = {"task": task, "data_shape": data_shape, "batch_size": batch_size, "threads": threads,
              "cores": usable_cores(), **{f"folder_{k}": v for k, v in folder.items()},
              **{f"rec_{k}": v for k, v in rec.items()}}
    result["ratio"] = result["rec_img_s"] / result["folder_img_s"]
    result["cpu_ratio"] = result["rec_img_per_cpu_s"] / result["folder_img_per_cpu_s"]
    log.info("input at %d px: folder %.1f img/s (%.1f per CPU s), rec %.1f img/s (%.1f per CPU s, %d "
             "thread(s)): %.1fx wall, %.1fx CPU", data_shape, result["folder_img_s"],
             result["folder_img_per_cpu_s"], result["rec_img_s"], result["rec_img_per_cpu_s"], threads,
             result["ratio"], result["cpu_ratio"])
    return result


def _time_batches(make_loader, images: int) -> dict:
    """Build the loader, draw one warm-up batch (start-up: folder listing, pack check, threads),
    then time whole batches until `images` more (epochs repeat): images, img_s (wall clock) and
    img_per_cpu_s (per second of this process's CPU time, all its threads: the per-core rate,
    unaffected by other processes sharing the cores)."""
    loader = make_loader()
    next(iter(loader))[0].wait_to_read()
    wall, cpu, seen = time.perf_counter(), time.process_time(), 0
    while seen < images:
        for data, _ in loader:
            data.wait_to_read()
            seen += data.shape[0]
            if seen >= images:
                break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images": seen, "img_s": seen / wall, "img_per_cpu_s": seen / max(cpu, 1e-9)}
