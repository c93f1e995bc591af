"""Training curves: loss, accuracy and val mAP per epoch, as one PNG written atomically."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PANELS = (
    ("loss", (("train_loss", "train"), ("val_loss", "val"))),
    ("accuracy", (("train_acc", "train"), ("val_acc", "val"))),
    ("val official AP / BasicPrecision", (("val_map", "AP (mAP of the task)"), ("val_basic_precision", "BasicPrecision"))),
)


def curves_png(rows: Sequence[dict]) -> bytes:
    """PNG bytes of three panels (loss, accuracy, val AP) over the epochs of `rows` (metrics.csv rows)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe to call repeatedly
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    for ax, (title, series) in zip(axes, PANELS):
        for key, label in series:
            ax.plot(epochs, [r[key] for r in rows], marker="o", markersize=3, label=label)
        if title == "loss":  # log scale: an early val loss 10-20x the rest (BN statistics still
            ax.set_yscale("log")  # settling) would otherwise flatten every later epoch to a line
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def save_curves(rows: Sequence[dict], path: str | Path) -> Path:
    """Write `curves.png` atomically (temp file + rename); returns the path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(curves_png(rows))
    os.replace(tmp, path)
    return path
