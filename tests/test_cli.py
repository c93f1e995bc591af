"""The command line: every subcommand answers --help, errors exit 2 with the message, and the CLI
sets the thread count before anything imports MXNet."""

import subprocess
import sys

import pytest

from fashionai import __version__
from fashionai.cli import COMMANDS, build_parser, main
from fashionai.core.runtime import configure_threads

SUBCOMMANDS = ("demo-data", "prepare", "pack", "train", "evaluate", "predict", "submit", "check-submission",
               "export", "launch", "demo")


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


def test_importing_the_cli_imports_no_mxnet_and_main_sets_the_threads_first():
    code = ("import sys, os; os.environ.pop('OMP_NUM_THREADS', None); import fashionai.cli; "
            "assert 'mxnet' not in sys.modules and 'gluoncv' not in sys.modules; "
            "from fashionai.core.runtime import configure_threads; configure_threads(); "
            "from fashionai.core.cpu import usable_cores; "
            "assert os.environ['OMP_NUM_THREADS'] == str(usable_cores()); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_users_thread_setting_wins():
    env = {"OMP_NUM_THREADS": "1"}
    assert configure_threads(env) == {"OMP_NUM_THREADS": "1"} and env == {"OMP_NUM_THREADS": "1"}
    env = {}
    assert configure_threads(env)["OMP_NUM_THREADS"] == env["OMP_NUM_THREADS"] and int(env["OMP_NUM_THREADS"]) >= 1
