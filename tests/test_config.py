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


def _out_of_range(name):
    from molret.config import RANGES
    low, high, low_open = RANGES[name]
    values = [str(low) if low_open else str(low - 1)]
    if high is not None:
        values.append(str(high + 1))
    return values + ["nan-ish"]


def _numeric_fields():
    for dc in (ModelConfig, TrainConfig):
        for f in dataclasses.fields(dc):
            if f.name not in _NOT_FLAGS and f.type in ("int", "float", int, float):
                yield f.name


@pytest.mark.parametrize("name", sorted(_numeric_fields()))
def test_every_numeric_flag_refuses_out_of_range_values(name, capsys):
    """Each numeric flag has a range (RANGES); a value outside it, or not a
    number, is one error line naming the flag, exit 2, no traceback."""
    import main
    flag = "--" + name.replace("_", "-")
    for value in _out_of_range(name):
        with pytest.raises(SystemExit) as e:
            main.main([flag, value])
        assert e.value.code == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and f"argument {flag}:" in errors[0], (flag, value, err)
        assert "Traceback" not in err
