"""Putting images into a prepared root: a link costs no space and no time; a copy is the last resort.

A symbolic link among the images is followed and the file it points to is placed, wherever it
lies: `os.link` on the link itself would hard-link the link, and a relative link then dangles in
the prepared root (training would crash mid-epoch). A file on another disk cannot be hard-linked,
so the way is chosen per image, not once per run.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

WAYS = ("hardlink", "symlink", "copy")


def place(src: Path, dst: Path, refused: set[str]) -> str:
    """Put the file `src` (resolved: never a link) at `dst` by the cheapest way that works for it and
    return that way; the first refusal of each way is logged (`refused` remembers which were)."""
    for way in WAYS[:-1]:
        try:
            if way == "hardlink":
                os.link(src, dst)
            else:
                os.symlink(src, dst)
            return way
        except OSError as err:  # other file system (EXDEV), no permission, no symlinks, ...
            if way not in refused:
                refused.add(way)
                log.info("cannot %s %s into %s (%s); trying the next way", way, src, dst.parent, err)
    shutil.copy2(src, dst)
    return "copy"


def place_all(pairs: Sequence[tuple[Path, Path]]) -> str:
    """Place each (source, target) pair, links followed; return the way, or the mix with counts."""
    placed: Counter[str] = Counter()
    refused: set[str] = set()
    for src, dst in tqdm(pairs, desc="linking images", unit="img"):
        placed[place(src.resolve(strict=True), dst, refused)] += 1
    mode = ", ".join(f"{m} {n}" for m, n in placed.items()) if len(placed) > 1 else next(iter(placed), "none")
    log.info("images placed by %s", mode)
    return mode
