"""Training input per core: the tutorial's loader vs `--input rec`, on 512 px demo JPEGs (quality 90).

    .venv/bin/python bench/bench_input.py [--size 224] [--images 300] [--threads 1 2]

Both paths decode and augment the same train split the same way (random resized crop, mirror,
colour jitter, lighting, normalisation) into (B, 3, S, S) batches:
- folder: gluon's ImageFolderDataset + the project's transforms in a DataLoader without worker
  processes (the tutorial's loader; each worker process would add one core's worth of the same);
- rec: MXNet's C++ ImageRecordIter over the split packed by `fashionai pack` (short side 256,
  quality 90), with `--threads` decoding threads.
Each case runs in a child process pinned to that many cores (sched_setaffinity before MXNet
starts), so img/s there is per core for the 1-core cases; `bench_input` does the timing (one
warm-up batch, then whole batches).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

if TYPE_CHECKING:
    from fashionai.core.view import View

TASK = "skirt_length_labels"


def bench_input(prepared: str | Path, task: str, *, view: View, images: int = 300, batch_size: int = 32,
                threads: int = 1, min_scale: float = 0.08, jitter: float = 0.4, lighting: float = 0.1) -> dict:
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
    from fashionai.core.tasks import num_classes
    from fashionai.data.loaders import image_folder, make_loader, split_dir, usable_cores
    from fashionai.data.recordio import record_loader
    from fashionai.data.transforms import train_transform

    augment = dict(min_scale=min_scale, jitter=jitter, lighting=lighting)
    folder = image_folder(split_dir(prepared, task, "train"), num_classes(task))
    loader = make_loader(folder, train_transform(view, **augment), batch_size, train=True, workers=0)
    folder = _time_batches(lambda: loader, images)
    rec = _time_batches(lambda: record_loader(prepared, task, "train", batch_size, train=True,
                                              view=view, workers=threads, **augment), images)
    result = {"task": task, "data_shape": view.size, "batch_size": batch_size, "threads": threads,
              "cores": usable_cores(), **{f"folder_{k}": v for k, v in folder.items()},
              **{f"rec_{k}": v for k, v in rec.items()}}
    result["ratio"] = result["rec_img_s"] / result["folder_img_s"]
    result["cpu_ratio"] = result["rec_img_per_cpu_s"] / result["folder_img_per_cpu_s"]
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


def child(args: argparse.Namespace) -> None:
    """One pinned case: bench_input's result plus this process's peak RSS."""
    threads = args.threads[0]
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from fashionai.core.view import IMAGENET_CROP_RATIO, View

    # at the view both paths have always been timed on: ImageNet's crop ratio (the pack's 256 px at 224)
    result = bench_input(args.prepared, TASK, view=View(args.size, IMAGENET_CROP_RATIO), images=args.images,
                         batch_size=args.batch, threads=threads)
    print(json.dumps({**result, "rss_mb": common.peak_rss_mb()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=300, help="images timed per path")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="cores (and rec threads) per case, e.g. 1 2")
    p.add_argument("--workdir", default="bench/.work")
    p.add_argument("--json", help="append the result to this JSON lines file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prepared", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    from fashionai.data.pack import pack

    info = common.machine_info()
    prepared = common.demo_images(Path(args.workdir), per_class=12, size=512)
    pack(prepared, [TASK], short_side=256, quality=90)
    rows = []
    for threads in sorted({min(t, common.cores()) for t in args.threads}):
        r = common.run_child(Path(__file__), ["--prepared", str(prepared), "--size", str(args.size), "--images",
                                              str(args.images), "--batch", str(args.batch), "--threads",
                                              str(threads)], {})
        per_core = threads == 1
        rows.append({"cores": threads, "folder img/s": r["folder_img_s"], "rec img/s": r["rec_img_s"],
                     "rec / folder": f"{r['ratio']:.2f}x", "folder img per CPU s": r["folder_img_per_cpu_s"],
                     "rec img per CPU s": r["rec_img_per_cpu_s"], "CPU ratio": f"{r['cpu_ratio']:.2f}x",
                     "peak RSS MiB": r["rss_mb"], "note": "per core" if per_core else "folder: still one process"})
    notes = ["img per CPU s: images per second of the process's CPU time (all its threads), the per-core "
             "rate even when other load shares the cores",
             "with N cores the folder path would need N DataLoader worker processes to use them "
             "(`--workers`, default min(4, cores)); rec uses its decoding threads"]
    common.report(f"Training input at {args.size} px from 512 px JPEGs: folder loader vs RecordIO", info,
                  {"batch": args.batch, "images per case": args.images}, rows,
                  ["cores", "folder img/s", "rec img/s", "rec / folder", "folder img per CPU s",
                   "rec img per CPU s", "CPU ratio", "peak RSS MiB", "note"], notes, args.json)


if __name__ == "__main__":
    main()
