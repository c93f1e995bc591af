"""The command line: every subcommand answers --help, errors exit 2 with the message, and the CLI
sets the thread count before anything imports MXNet."""

import subprocess
import sys

import pytest

from fashionai import __version__
from fashionai.cli import COMMANDS, build_parser, main

SUBCOMMANDS = ("demo-data", "prepare", "pack", "train", "evaluate", "predict", "submit", "check-submission",
               "export", "launch", "demo", "doctor")


def test_every_subcommand_is_registered_and_answers_help(capsys):
    parser = build_parser()
    assert len(COMMANDS) == len(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0 and f"usage: fashionai {name}" in capsys.readouterr().out


def test_version_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"fashionai {__version__}"
    with pytest.raises(SystemExit) as done:
        main(["no-such-command"])
    assert done.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--run", "r", "--tta", "twelve-crop"])  # a TTA mode argparse does not know
    assert "invalid choice: 'twelve-crop'" in capsys.readouterr().err


def test_a_stage_error_is_logged_and_exits_2(tmp_path, caplog):
    assert main(["prepare", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p")]) == 2
    assert "no such file" in caplog.text and "label.csv" in caplog.text
    assert main(["train", "--epochs", "3"]) == 2 and "--task" in caplog.text


def test_importing_the_cli_imports_no_mxnet_and_main_logs_the_runtime_first(tmp_path):
    code = ("import sys; import fashionai.cli; "
            "assert 'mxnet' not in sys.modules and 'gluoncv' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    done = subprocess.run([sys.executable, "-m", "fashionai", "check-submission", str(tmp_path / "s.csv"),
                           "--questions", str(tmp_path / "q.csv")], capture_output=True, text=True)
    first = done.stderr.splitlines()[0]
    assert "runtime: OMP_NUM_THREADS=" in first and "GOMP_SPINCOUNT=" in first and "DNNL_MAX_CPU_ISA=" in first
