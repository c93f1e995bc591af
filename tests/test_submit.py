"""`fashionai submit` as a folder writer: an earlier submission is never replaced silently nor left
half beside a new one, inputs are never inside what it replaces, files follow the user's umask.
Saved probabilities stand in for runs, so no net runs here."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from fashionai.cli import main
from fashionai.data.prepare import prepare
from fashionai.pipeline.submit import MARKER, make_submission
from fashionai.scoring.probs import save_probs
from fashionai.scoring.submission import check_submission

SKIRT, COLLAR = "skirt_length_labels", "collar_design_labels"


def _questions(tmp_path: Path, tasks=(SKIRT, COLLAR), name="question.csv") -> Path:
    path = tmp_path / "rank" / "Tests" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"Images/{t}/{t[:4]}{i}.jpg,{t},?\n" for t in tasks for i in range(2)))
    return path


def _probs(tmp_path: Path) -> list[Path]:
    """Saved probabilities for both tasks' question images (what `--save-probs` writes)."""
    out = []
    for task, k in ((SKIRT, 6), (COLLAR, 5)):
        probs = np.random.default_rng(k).random((2, k)) + 0.1
        out.append(save_probs(tmp_path / "probs" / task, task, [f"Images/{task}/{task[:4]}{i}.jpg" for i in range(2)],
                              probs))
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_earlier_submission_is_replaced_only_with_overwrite_and_leaves_no_stale_task_file(tmp_path):
    both, skirt_only = _questions(tmp_path), _questions(tmp_path, (SKIRT,), "skirt.csv")
    probs, out = _probs(tmp_path), tmp_path / "sub"
    make_submission(both, out, prob_files=probs)
    assert sorted(_files(out)) == [MARKER, f"{COLLAR}.csv", f"{SKIRT}.csv", "submission.csv"]
    assert json.loads((out / MARKER).read_text())["made_by"] == "fashionai submit"
    first = _files(out)
    with pytest.raises(FileExistsError, match=r"already holds a submission \(made by fashionai submit at .*--overwrite"):
        make_submission(skirt_only, out, prob_files=probs[:1])
    assert main(["submit", "--from-probs", str(probs[0]), "--questions", str(skirt_only), "--out", str(out)]) == 2
    assert _files(out) == first
    assert main(["submit", "--from-probs", str(probs[0]), "--questions", str(skirt_only), "--out", str(out),
                 "--overwrite"]) == 0
    assert sorted(_files(out)) == [MARKER, f"{SKIRT}.csv", "submission.csv"]  # no collar file from the first
    check_submission(out / "submission.csv", skirt_only)
    assert sorted(os.listdir(tmp_path)) == ["probs", "rank", "sub"]  # nothing left beside it


def test_overwrite_replaces_only_a_folder_submit_made_and_a_failed_run_keeps_the_old_one(tmp_path):
    questions, probs = _questions(tmp_path), _probs(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "submission.csv").write_text("my own\n")
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="has no .fashionai-submission, so it is not a submission"):
        make_submission(questions, mine, prob_files=probs, overwrite=True)
    assert _files(mine) == {"notes.txt": b"keep", "submission.csv": b"my own\n"}
    out = tmp_path / "sub"
    make_submission(questions, out, prob_files=probs)
    first = _files(out)
    with pytest.raises(ValueError, match="no probabilities"):  # the collar probabilities lack this question
        make_submission(questions, out, overwrite=True, prob_files=[
            probs[0], save_probs(tmp_path / "probs" / "x", COLLAR, ["Images/x.jpg"], np.ones((1, 5)))])
    assert _files(out) == first and sorted(os.listdir(tmp_path)) == ["mine", "probs", "rank", "sub"]


def test_inputs_inside_out_and_a_symlinked_out_are_refused_before_any_work(tmp_path):
    questions, probs = _questions(tmp_path), _probs(tmp_path)
    out = tmp_path / "sub"
    make_submission(questions, out, prob_files=probs)
    first = _files(out)
    with pytest.raises(ValueError, match="contains the --save-probs folder"):
        make_submission(questions, out, prob_files=probs, save_probs_dir=out / "probs", overwrite=True)
    with pytest.raises(ValueError, match="contains the saved probabilities"):
        make_submission(questions, tmp_path / "probs", prob_files=probs, overwrite=True)
    with pytest.raises(ValueError, match="contains the question file"):
        make_submission(questions, tmp_path / "rank", prob_files=probs, overwrite=True)
    (tmp_path / "link").symlink_to(out)
    assert main(["submit", "--from-probs", *map(str, probs), "--questions", str(questions), "--out",
                 str(tmp_path / "link"), "--overwrite"]) == 2
    assert (tmp_path / "link").is_symlink() and _files(out) == first
    assert sorted(os.listdir(tmp_path)) == ["link", "probs", "rank", "sub"]


@pytest.mark.parametrize("text", ["", "ImageName,AttrKey,AttrValues\n"])
def test_a_question_file_without_questions_fails_and_keeps_the_earlier_submission(tmp_path, text):
    questions, probs = _questions(tmp_path), _probs(tmp_path)
    out = tmp_path / "sub"
    make_submission(questions, out, prob_files=probs)
    first = _files(out)
    questions.write_text(text)
    assert main(["submit", "--from-probs", *map(str, probs), "--questions", str(questions), "--out", str(out),
                 "--overwrite"]) == 2
    assert _files(out) == first


def _modes(root: Path) -> dict[str, set[str]]:
    """{'files': modes, 'dirs': modes} of everything under `root` (links not followed)."""
    found: dict[str, set[str]] = {"files": set(), "dirs": set()}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            found["dirs"].add(oct(stat.S_IMODE(st.st_mode)))
        elif stat.S_ISREG(st.st_mode):
            found["files"].add(oct(stat.S_IMODE(st.st_mode)))
    return found


def test_what_prepare_and_submit_write_follows_the_users_umask(demo_data, tmp_path):
    saved = os.umask(0o022)
    try:
        prepare(demo_data, tmp_path / "prepared", workers=2, tasks=[SKIRT])
        probs = _probs(tmp_path)
        assert main(["submit", "--from-probs", *map(str, probs), "--questions", str(_questions(tmp_path)),
                     "--out", str(tmp_path / "sub")]) == 0
    finally:
        os.umask(saved)
    assert _modes(tmp_path / "sub") == {"files": {"0o644"}, "dirs": {"0o755"}}
    assert _modes(tmp_path / "probs") == {"files": {"0o644"}, "dirs": {"0o755"}}
    prepared = _modes(tmp_path / "prepared")
    assert prepared["dirs"] == {"0o755"}
    written = [tmp_path / "prepared" / name for name in ("manifest.csv", "summary.json", ".fashionai-prepared")]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {"0o644"}
