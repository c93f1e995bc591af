"""One writer per folder, with real processes: a command asking for a folder another process holds
fails at once naming the holder; a holder that dies (SIGKILL) leaves nothing that blocks. No test
here waits on a clock: the holder says when it holds, and the loser must fail, not wait."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fashionai.core import lock
from fashionai.core.io import claiming

ROOT = Path(__file__).resolve().parents[1]
HOLDER = textwrap.dedent("""
    import sys, time
    from fashionai.core.lock import hold
    with hold(sys.argv[1], "a test folder", command="holder-under-test"):
        print("holding", flush=True)
        sys.stdin.read()  # until the test closes stdin (or kills us)
""")


@pytest.fixture
def holder():
    """Start a process that holds a folder until the test ends it; returns (process, folder)."""
    started = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        started.append(proc)
        assert proc.stdout.readline().strip() == "holding"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashionai", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_a_second_prepare_into_a_held_folder_fails_at_once_naming_the_holder(holder, demo_data, tmp_path):
    out = tmp_path / "prepared"
    proc = holder(out)
    done = _cli("prepare", "--data", str(demo_data), "--out", str(out))
    assert done.returncode == 2
    assert f"in use by `holder-under-test` (pid {proc.pid} on " in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()  # the loser wrote nothing
    proc.kill()  # a holder that dies, however it dies, leaves no lock behind
    proc.wait()
    again = _cli("prepare", "--data", str(demo_data), "--out", str(out), "--tasks", "skirt_length_labels")
    assert again.returncode == 0, again.stderr
    assert (out / "manifest.csv").is_file() and not lock.lock_path(out).exists()


def test_demo_data_into_a_held_folder_fails(holder, tmp_path):
    out = tmp_path / "demo"
    holder(out)
    done = _cli("demo-data", str(out), "--tasks", "skirt_length_labels")
    assert done.returncode == 2 and "in use by `holder-under-test`" in done.stderr


def test_the_same_folder_twice_in_one_process_is_refused_and_released_after(tmp_path):
    folder = tmp_path / "x"
    with lock.hold(folder, "x", command="first"):
        with pytest.raises(lock.FolderBusy, match="in use by `first`"):
            with lock.hold(folder, "x"):
                pass
        with lock.hold(tmp_path / "y", "y"):  # another folder is another lock
            pass
    with lock.hold(folder, "x"):  # released: free again
        pass
    assert not lock.lock_path(folder).exists()


def test_claiming_checks_under_the_lock(tmp_path):
    """The folder check runs after the lock is taken: a folder filled by the previous holder is
    refused like any other (no check-then-take gap)."""
    out = tmp_path / "made"
    with claiming(out, ".marker", False, "a thing") as target:
        target.mkdir()
        (target / "file").write_text("someone's")
    with pytest.raises(FileExistsError, match="is not empty and has no .marker"):
        with claiming(out, ".marker", False, "a thing"):
            pass


def test_a_lock_file_removed_before_it_was_locked_is_not_kept(tmp_path, monkeypatch):
    """A taker whose lock file was removed (by the holder releasing) between its open and its lock
    starts over on a new file: it never holds a lock on a file nobody else can see."""
    folder = tmp_path / "f"
    path = lock.lock_path(folder)
    real_flock, calls = lock.fcntl.flock, []

    def flock(fd, op):
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(path)
        return real_flock(fd, op)

    monkeypatch.setattr(lock.fcntl, "flock", flock)
    with lock.hold(folder, "f"):
        assert len(calls) == 2 and path.exists()
        monkeypatch.setattr(lock.fcntl, "flock", real_flock)
        with pytest.raises(lock.FolderBusy):  # the file on disk is the one held
            with lock.hold(folder, "f"):
                pass


def test_a_second_train_of_one_run_fails_at_once(prepared_data, tmp_path, caplog):
    from fashionai.cli import main

    run = tmp_path / "skirt_length_labels" / "r"
    argv = ["train", "--task", "skirt_length_labels", "--preset", "demo", "--prepared", str(prepared_data),
            "--out", str(tmp_path), "--name", "r", "--epochs", "1", "--data-shape", "32", "--model",
            "cifar_resnet20_v1", "--devices", "cpu"]
    with lock.hold(run, "a training run", command="the first train"):
        assert main(argv) == 2
    assert f"{run} is in use by `the first train`" in caplog.text and not run.exists()
    assert main(argv) == 0  # free again once the holder is done
