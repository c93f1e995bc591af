"""Is an image usable? Checked once, at prepare, so that training never meets a file it cannot read.

OpenCV (and so MXNet) decodes a truncated JPEG with only a warning and grey fill; Pillow's full
`load()` raises on truncation, so Pillow is the check, in its strict mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Formats MXNet's OpenCV-based `mx.image.imread` reads; a GIF or WebP named .jpg would fail in training.
READABLE_FORMATS = ("JPEG", "PNG", "BMP")


@contextmanager
def strict_pillow() -> Iterator[None]:
    """Pillow's strict default (truncated files raise) for the duration, whatever was set before.

    Importing `gluoncv.data` sets the process-wide `ImageFile.LOAD_TRUNCATED_IMAGES = True`, with which
    a truncated JPEG "loads" (grey fill): the check would pass files training cannot read whole.
    """
    from PIL import ImageFile

    tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant


def check_image(path: str | Path) -> tuple[str, str] | None:
    """(kind, reason) when `path` is missing or does not fully decode; None when it is usable.

    OpenCV (and so MXNet) decodes a truncated JPEG with only a warning and grey fill; Pillow's full
    `load()` raises on truncation, so it is the check (~1 ms for a 512 px JPEG, GIL released).
    """
    from PIL import Image, ImageFile  # Pillow comes with matplotlib (pinned in constraints.txt)

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # a direct call after gluoncv was imported (a pool sets it first)
        with strict_pillow():
            return check_image(path)
    path = Path(path)
    if not path.is_file():
        if path.is_symlink():
            return "missing image", f"missing image {path} (a symbolic link to {os.readlink(path)}, which is not a file)"
        return "missing image", f"missing image {path}"
    try:
        with Image.open(path) as image:
            image.load()
            fmt = image.format
    # Pillow signals broken files with OSError, SyntaxError, ValueError or DecompressionBombError;
    # whichever it is, training could not read the file, which is all this check answers.
    except Exception as err:  # noqa: BLE001
        return "image does not decode", f"image does not decode: {path} ({type(err).__name__}: {err})"
    if fmt not in READABLE_FORMATS:
        formats = "/".join(READABLE_FORMATS)
        return "image does not decode", f"image does not decode: {path} is {fmt}, not {formats}"
    return None
