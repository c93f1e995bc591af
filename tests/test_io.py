"""The one writer: atomic files with the user's umask, nothing left behind on failure; folders built
aside, swapped in, and replaced only when they carry their command's marker."""

import json
import math
import os
import stat

import numpy as np
import pytest

from fashionai.core import io


@pytest.fixture
def umask():
    """Set a umask for the test and restore the caller's."""
    saved = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_files_follow_the_users_umask(tmp_path, umask):
    umask(0o022)
    assert _mode(io.atomic_write(tmp_path / "a.txt", "x")) == 0o644
    assert _mode(io.write_json(tmp_path / "a.json", {"a": 1})) == 0o644
    umask(0o077)
    assert _mode(io.atomic_write(tmp_path / "b.txt", b"x")) == 0o600
    umask(0o002)
    assert _mode(io.atomic_save(tmp_path / "c.npy", lambda f: np.save(f, np.zeros(2)))) == 0o664


def test_a_write_replaces_the_whole_file_and_a_failed_one_leaves_nothing(tmp_path):
    path = tmp_path / "f.txt"
    io.atomic_write(path, "old\n")
    with pytest.raises(TypeError):
        io.atomic_write(path, 3)  # not bytes: fails while writing
    with pytest.raises(RuntimeError):
        io.atomic_save(path, lambda f: (open(f, "w").write("half"), (_ for _ in ()).throw(RuntimeError("x"))))
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_save_keeps_the_suffix_savers_insist_on(tmp_path):
    """np.save / np.savez append .npy / .npz to a name without it: the temp name keeps the suffix."""
    io.atomic_save(tmp_path / "p.npy", lambda f: np.save(f, np.ones(3)))
    io.atomic_save(tmp_path / "c.npz", lambda f: np.savez(f, a=np.ones(2)))
    assert np.load(tmp_path / "p.npy").tolist() == [1, 1, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "p.npy"]


def test_json_has_no_nan_and_csv_keeps_the_column_order(tmp_path):
    io.write_json(tmp_path / "a.json", {"x": math.nan, "y": [1.5, math.nan]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [1.5, None]}
    io.write_csv(tmp_path / "t.csv", [{"b": 1, "a": 2}, {"b": 3, "c": 4}])
    assert (tmp_path / "t.csv").read_text() == "b,a,c\n1,2,\n3,,4\n"


def test_a_folder_is_replaced_only_with_overwrite_and_its_marker(tmp_path):
    out = tmp_path / "out"
    assert io.check_replaceable(out, ".made", False, "demo data") == out  # missing: fine
    out.mkdir()
    io.check_replaceable(out, ".made", False, "demo data")  # empty: fine
    (out / "notes.txt").write_text("the user's")
    for overwrite in (False, True):  # no marker: --overwrite would not help, so it is not offered
        with pytest.raises(FileExistsError, match="has no .made, so it is not demo data") as err:
            io.check_replaceable(out, ".made", overwrite, "demo data")
        assert "--overwrite" not in str(err.value)
    (tmp_path / "elsewhere").write_text("{}")
    (out / ".made").symlink_to(tmp_path / "elsewhere")  # a link to a file is no marker
    with pytest.raises(FileExistsError, match="has no .made"):
        io.check_replaceable(out, ".made", True, "demo data")
    (out / ".made").unlink()
    io.write_marker(out, ".made", "demo-data")
    assert json.loads((out / ".made").read_text())["made_by"] == "fashionai demo-data"
    with pytest.raises(FileExistsError, match=r"already holds demo data \(made by fashionai demo-data at .*--overwrite"):
        io.check_replaceable(out, ".made", False, "demo data")
    io.check_replaceable(out, ".made", True, "demo data")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        io.check_replaceable(tmp_path / "file", ".made", True, "demo data")
    assert (out / "notes.txt").read_text() == "the user's"


def test_a_link_the_current_folder_and_a_folder_holding_an_input_are_never_replaced(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    io.write_marker(real, ".made", "prepare")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(FileExistsError, match="symbolic link"):
        io.check_replaceable(tmp_path / "link", ".made", True, "a prepared folder")
    with pytest.raises(ValueError, match="contains the data root"):
        io.check_replaceable(real, ".made", True, "a prepared folder", inputs=[("the data root", real / "data")])
    monkeypatch.chdir(real)
    for out in (".", "..", str(real), "../real"):
        with pytest.raises(ValueError, match="is the current folder or holds it"):
            io.check_replaceable(out, ".made", True, "a prepared folder")
    assert io.check_replaceable("sub", ".made", False, "a prepared folder") == real / "sub"


def test_building_swaps_in_a_finished_folder_and_drops_a_failed_one(tmp_path):
    out = tmp_path / "out"
    with io.building(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with io.building(out) as tmp:
            (tmp / "b.txt").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with io.building(out) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
