"""Pictures a person reads faster than tables: training curves and confusion matrices, as PNG bytes.

matplotlib is imported inside the functions (it is slow to import and no light command needs it)
and drawn on the Agg canvas: no display, no global pyplot figure state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fashionai.core.io import atomic_write

PANELS = (
    ("loss", (("train_loss", "train"), ("val_loss", "val"))),
    ("accuracy", (("train_acc", "train"), ("val_acc", "val"))),
    ("val official AP / BasicPrecision", (("val_map", "AP (mAP of the task)"), ("val_basic_precision", "BasicPrecision"))),
)


def _figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def curves_png(rows: Sequence[dict]) -> bytes:
    """PNG bytes of three panels (loss, accuracy, val AP) over the epochs of `rows` (metrics.csv rows)."""
    epochs = [r["epoch"] for r in rows]
    fig = _figure(4.2 * len(PANELS), 3.4)
    for i, (title, series) in enumerate(PANELS, 1):
        ax = fig.add_subplot(1, len(PANELS), i)
        for key, label in series:
            ax.plot(epochs, [r[key] for r in rows], marker="o", markersize=3, label=label)
        if title == "loss":  # log scale: an early val loss 10-20x the rest (BN statistics still
            ax.set_yscale("log")  # settling) would otherwise flatten every later epoch to a line
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig, 90)


def save_curves(rows: Sequence[dict], path: str | Path) -> Path:
    """Write `curves.png` atomically; returns the path."""
    return atomic_write(path, curves_png(rows))


def confusion_png(confusion: Sequence[Sequence[int]], names: Sequence[str], title: str) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted) as PNG bytes."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = _figure(2 + 0.7 * len(names), 1.5 + 0.6 * len(names))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay(np.array(confusion), display_labels=list(names)).plot(
        ax=ax, xticks_rotation=45, colorbar=False,
    )
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig, 100)
