"""Writing files and folders so that a reader never sees half of one: the project's one writer.

Every file goes to a temporary name in its own folder and is renamed over the target (a rename
within a folder is atomic on POSIX). Temporary files are created with mode 0o666 filtered by the
user's umask, as `open()` would create the target itself (`tempfile.mkstemp` would make them 0600).
Folders that a command builds as a whole (a prepared root, demo data) are built beside the target
and swapped in, and a folder is only ever replaced when it carries the marker file of the command
that made it.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fashionai.core.errors import MXNET_SHORT_WRITE
from fashionai.core.lock import hold


def _temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path` (pid + random: concurrent writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write `data` (str as UTF-8, `\\n` kept as is) to `path` through a temp file and a rename."""
    path = Path(path)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_save(path: str | Path, save: Callable[[str], None]) -> Path:
    """Let `save(filename)` (MXNet's save_parameters, save_states, nd.save, np.save) write a temp
    file, then rename it over `path`. The temp name keeps `path`'s suffix (np.save appends .npy)."""
    path = Path(path)
    tmp = _temp_name(path).with_suffix(f".tmp{path.suffix}")
    try:
        save(str(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if MXNET_SHORT_WRITE in str(err):  # MXNet names neither the file nor the cause
            raise short_write(path) from err
        raise
    return path


def short_write(path: Path) -> OSError:
    """The OSError a short write to `path` most likely was: a full disk where it is (almost) full."""
    code = errno.ENOSPC if shutil.disk_usage(path.parent).free < (1 << 20) else errno.EIO
    return OSError(code, os.strerror(code), str(path))


def sha1_of(path: str | Path) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB blocks: how weights, images and caches are identified
    (a copied file keeps its identity, a rewritten one does not)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_id(text: str) -> str:
    """A short, stable id of a text (8 hex digits of its SHA-1): names files after long paths."""
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def params_fingerprint(path: Path) -> dict:
    """File name, size, mtime and SHA-1 of a params file: what a cache built from it is keyed by
    (the SHA-1 decides; a copied run keeps its caches, a retrained one does not)."""
    stat = path.stat()
    return {"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha1": sha1_of(path)}


def check_writable(folder: str | Path) -> Path:
    """Make `folder` if needed and write (then remove) a file in it: an OSError naming it, before
    any long work, rather than after (a read-only disk, a full one, no permission)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = _temp_name(folder / "write-check")
    probe.write_bytes(b"")
    probe.unlink()
    return folder


def json_safe(value: Any) -> Any:
    """NaN -> None recursively: JSON has no NaN and strict parsers refuse Python's `NaN` token."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """`value` as JSON (NaN written as null), atomically, ending in a newline."""
    return atomic_write(path, json.dumps(json_safe(value), indent=indent) + "\n")


def csv_text(rows: Sequence[dict], fieldnames: Sequence[str]) -> str:
    """Rows as CSV text with a header, `\\n` line ends; keys not in `fieldnames` are left out."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(path: str | Path, rows: Sequence[dict], fieldnames: Sequence[str] | None = None) -> Path:
    """Rows as a CSV file, atomically; columns default to every key in first-seen order."""
    fields = fieldnames if fieldnames is not None else list(dict.fromkeys(k for row in rows for k in row))
    return atomic_write(path, csv_text(rows, fields))


# --- folders a command builds as a whole ----------------------------------------------------------
def write_marker(folder: Path, marker: str, command: str) -> Path:
    """Write `folder/marker`, the file that says `fashionai <command>` made `folder`.

    Only a folder carrying its command's marker is ever replaced (`check_replaceable`): a file a
    user could have for other reasons (a `manifest.csv`, a `demo.json`) is no licence to delete.
    """
    return write_json(folder / marker, {
        "made_by": f"fashionai {command}",
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": f"this folder is replaced as a whole by `fashionai {command} --overwrite`; "
                "do not keep your own files in it",
    })


def has_marker(folder: Path, marker: str) -> bool:
    """Whether `folder` carries `marker` as a plain file (a link to one does not count)."""
    path = folder / marker
    return path.is_file() and not path.is_symlink()


def _made_when(folder: Path, marker: str) -> str:
    """`made by ... at ...` from a marker, for messages; empty when it is not the JSON we write."""
    try:
        info = json.loads((folder / marker).read_text())
        return f" (made by {info['made_by']} at {info['time']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _absolute(out: Path) -> Path:
    """`out` as an absolute path naming the same entry: the folder above is resolved, the last
    name kept (so a link at `out` stays visible); `.`, `..` and `/` are resolved as a whole."""
    if out.name in ("", ".", ".."):
        return out.resolve()
    return out.absolute().parent.resolve() / out.name


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_replaceable(
    out: str | Path, marker: str, overwrite: bool, what: str, *,
    inputs: Iterable[tuple[str, str | Path | None]] = (),
) -> Path:
    """Refuse, before any work, an `out` that is not this command's to fill or replace; return it
    as an absolute path for `building`.

    A missing or empty folder is fine. A non-empty one must carry the `marker` that its command
    (`what` it makes, e.g. "demo data") wrote when it made it, and needs `overwrite`: anything else
    may hold the user's files. Refused whatever `overwrite` says: a symbolic link (replacing it
    would swap the link for a folder, and deleting through it would reach wherever it points), the
    current folder or one above it (the shell would be left in a deleted folder), and a folder
    holding one of the command's `inputs` ((description, path) pairs), which the swap would delete.
    """
    given = Path(out)
    if given.is_symlink():
        raise FileExistsError(f"{given} is a symbolic link (to {given.resolve()}); refusing to replace it: "
                              "give the real folder it points to, or a new path")
    out = _absolute(given)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{given} exists and is not a folder; give a folder path")
    if _inside(Path.cwd().resolve(), out):
        raise ValueError(f"{given} is the current folder or holds it; the command replaces its output "
                         f"folder as a whole, so give a new sub-folder instead (e.g. {given / 'out'})")
    for name, path in inputs:
        if path is not None and _inside(Path(path).resolve(), out):
            raise ValueError(f"{given} contains {name} {path}, and the command replaces {given} as a whole; "
                             "choose another folder")
    if out.is_dir() and any(out.iterdir()):
        if not has_marker(out, marker):
            raise FileExistsError(
                f"{given} is not empty and has no {marker}, so it is not {what} made by this project; "
                "refusing to replace it (its files may be yours): choose a new or empty folder, or "
                "remove it yourself")
        if not overwrite:
            raise FileExistsError(f"{given} already holds {what}{_made_when(out, marker)}; "
                                  "pass --overwrite to replace it, or choose another folder")
    return out


@contextmanager
def claiming(
    out: str | Path, marker: str, overwrite: bool, what: str, *,
    inputs: Iterable[tuple[str, str | Path | None]] = (),
) -> Iterator[Path]:
    """Hold `out` for the block (`fashionai.core.lock.hold`: a second command for the same folder
    fails at once, naming this one) and check it is this command's to fill (`check_replaceable`,
    once before taking the lock, to refuse a path that cannot be a folder, and again under it, so
    the check and the taking are one step); yields the absolute target for `building`."""
    check_replaceable(out, marker, overwrite, what, inputs=inputs)
    with hold(out, what):
        yield check_replaceable(out, marker, overwrite, what, inputs=inputs)


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` at `out` (same parent, so each rename is atomic)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old)


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """A fresh hidden folder beside `out` to build into; swapped in at the end of the block, removed
    if the block fails (so a failed or interrupted command leaves `out` as it was)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
