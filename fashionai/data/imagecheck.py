"""Is an image usable? Checked once, at prepare, so that training never meets a file it cannot read.

Usable means both of these decode it, whatever its format is called:
- Pillow, in its strict mode, decodes it fully. OpenCV (and so MXNet) decodes a truncated JPEG
  with only a warning and grey fill; Pillow's full `load()` raises on truncation.
- MXNet's own decoder (`mx.image.imdecode`: the OpenCV built into libmxnet, which training,
  packing's readers and prediction use) decodes it. In MXNet 1.9.1 that decoder reads JPEG (also
  MPO, what phone cameras write), PNG, BMP and TIFF, but not GIF, WebP, PPM or JPEG 2000, which
  Pillow and the opencv-python wheel do read: a WebP named `.jpg` would fail in training.
There is no list of format names: a list is either too short (it refused MPO) or wrong for some
decoder. MXNet decodes in greyscale here: every byte of the stream is still decoded, at a third of
the cost of colour.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# MXNet's imperative calls are not documented as thread-safe: the image-check threads take turns.
_MXNET_DECODE = threading.Lock()


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


def mxnet_decodes(data: bytes) -> bool:
    """Whether MXNet's decoder (the one training uses) decodes the encoded image `data`."""
    import mxnet as mx

    with _MXNET_DECODE:
        try:
            mx.image.imdecode(data, flag=0).wait_to_read()
        except mx.base.MXNetError:
            return False
    return True


def check_image(path: str | Path) -> tuple[str, str] | None:
    """(kind, reason) when `path` is missing or does not decode fully in Pillow (strict) and in
    MXNet; None when it is usable (~1.5 ms for a 512 px JPEG, ~1 ms of it outside the GIL)."""
    from PIL import Image, ImageFile  # Pillow comes with matplotlib (pinned in constraints.txt)

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # a direct call after gluoncv was imported (a pool sets it first)
        with strict_pillow():
            return check_image(path)
    path = Path(path)
    if not path.is_file():
        if path.is_symlink():
            return "missing image", f"missing image {path} (a symbolic link to {os.readlink(path)}, which is not a file)"
        return "missing image", f"missing image {path}"
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            fmt = image.format
    # Pillow signals broken files with OSError, SyntaxError, ValueError or DecompressionBombError;
    # whichever it is, training could not read the file, which is all this check answers.
    except Exception as err:  # noqa: BLE001
        return "image does not decode", f"image does not decode: {path} ({type(err).__name__}: {err})"
    if not mxnet_decodes(data):
        return ("image does not decode",
                f"image does not decode: {path} is {fmt}, which MXNet's decoder (used in training) cannot read")
    return None
