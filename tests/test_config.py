"""Every flag reaches the config."""
import dataclasses

import pytest

from molret.cli import config_from_args, training_parser
from molret.config import _CHOICES, _NOT_FLAGS, ModelConfig, RunConfig, TrainConfig


def _value_for(f, default):
    if isinstance(default, bool):
        return [f"--{'no-' if default else ''}{f.name.replace('_', '-')}"], (not default)
    if f.name in _CHOICES:  # the first allowed value that is not the default
        value = next(c for c in _CHOICES[f.name] if c != default)
        return [f"--{f.name.replace('_', '-')}", value], value
    if isinstance(default, int):
        return [f"--{f.name.replace('_', '-')}", str(default + 7)], default + 7
    if isinstance(default, float):
        return [f"--{f.name.replace('_', '-')}", str(default + 0.5)], default + 0.5
    return [f"--{f.name.replace('_', '-')}", "some-value"], "some-value"


@pytest.mark.parametrize("section,dc", [("model", ModelConfig), ("train", TrainConfig)])
def test_every_flag_reaches_config(section, dc):
    parser = training_parser("t", "t")
    for f in dataclasses.fields(dc):
        if f.name in _NOT_FLAGS:
            continue
        default = getattr(dc(), f.name)
        argv, expected = _value_for(f, default)
        cfg = config_from_args(parser.parse_args(argv))
        assert getattr(getattr(cfg, section), f.name) == expected, f.name
        if f.name == "demo":
            continue  # --demo also sets the demo defaults (tested below)
        # and nothing else changed
        other = dataclasses.replace(getattr(cfg, section), **{f.name: default})
        assert other == dc(), f.name


def test_config_roundtrip(tmp_path):
    cfg = RunConfig()
    cfg.model.conv = "gcn"
    cfg.train.seed = 9
    cfg.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == cfg


def test_demo_defaults_do_not_override_user_flags():
    parser = training_parser("t", "t")
    cfg = config_from_args(parser.parse_args(["--demo", "--epochs", "3"]))
    assert cfg.train.epochs == 3 and cfg.model.text_model == "minilm" and cfg.train.freeze_text
