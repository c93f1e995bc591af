"""TrainConfig: views of one config (JSON, YAML, flags, presets) and their precedence; a run's
config.json rebuilds the run."""

import json

import pytest
import yaml

from fashionai.cli import build_parser, main, train_config
from fashionai.core.tasks import num_classes
from fashionai.training.config import TrainConfig, check_config

from conftest import TASK, TINY


# --- configs ------------------------------------------------------------------------------------
def _custom_config(**changes):
    """A config with non-default values of every kind: lists, None/ints, bools, floats, strings."""
    values = dict(task=TASK, model="resnet18_v1b", lr_steps=[3, 6], num_gpus=2, no_wd=True, download=True,
                  mixup=0.2, devices="cpu:2", lr_mode="cosine", balance="weights", name="x")
    return TrainConfig(**{**values, **changes})


def test_config_round_trips_through_json_yaml_and_files(tmp_path):
    """config.json and -c FILE are views of one config: nothing may change on the way."""
    config = _custom_config()
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config.to_dict()))
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict()))
    assert TrainConfig.load(tmp_path / "c.yaml") == config == TrainConfig.load(tmp_path / "c.json")
    assert TrainConfig.from_dict({"task": TASK, "data-shape": 64, "lr-steps": [1]}).data_shape == 64
    (tmp_path / "list.yaml").write_text("- lr\n- 0.1\n")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.load(tmp_path / "list.yaml")
    with pytest.raises(FileNotFoundError, match="no such config file"):
        TrainConfig.load(tmp_path / "missing.yaml")


def test_a_runs_config_json_reloads_as_the_resolved_config(resumed):
    """config.json must rebuild the run: it is the resolved config (num_classes, name filled in)."""
    full, _, _ = resumed
    loaded = TrainConfig.load(full / "config.json")
    assert loaded.num_classes == num_classes(TASK) and loaded.name == "full"
    assert loaded == check_config(TrainConfig.from_dict({**loaded.to_dict(), "num_classes": 0}))
    assert loaded.epochs == 4 and loaded.model == TINY["model"] and loaded.resume == ""


def test_an_unknown_option_lists_the_valid_ones(tmp_path):
    """A typo in a config file must fail by name and show the valid keys, not be ignored."""
    with pytest.raises(ValueError, match="learning_rate") as err:
        TrainConfig.from_dict({"task": TASK, "learning_rate": 0.1})
    assert "valid:" in str(err.value) and "lr_mode" in str(err.value) and "warmup_epochs" in str(err.value)
    path = tmp_path / "typo.yaml"
    path.write_text(f"task: {TASK}\nlearning-rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        train_config(build_parser().parse_args(["train", "-c", str(path)]))
    assert main(["train", "-c", str(path)]) == 2  # the CLI reports it and exits 2


def _parse(*argv):
    return train_config(build_parser().parse_args(["train", *argv]))


def test_cli_precedence_flags_over_file_over_preset_over_defaults(tmp_path):
    """`fashionai train --preset demo -c FILE --flag`: each source overrides only the ones below it."""
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.5\nepochs: 7\nbatch-size: 4\nmodel: resnet18_v1b\n")
    config = _parse("--preset", "demo", "-c", str(path), "--task", TASK, "--epochs", "3", "--prepared", "P")
    preset = TrainConfig.demo(TASK, "P", "runs")
    assert config == TrainConfig.demo(TASK, "P", "runs", lr=0.5, epochs=3, batch_size=4, model="resnet18_v1b")
    assert config.epochs == 3  # flag over file
    assert config.lr == 0.5 and config.model == "resnet18_v1b"  # file over preset
    assert config.pretrained == preset.pretrained == "none" != TrainConfig().pretrained  # preset over default
    plain = _parse("-c", str(path), "--task", TASK, "--lr", "0.2")
    assert plain == TrainConfig(task=TASK, lr=0.2, epochs=7, batch_size=4, model="resnet18_v1b")
    assert plain.pretrained == "cache"  # no preset: the tutorial's defaults
    assert _parse("--task", TASK) == TrainConfig(task=TASK)
    with pytest.raises(ValueError, match="is required"):
        _parse("--epochs", "3")


def test_cli_aliases_are_the_tutorials_flag_names():
    """Commands written for the Gluon tutorial / GluonCV scripts keep working."""
    config = _parse("--task", TASK, "--num-epochs", "5", "-b", "8", "--lr-decay-epoch", "2", "4", "--lr-decay",
                    "0.5", "--input-size", "96", "-j", "2", "--no-wd", "--num-gpus", "0", "--no-download")
    assert (config.epochs, config.batch_size, config.lr_steps, config.lr_factor, config.data_shape,
            config.workers, config.no_wd, config.num_gpus, config.download) == (5, 8, [2, 4], 0.5, 96, 2, True, 0,
                                                                                 False)


def test_cli_resume_takes_the_runs_own_settings(resumed):
    """`--resume RUN --epochs N --allow-changes` continues with the run's config, changing only what
    is given (without --allow-changes a changed setting is refused: tests/test_faults.py)."""
    full, _, _ = resumed
    config = _parse("--resume", str(full), "--epochs", "6", "--allow-changes")
    assert config == TrainConfig.load(full / "config.json").replace(epochs=6, resume=str(full))
