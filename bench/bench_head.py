"""Head training from cached features vs full fine-tuning: seconds per epoch, epochs per second.

    .venv/bin/python bench/bench_head.py [--model ResNet50_v2] [--size 224] [--per-class 10]

Trains the same task three ways with `fashionai.training.fit.fit` (random backbone weights: speed does
not depend on them): full fine-tuning, `--freeze-backbone` (a frozen backbone still runs forward
every epoch), and `--freeze-backbone --cache-features` (the backbone runs once per image, then
only the head trains). The cache is built in the first cached run and reused by the second.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def _fit(prepared: Path, out: Path, name: str, args, **changes) -> tuple[float, list[dict]]:
    from fashionai.training.config import TrainConfig
    from fashionai.training.fit import fit
    from fashionai.training.rundir import read_metrics

    config = TrainConfig.demo("skirt_length_labels", prepared, out, name=name, model=args.model,
                              data_shape=args.size, batch_size=args.batch, warmup_epochs=0, **changes)
    start = time.time()
    run = fit(config)
    return time.time() - start, read_metrics(run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ResNet50_v2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--per-class", type=int, default=10, help="demo images per class (skirt length, 6 classes)")
    p.add_argument("--full-epochs", type=int, default=1)
    p.add_argument("--head-epochs", type=int, default=50)
    p.add_argument("--workdir", default="bench/.work")
    p.add_argument("--json", help="append the result to this JSON lines file")
    args = p.parse_args()

    from fashionai.core.runtime import configure_runtime

    configure_runtime()
    info = common.machine_info()
    prepared = common.demo_images(Path(args.workdir), per_class=args.per_class, size=256)
    shutil.rmtree(prepared / "feature_cache", ignore_errors=True)
    out = Path(args.workdir) / "runs-head"
    shutil.rmtree(out, ignore_errors=True)
    rows = []
    total, m = _fit(prepared, out, "full", args, epochs=args.full_epochs)
    full_epoch = sum(r["epoch_s"] for r in m) / len(m)
    rows.append({"case": "full fine-tuning", "s/epoch": full_epoch, "epochs/s": 1 / full_epoch,
                 "run s (incl. setup)": total})
    total, m = _fit(prepared, out, "frozen", args, epochs=args.full_epochs, freeze_backbone=True)
    frozen = sum(r["epoch_s"] for r in m) / len(m)
    rows.append({"case": "--freeze-backbone (no cache)", "s/epoch": frozen, "epochs/s": 1 / frozen,
                 "run s (incl. setup)": total, "vs full": f"{full_epoch / frozen:.1f}x"})
    for label in ("cache built", "cache reused"):
        total, m = _fit(prepared, out, label.replace(" ", "-"), args, epochs=args.head_epochs,
                        freeze_backbone=True, cache_features=True)
        head = sum(r["epoch_s"] for r in m) / len(m)
        rows.append({"case": f"--cache-features, {label}", "s/epoch": head, "epochs/s": 1 / head,
                     "run s (incl. setup)": total, "vs full": f"{full_epoch / head:.0f}x"})
    notes = [f"{args.per_class * 6} images (val split included), {args.head_epochs} head epochs per cached run; "
             "'run s' includes building the net, the loaders and (first cached run) the feature extraction",
             f"peak RSS {common.peak_rss_mb():.0f} MiB"]
    common.report(f"Head training from cached features: {args.model} at {args.size} px", info,
                  {"batch": args.batch}, rows, ["case", "s/epoch", "epochs/s", "run s (incl. setup)", "vs full"],
                  notes, args.json)


if __name__ == "__main__":
    main()
