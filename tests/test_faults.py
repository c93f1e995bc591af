"""Faults end as one line with the path and the fix, never a traceback: real signals to a training
process, a read-only output folder and a full disk (small tmpfs mounts, where root may mount them).
No test waits on a clock: a signal is sent once the process has logged a finished epoch, and a
run of many more epochs than that is still going when it lands."""

import contextlib
import errno
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fashionai.core.errors import one_line
from fashionai.training.rundir import read_metrics

ROOT = Path(__file__).resolve().parents[1]
TASK = "skirt_length_labels"


def _train_argv(prepared, out, name, epochs=40):
    return [sys.executable, "-m", "fashionai", "train", "--task", TASK, "--preset", "demo", "--prepared", str(prepared),
            "--out", str(out), "--name", name, "--epochs", str(epochs), "--data-shape", "32", "--batch-size", "16",
            "--model", "cifar_resnet20_v1", "--devices", "cpu", "-j", "0"]


def _signal_after_first_epoch(argv, signum) -> tuple[int, str]:
    """Run `argv`, send `signum` once it has logged a finished epoch; (exit status, stderr)."""
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "[Epoch 0] train:" in line:
            proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    return proc.wait(timeout=120), "".join(lines) + rest


@pytest.mark.parametrize("signum, status, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_mid_run_ends_in_one_line_with_the_resume_command(prepared_data, tmp_path, signum, status, name):
    code, err = _signal_after_first_epoch(_train_argv(prepared_data, tmp_path, "sig", epochs=3), signum)
    run = tmp_path / TASK / "sig"
    assert code == status, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    resume = f"fashionai train --resume {shlex.quote(str(run))}"
    assert f"stopped by {name}; the run keeps its last finished epoch; continue it with: {resume}" in last
    assert f"stopped by {name}; every epoch committed before it is kept" in (run / "train.log").read_text()
    # the command it gives works, whether or not an epoch was committed before the signal (epochs
    # under a second are committed at most every 10 s): the run ends with all 3 epochs
    done = subprocess.run([sys.executable, "-m", "fashionai", *shlex.split(resume)[1:]],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 3  # the next epoch to run
    assert [r["epoch"] for r in read_metrics(run)] == list(range(3))


@contextlib.contextmanager
def _mounted(path: Path, options: str):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="mounting a tmpfs needs root")


@needs_root
def test_a_read_only_output_folder_fails_before_any_work(demo_data, tmp_path):
    with _mounted(tmp_path / "ro", "ro,size=1m") as ro:
        done = subprocess.run([sys.executable, "-m", "fashionai", "prepare", "--data", str(demo_data), "--out",
                               str(ro / "prepared")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"{ro}/.prepared.lock: Read-only file system; the file system is read-only" in last
    assert "checked" not in done.stderr  # refused before the images were read


@needs_root
def test_a_full_disk_names_the_file_and_says_no_space(prepared_data, tmp_path):
    with _mounted(tmp_path / "small", "size=600k") as small:
        done = subprocess.run(_train_argv(prepared_data, small, "full", epochs=2), capture_output=True, text=True,
                              cwd=ROOT, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert str(small / TASK / "full") in last and "No space left on device; no space left on that disk" in last


def test_os_errors_and_mxnet_short_writes_are_worded_with_path_and_fix():
    assert one_line(OSError(errno.ENAMETOOLONG, "File name too long", "runs/x" * 50))[0].endswith(
        "File name too long; the name is too long for the file system: use a shorter --name or --out")
    assert one_line(PermissionError(errno.EACCES, "Permission denied", "/data/out")) == (
        "/data/out: Permission denied; permission denied: choose a folder you may write to, or change its "
        "permissions", 1)
    message, status = one_line(RuntimeError("[12:00] src/io/local_filesys.cc:38: Check failed: "
                                            "FileStream.Write incomplete"))
    assert status == 1 and "most often a full disk" in message
    assert one_line(KeyboardInterrupt()) == ("stopped by Ctrl-C", 130)


@pytest.fixture
def damaged_run(trained_run, tmp_path):
    """A copy of the fixture run, to damage."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def _flip_bytes(path: Path) -> None:
    """Change bytes in the middle of `path`, keeping its size (a bad copy, bit rot)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


def _image(run: Path) -> Path:
    config = json.loads((run / "config.json").read_text())
    return sorted((Path(config["prepared"]) / config["task"]).glob("*/*/*.jpg"))[0]


@pytest.mark.parametrize("which", ["best", "last"])
def test_changed_weights_are_refused_by_every_command_that_loads_them(damaged_run, tmp_path, which, caplog):
    from fashionai.cli import main

    _flip_bytes(damaged_run / f"{which}.params")
    commands = [["predict", "--run", str(damaged_run), "--images", str(_image(damaged_run)), "--precision", "fp32",
                 "--which", which],
                ["export", "--run", str(damaged_run), "--out", str(tmp_path / "export"), "--which", which]]
    if which == "best":  # evaluate scores the best epoch's weights, as training reported them
        commands.append(["evaluate", "--run", str(damaged_run), "--tta", "none", "--precision", "fp32"])
    for argv in commands:
        caplog.clear()
        assert main(argv) == 2, argv
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors == [f"{damaged_run / f'{which}.params'} is not the file {damaged_run / 'checkpoint.json'} "
                          "recorded (its SHA-1 differs: changed or corrupt since training); restore it from a "
                          "copy of the run, or train again"], argv
    assert not (tmp_path / "export").exists()


def test_truncated_weights_without_a_record_are_one_line(damaged_run, caplog):
    from fashionai.cli import main

    params = damaged_run / "best.params"
    params.write_bytes(params.read_bytes()[: params.stat().st_size // 3])
    (damaged_run / "checkpoint.json").unlink()  # an old run, or a copied folder without its record
    assert main(["predict", "--run", str(damaged_run), "--images", str(_image(damaged_run)), "--which", "best",
                 "--precision", "fp32"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith(f"{params} cannot be loaded into cifar_resnet20_v1 (")
    assert "the file is damaged or belongs to another net" in errors[0]


def test_a_resume_that_changes_the_recipe_is_refused_unless_allowed_and_then_recorded(prepared_data, tmp_path,
                                                                                       caplog):
    from fashionai.cli import main

    base = ["train", "--task", TASK, "--preset", "demo", "--prepared", str(prepared_data), "--out", str(tmp_path),
            "--name", "r", "--data-shape", "32", "--batch-size", "16", "--model", "cifar_resnet20_v1",
            "--devices", "cpu", "-j", "0"]
    assert main([*base, "--epochs", "1"]) == 0
    run = tmp_path / TASK / "r"
    before = json.loads((run / "config.json").read_text())
    changed = ["train", "--resume", str(run), "--lr", "0.5", "--batch-size", "4", "--seed", "9", "--epochs", "2"]
    caplog.clear()
    assert main(changed) == 2
    error = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1]
    assert error == (f"--resume {run}: these settings differ from the run's: epochs 1 -> 2, batch_size 16 -> 4, "
                     "lr 0.1 -> 0.5, seed 0 -> 9; resume without them, or pass --allow-changes to continue with "
                     "them (the run records from which epoch)")
    assert json.loads((run / "config.json").read_text()) == before  # refused: nothing touched
    caplog.clear()
    assert main(["train", "--resume", str(run), "--task", "coat_length_labels"]) == 2
    assert "task of a run cannot change (task 'skirt_length_labels' -> 'coat_length_labels')" in caplog.text
    assert main([*changed, "--allow-changes", "--devices", "cpu"]) == 0
    history = json.loads((run / "changes.json").read_text())
    assert history == [{"from_epoch": 1, "changes": {"epochs": {"before": 1, "after": 2},
                                                     "batch_size": {"before": 16, "after": 4},
                                                     "lr": {"before": 0.1, "after": 0.5},
                                                     "seed": {"before": 0, "after": 9}}}]
    assert "resumed with changed settings from epoch 1" in caplog.text
    assert [r["epoch"] for r in read_metrics(run)] == [0, 1]


def test_predict_reads_the_images_of_a_folder_and_refuses_one_without(trained_run, tmp_path, capsys, caplog):
    from fashionai.cli import main

    folder = _image(trained_run).parent
    count = len([p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")])
    assert main(["predict", "--run", str(trained_run), "--images", str(folder), "--precision", "fp32",
                 "--tta", "none"]) == 0
    assert f"{count} images, skirt_length_labels" in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["predict", "--run", str(trained_run), "--images", str(tmp_path)]) == 2
    assert f"{tmp_path} is a folder with no .jpg/.jpeg/.png images in it" in caplog.text


def test_export_replaces_only_its_own_folders_and_checks_its_files(trained_run, tmp_path):
    import mxnet as mx

    from fashionai.inference.export import export_run, load_exported

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.json").write_text("{}")  # some other tool's export
    with pytest.raises(FileExistsError, match="has no .fashionai-export"):
        export_run(trained_run, foreign, overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["model.json"]
    out = tmp_path / "export"
    files = export_run(trained_run, out)
    load_exported(out, mx.cpu())
    _flip_bytes(files["params"])
    with pytest.raises(ValueError, match=r"0000.params is not the file the export wrote \(its SHA-1 differs"):
        load_exported(out, mx.cpu())


def test_saved_probabilities_of_two_runs_with_one_name_never_share_a_file(trained_run, tmp_path):
    import shutil

    from fashionai.core.runinfo import RunInfo
    from fashionai.pipeline.submit import probs_stem

    a, b = tmp_path / "a" / TASK / "r", tmp_path / "b" / TASK / ("r" * 200)
    shutil.copytree(trained_run, a)
    shutil.copytree(trained_run, b)
    stems = {probs_stem(RunInfo.read(run), "flip") for run in (a, b)}
    assert len(stems) == 2 and all(len(s) < 120 for s in stems)  # distinct, and short enough for any disk


def test_a_held_submission_folder_is_refused_before_any_prediction(trained_run, tmp_path, monkeypatch):
    from fashionai.core.lock import FolderBusy, hold
    from fashionai.pipeline import submit

    monkeypatch.setattr(submit, "predict_resolved", lambda *a, **k: pytest.fail("must not predict"))
    questions = tmp_path / "question.csv"
    questions.write_text(f"Images/{TASK}/a.jpg,{TASK},?\n")
    with hold(tmp_path / "sub", "a submission", command="the other submit"):
        with pytest.raises(FolderBusy, match="in use by `the other submit`"):
            submit.make_submission(questions, tmp_path / "sub", runs=[trained_run])


def test_int8_calibration_reads_every_image_kind_the_prepared_root_holds(trained_run, tmp_path):
    import shutil

    import cv2

    from fashionai.core.runinfo import RunInfo
    from fashionai.inference.quantize import calibration_batch

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    prepared = tmp_path / "prepared"
    config = json.loads((run / "config.json").read_text())
    train = prepared / TASK / "train"
    for i, src in enumerate(sorted((Path(config["prepared"]) / TASK / "train").glob("*/*.jpg"))[:6]):
        target = train / src.parent.name / f"img{i}{('.png', '.JPG', '.jpeg')[i % 3]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target.with_suffix(".png")), cv2.imread(str(src)))
        target.with_suffix(".png").rename(target)
    (run / "config.json").write_text(json.dumps({**config, "prepared": str(prepared)}))
    assert calibration_batch(RunInfo.read(run)).shape[0] == 6


def test_pack_with_some_tasks_empty_says_which_tasks_to_pack(prepared_data, tmp_path):
    import shutil

    from fashionai.data import pack

    root = tmp_path / "prepared"
    shutil.copytree(prepared_data / TASK, root / TASK)
    empty = "coat_length_labels"
    for split in ("train", "val"):
        for k in range(8):
            (root / empty / split / str(k)).mkdir(parents=True)
    with pytest.raises(ValueError) as err:
        pack.pack(root, f"{TASK},{empty}", short_side=40, threads=2)
    assert f"{empty}" in str(err.value) and "no images" in str(err.value)
    assert str(err.value).endswith(f"fashionai pack --prepared {root} --tasks {TASK}")


def test_a_forked_worker_dies_of_sigterm_at_once():
    """The command turns SIGTERM into `Terminated`; its forked workers (loader and prepare pools)
    get the default action back. A Python handler runs only in a process's main thread, so a pool
    worker waiting on its queue's lock while the signal landed on its other thread never ended,
    and `Pool.terminate` waited on it forever. Here a forked child blocked on a lock is SIGTERMed
    and must end by the signal."""
    import multiprocessing

    from fashionai.core.errors import install_sigterm, raise_terminated

    before = signal.getsignal(signal.SIGTERM)
    install_sigterm()
    try:
        context = multiprocessing.get_context("fork")
        lock = context.Lock()
        lock.acquire()
        child = context.Process(target=lock.acquire)  # waits on the lock, as a pool worker on its queue
        child.start()
        child.join(0.5)
        assert child.is_alive()
        child.terminate()
        child.join(30)
        assert child.exitcode == -signal.SIGTERM  # the signal's default action, not a Python handler
        assert signal.getsignal(signal.SIGTERM) is raise_terminated  # the command keeps its own
    finally:
        signal.signal(signal.SIGTERM, before)
