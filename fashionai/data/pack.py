"""Pack prepared class folders into RecordIO once, for the fast training input (`--input rec`).

Why: on GPU hosts, decoding full-size JPEGs and augmenting them in Python loader workers is the
bottleneck (~190 full-size images/s per core). Packing resizes every image once (short side
`short_side`) into one `.rec` file per split, which MXNet's C++ `mx.io.ImageRecordIter` decodes and
augments in native threads (fashionai.data.recordio, which also documents the four files of a pack).

Short side: 256 by default = `View(224, 0.875).short` (core.view), the evaluation resize of 224 px
input at ImageNet's crop ratio (at the default crop_ratio 1.0 the val view resizes a 256 px pack to
224, as the folder path resizes the original), so the val view of a pack matches the folder path's
up to one JPEG re-encode and that second resize. Training
crops (random-resized, area >= min_scale) are then cut from a 256 px image instead of the full-size
one: small crops are upsampled more, a deliberate trade of some detail for a ~4x cheaper decode of
512 px originals (im2rec resizes every image, so smaller ones are upsampled). For larger inputs
pack at least the run's `view.short` (e.g. 384 for 336 px at 0.875); training warns when the pack is smaller
than that.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import time
from argparse import Namespace
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

from fashionai.core.cpu import usable_cores
from fashionai.core.io import atomic_write, write_json
from fashionai.core.tasks import TASK_GROUPS, expand_tasks, num_classes
from fashionai.data.recordio import FORMAT, SPLITS, PackFiles, fingerprint, list_split, pack_order, repack_hint

log = logging.getLogger(__name__)

DEFAULT_SHORT_SIDE = 256  # View(224, 0.875).short: see the module docstring
DEFAULT_QUALITY = 90
SHOWN_EXAMPLES = 10


def write_lst(path: Path, items: Sequence[tuple[str, int]]) -> None:
    """im2rec's list format: index \\t label \\t relative path, one image a line."""
    atomic_write(path, "".join(f"{i}\t{label}\t{rel}\n" for i, (rel, label) in enumerate(items)))


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
def _write_records(files: PackFiles, items: list[tuple[str, int]], args: Namespace, threads: int,
                   label: str) -> tuple[Path, Path, list[str]]:
    """Encode every item with im2rec in `threads` threads into `<rec>.partial` / `<idx>.partial`;
    returns those two paths and the relative paths im2rec could not read or encode."""
    import mxnet as mx

    im2rec = load_im2rec()
    tmp_rec, tmp_idx = (p.with_name(p.name + ".partial") for p in (files.rec, files.idx))
    failed = []
    record = mx.recordio.MXIndexedRecordIO(str(tmp_idx), str(tmp_rec), "w")
    printed = io.StringIO()  # im2rec prints its errors; they go to the debug log
    try:
        with ThreadPoolExecutor(threads) as pool, contextlib.redirect_stdout(printed):
            # im2rec's list items are [index, relative path, label]; cv2 releases the GIL
            jobs = pool.map(lambda i: _encode(im2rec, args, i, [i, items[i][0], float(items[i][1])]),
                            range(len(items)))
            for i, packed in tqdm(jobs, total=len(items), desc=f"pack {label}", unit="img", leave=False,
                                  disable=None):
                if packed is None:
                    failed.append(items[i][0])
                else:
                    record.write_idx(i, packed)
    finally:
        record.close()
    if printed.getvalue().strip():
        log.debug("im2rec output for %s:\n%s", label, printed.getvalue().rstrip())
    return tmp_rec, tmp_idx, failed


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
    threads, start = threads or usable_cores(), time.time()
    tmp_rec, tmp_idx, failed = _write_records(files, items, im2rec_args(files.folder, short_side, quality), threads,
                                              f"{task}/{split}")
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
    write_json(files.meta, meta)
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
    metas, errors, failed = [], [], set()
    for task in names:
        for split in SPLITS:
            try:
                metas.append(pack_split(prepared, task, split, short_side=short_side, quality=quality,
                                        threads=threads))
            except ValueError as err:
                errors.append(str(err))
                failed.add(task)
    if errors:
        ready = [t for t in names if t not in failed]
        hint = (f"\nthe other tasks are packed; to pack only those next time: fashionai pack --prepared {prepared} "
                f"--tasks {','.join(ready)}") if ready else ""
        raise ValueError("\n".join(errors) + hint)
    return metas


def _record_count(idx: Path, rec: Path) -> int:
    """Records in a written pack, read back from its index (the count im2rec really wrote)."""
    import mxnet as mx

    record = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
    try:
        return len(record.keys)
    finally:
        record.close()
