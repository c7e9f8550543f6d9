"""Every flag reaches the config."""
import dataclasses

import pytest

from molret.cli.common import config_from_args, training_parser
from molret.config import MiningConfig, ModelConfig, RunConfig, TrainConfig
from molret.cli.flags import CHOICES, NOT_FLAGS, add_mining_args


def _parser():
    """main_negativemining.py's flags: main.py's and the hard-negative ones."""
    parser = training_parser("t", "t")
    add_mining_args(parser)
    return parser


def _value_for(f, default):
    if isinstance(default, bool):
        return [f"--{'no-' if default else ''}{f.name.replace('_', '-')}"], (not default)
    if f.name in CHOICES:  # the first allowed value that is not the default
        value = next(c for c in CHOICES[f.name] if c != default)
        return [f"--{f.name.replace('_', '-')}", value], value
    if f.name == "mol_features":  # checked family names, written canonically
        return ["--mol-features", "rings, maccs"], "rings,maccs"
    if isinstance(default, int):
        return [f"--{f.name.replace('_', '-')}", str(default + 7)], default + 7
    if isinstance(default, float):
        from molret.cli.flags import RANGES
        high = RANGES.get(f.name, (None, None, False))[1]
        value = default + 0.5 if high is None or default + 0.5 <= high else default / 2  # a value in range
        return [f"--{f.name.replace('_', '-')}", str(value)], value
    return [f"--{f.name.replace('_', '-')}", "some-value"], "some-value"


@pytest.mark.parametrize("section,dc", [("model", ModelConfig), ("train", TrainConfig), ("mining", MiningConfig)])
def test_every_flag_reaches_config(section, dc):
    parser = _parser()
    for f in dataclasses.fields(dc):
        if f.name in NOT_FLAGS:
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
    cfg.mining.negatives, cfg.mining.queue_size = "queue", 64
    cfg.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == cfg


def test_demo_defaults_do_not_override_user_flags():
    parser = training_parser("t", "t")
    cfg = config_from_args(parser.parse_args(["--demo", "--epochs", "3"]))
    assert cfg.train.epochs == 3 and cfg.model.text_model == "minilm" and cfg.train.freeze_text


def _out_of_range(name):
    from molret.cli.flags import RANGES
    low, high, low_open = RANGES[name]
    values = [str(low) if low_open else str(low - 1)]
    if high is not None:
        values.append(str(high + 1))
    return values + ["nan-ish"]


def _numeric_fields():
    for dc, script in ((ModelConfig, "main"), (TrainConfig, "main"), (MiningConfig, "main_negativemining")):
        for f in dataclasses.fields(dc):
            if f.name not in NOT_FLAGS and f.type in ("int", "float", int, float):
                yield f.name, script


@pytest.mark.parametrize("name,script", sorted(_numeric_fields()))
def test_every_numeric_flag_refuses_out_of_range_values(name, script, capsys):
    """Each numeric flag has a range (RANGES); a value outside it, or not a
    number, is one error line naming the flag, exit 2, no traceback."""
    import importlib
    entry = importlib.import_module(script)
    flag = "--" + name.replace("_", "-")
    for value in _out_of_range(name):
        with pytest.raises(SystemExit) as e:
            entry.main([flag, value])
        assert e.value.code == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and f"argument {flag}:" in errors[0], (flag, value, err)
        assert "Traceback" not in err


def _inference_scripts():
    from molret.cli import ensemble as ensemble_cli
    from molret.cli import labels, text_embeddings
    from molret.cli import predictions as predict
    from molret.cli import search as search_cli
    from molret.cli import serve as web
    return {"predictions.py": predict.build_parser, "search.py": search_cli.build_parser, "serve.py": web.build_parser,
            "get_text_embeddings.py": text_embeddings.build_parser, "labels.py": labels.build_parser,
            "ensemble_method.py": ensemble_cli.build_parser}


def test_inference_flags_are_shared_and_range_checked(capsys):
    """--device, --threads, --batch-size, --no-progress: one definition (molret.cli.common.add_inference_args);
    a numeric one out of range is one error line naming the flag, exit 2."""
    for script, build in _inference_scripts().items():
        parser = build()
        flags = {a.dest: a for a in parser._actions}
        assert flags["device"].default == "auto", script
        for dest, bad in (("threads", "-1"), ("batch_size", "0")):
            if dest not in flags:
                continue
            with pytest.raises(SystemExit) as e:
                parser.parse_args(["--" + dest.replace("_", "-"), bad])
            assert e.value.code == 2
            err = capsys.readouterr().err
            assert f"argument --{dest.replace('_', '-')}:" in err and "Traceback" not in err, (script, err)


@pytest.mark.parametrize("value,expected", [("", ""), ("default", "maccs,morgan,fragments,elements,rings"),
                                            ("morgan,morgan, rings", "morgan,rings")])
def test_mol_features_flag_is_canonical(value, expected):
    assert config_from_args(_parser().parse_args(["--mol-features", value])).model.mol_features == expected


@pytest.mark.parametrize("value", ["maccs,nope", "MACCS", "morgan;rings"])
def test_mol_features_flag_refuses_unknown_families(value, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["--mol-features", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--mol-features" in err and "unknown molecule feature family" in err and "Traceback" not in err


# ------------------------------------------------------------ one table per set of choices (issue 33)

def _help_of(parser, flag: str):
    action = next(a for a in parser._actions if flag in a.option_strings)
    return action.choices, " ".join(parser.format_help().split()), " ".join((action.help or "").split())


def test_choice_flags_take_their_choices_and_help_from_their_tables():
    """--conv, --loss, --mol-features and every script's --names: the choices are the table's keys and the
    help names every choice with the table's words for it."""
    from molret.chem.mol_features import DEFAULT_FAMILIES, FAMILIES
    from molret.cli.flags import NAMES
    from molret.models.encoders import GRAPH_LAYERS
    from molret.training.losses import LOSSES
    main = _parser()
    for flag, table in (("--conv", GRAPH_LAYERS), ("--loss", LOSSES)):
        choices, _, text = _help_of(main, flag)
        assert list(choices) == list(table), flag
        for name, entry in table.items():
            assert f"{name} ({' '.join(entry.doc.split())})" in text, (flag, name)
    _, _, text = _help_of(main, "--mol-features")
    assert all(f"{n} ({' '.join(f.doc.split())})" in text for n, f in FAMILIES.items()) and ",".join(DEFAULT_FAMILIES) in text
    from molret.cli import ensemble, predictions, recipe, search, serve
    for name, parser in (("main.py", main), ("ensemble_method.py", ensemble.build_parser()),
                         ("recipe.py", recipe.build_parser()), ("predictions.py", predictions.build_parser()),
                         ("search.py", search.build_parser()), ("serve.py", serve.build_parser())):
        choices, _, text = _help_of(parser, "--names")
        assert [c for c in choices if c in NAMES] == list(NAMES) and set(choices) - set(NAMES) <= {"auto"}, name
        assert all(f"{c} ({' '.join(doc.split())})" in text for c, doc in NAMES.items()), (name, text)


def test_no_choice_list_typed_by_hand_in_the_cli():
    """The choices of --names, --conv, --loss and --rerank are written once, in their tables."""
    import re
    from pathlib import Path
    cli = Path(__file__).resolve().parents[1] / "molret" / "cli"
    typed = re.compile(r'choices=\[[^]]*"(opsin|gcn|clip|sinkhorn)"')
    bad = [f"{p.name}:{n}" for p in sorted(cli.glob("*.py"))
           for n, line in enumerate(p.read_text().splitlines(), 1) if typed.search(line)]
    assert not bad, bad
