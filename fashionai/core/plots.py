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


def confusion_png(confusion: Sequence[Sequence[int]], names: Sequence[str], title: str,
                  precision: Sequence[float] | None = None, recall: Sequence[float] | None = None) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted) as PNG bytes, with each class's
    precision and recall beside it when given (what the model confuses, and at what cost)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    k, bars = len(names), precision is not None and recall is not None
    fig = _figure(2 + 0.7 * k + (2.5 + 0.25 * k if bars else 0), 1.5 + 0.6 * k)
    ax = fig.add_subplot(1, 2 if bars else 1, 1)
    ConfusionMatrixDisplay(np.array(confusion), display_labels=list(names)).plot(
        ax=ax, xticks_rotation=45, colorbar=False,
    )
    ax.set_title(title)
    if bars:
        side = fig.add_subplot(1, 2, 2)
        rows = np.arange(k)
        side.barh(rows - 0.2, precision, height=0.4, label="precision")
        side.barh(rows + 0.2, recall, height=0.4, label="recall")
        side.set_yticks(rows, list(names))
        side.invert_yaxis()
        side.set_xlim(0, 1)
        side.set_title("per class")
        side.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig, 100)


def gallery_png(items: Sequence[dict], title: str, columns: int = 4, thumb: int = 128) -> bytes:
    """A grid of images, each under its caption (`items`: dicts with `path` and `caption`), e.g. the
    worst predictions of a val split with their true and predicted classes (fastai's top losses)."""
    from PIL import Image

    rows = max(1, -(-len(items) // columns))
    fig = _figure(2.4 * columns, 2.7 * rows + 0.4)
    fig.suptitle(title, fontsize=10)
    for i, item in enumerate(items):
        ax = fig.add_subplot(rows, columns, i + 1)
        try:
            with Image.open(item["path"]) as image:
                image = image.convert("RGB")
                image.thumbnail((thumb, thumb))
                ax.imshow(np.asarray(image))
        except OSError:  # moved or unreadable since it was predicted: the caption still tells
            ax.text(0.5, 0.5, "image not readable", ha="center", va="center", fontsize=7)
        ax.set_title(item["caption"], fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return _png(fig, 90)
