"""Training input per core: the tutorial's loader vs `--input rec`, on 512 px demo JPEGs (quality 90).

    .venv/bin/python bench/bench_input.py [--size 224] [--images 300] [--threads 1 2]

Both paths decode and augment the same train split the same way (random resized crop, mirror,
colour jitter, lighting, normalisation) into (B, 3, S, S) batches:
- folder: gluon's ImageFolderDataset + the project's transforms in a DataLoader without worker
  processes (the tutorial's loader; each worker process would add one core's worth of the same);
- rec: MXNet's C++ ImageRecordIter over the split packed by `fashionai pack` (short side 256,
  quality 90), with `--threads` decoding threads.
Each case runs in a child process pinned to that many cores (sched_setaffinity before MXNet
starts), so img/s there is per core for the 1-core cases; `fashionai.pack.bench_input` does the
timing (one warm-up batch, then whole batches).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TASK = "skirt_length_labels"


def child(args: argparse.Namespace) -> None:
    """One pinned case: pack.bench_input's result plus this process's peak RSS."""
    threads = args.threads[0]
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from fashionai.pack import bench_input

    result = bench_input(args.prepared, TASK, data_shape=args.size, images=args.images, batch_size=args.batch,
                         threads=threads)
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

    from fashionai.runtime import configure_threads

    configure_threads()
    from fashionai.pack import pack

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
