"""A measured choice cached in the run folder, reused while what it was measured under still holds.

`--tta auto` (fashionai.pipeline.tta_choice, `<run>/tta.json`) and `--precision auto`
(fashionai.pipeline.precision, `<run>/precision.json`) each measure on the run's own val split once
and save their choice as a JSON record with a `key`: the weights file (name, SHA-1) and whatever
else the measurement depends on. A later call reads the record back only if its key still matches,
so new weights, another view or another machine are measured again, never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

from fashionai.core.io import write_json

# What of a params fingerprint (core.io.params_fingerprint) a key compares: the file and its content.
# Its mtime may be recorded but is not compared: a copied run keeps its choices.
KEY_PARAMS = ("file", "sha1")


def same_key(saved: dict, key: dict) -> bool:
    """Whether a saved key is `key`, the params fingerprint compared by KEY_PARAMS only."""
    def compared(k: dict) -> dict:
        params = k.get("params") if isinstance(k.get("params"), dict) else {}
        return {**k, "params": {f: params.get(f) for f in KEY_PARAMS}}
    return compared(saved) == compared(key)


def read_choice(path: Path, key: dict) -> dict | None:
    """The record saved in `path` if it was measured under `key` (`same_key`); None when there is
    none, it is not a JSON record with a key (a damaged file is measured again), or the key differs."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("key"), dict) or not same_key(saved["key"], key):
        return None
    return saved


def save_choice(path: Path, record: dict, key: dict) -> None:
    """Write `record` with its `key` to `path` atomically (a crash never leaves half a record)."""
    write_json(path, {**record, "key": key})
