"""Checkpoints and data files from someone else cannot run code (issue 15):
a pickled payload in a checkpoint or in token_embedding_dict.npy is refused by
every entry point in one `error:` line (exit 2) and never executed; genuine
checkpoints still load everywhere; old-format checkpoints are refused with the
conversion command, which makes them loadable."""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
for p in (REPO, TESTS):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import convert_checkpoint  # noqa: E402
import ensemble_method  # noqa: E402
import get_text_embeddings  # noqa: E402
import labels as labels_script  # noqa: E402
import main as main_script  # noqa: E402
import main_negativemining  # noqa: E402
import predictions  # noqa: E402
import search as search_script  # noqa: E402
from molret.models import checkpoint as C  # noqa: E402
from molret.data.vocab import Vocab, read_embedding_dict  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402
from test_mining import make_tiny_setup  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread_module")


class Payload:
    """Unpickling this creates ``marker`` (by calling builtins.open on it)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _args(root, data, name, *extra):
    return ["--data-dir", str(data), "--cache-dir", str(root / "cache"), "--text-model", str(root / "tinybert"),
            "--freeze-text", "--runs-dir", str(root / "safe-runs"), "--run-name", name, "--no-progress",
            "--hidden-dim", "32", "--embed-dim", "16", "--proj-hidden", "0", "--num-layers", "1", "--heads", "2",
            "--max-length", "48", "--batch-size", "32", "--max-train", "96", "--max-val", "40",
            "--no-write-submission", "--threads", "1", *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A main.py run and a main_negativemining.py run (1 epoch each, tiny)."""
    root, data = make_tiny_setup(tmp_path_factory.getbasetemp())
    for name, script, extra in (("plain", main_script, []),
                                ("mined", main_negativemining, ["--negatives", "queue", "--queue-size", "48"])):
        if not (root / "safe-runs" / name / "last.pt").exists():
            script.main(_args(root, data, name, "--epochs", "1", *extra))
    return root, data


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    lib = tmp_path_factory.mktemp("lib") / "lib.smi"
    lib.write_text("CCO ethanol\nc1ccccc1O phenol\nCC(=O)O acetic\n")
    return lib


def craft_checkpoint(genuine: Path, out: Path, marker: Path) -> Path:
    """A checkpoint that is genuine except for one entry whose unpickling
    would run code."""
    ckpt = torch.load(genuine, weights_only=True)
    ckpt["metrics"] = {"lrap": Payload(marker)}
    torch.save(ckpt, out)
    return out


def craft_embedding_dict(out: Path, marker: Path) -> Path:
    d = {"UNK": np.zeros(4, np.float32), "11": np.ones(4, np.float32), "22": Payload(marker)}
    np.save(out, np.array(d, dtype=object), allow_pickle=True)
    return out


def one_error_line(capsys, fn, needle=None):
    """``fn`` exits with code 2 and the last stderr line is its one error."""
    with pytest.raises(SystemExit) as e:
        fn()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert sum(line.startswith("error:") for line in err) == 1, err
    assert not any("Traceback" in line for line in err), err
    if needle:
        assert needle in err[-1], err[-1]
    return err[-1]


# --------------------------------------------------------- the payloads work

def test_payloads_would_run_under_unsafe_loaders(runs, tmp_path):
    """Sanity: the crafted files do create the marker when read unsafely (so
    the tests below, which check it stays absent, can fail)."""
    root, _ = runs
    marker1, marker2 = tmp_path / "m1", tmp_path / "m2"
    bad = craft_checkpoint(root / "safe-runs" / "plain" / "best.pt", tmp_path / "bad.pt", marker1)
    emb = craft_embedding_dict(tmp_path / "bad.npy", marker2)
    code = (f"import torch, numpy as np; torch.load({str(bad)!r}, weights_only=False); "
            f"np.load({str(emb)!r}, allow_pickle=True)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, capture_output=True)
    assert marker1.exists() and marker2.exists()


# ----------------------------------------------- crafted checkpoints refused

def _ckpt_entry_points(root, data, library, bad, tmp_path):
    """name -> callable running that entry point on the checkpoint ``bad``
    (--resume: a copy of the run folder with ``bad`` as its last.pt, one more epoch)."""
    def resume(script, run):
        def go():
            folder = tmp_path / f"resume-{run}"
            shutil.copytree(root / "safe-runs" / run, folder)
            shutil.copy(bad, folder / "last.pt")
            return script.main(["--resume", str(folder), "--epochs", "2", "--no-progress"])
        return go

    return {
        "predictions": lambda: predictions.main(["--model", str(bad), "--out", str(tmp_path / "p.csv")]),
        "search": lambda: search_script.main(["--model", str(bad), "--library", str(library), "--no-cache",
                                              "--no-progress", "ethanol"]),
        "ensemble_method": lambda: ensemble_method.main(["--models", str(bad), "--out", str(tmp_path / "e.csv")]),
        "get_text_embeddings": lambda: get_text_embeddings.main(["--model", str(bad), "--split", "val",
                                                                 "--out", str(tmp_path / "emb" / "val")]),
        "labels": lambda: labels_script.main(["--model", str(bad), "--n-clusters", "2",
                                              "--out", str(tmp_path / "labels.tsv")]),
        "main --init-from": lambda: main_script.main(_args(root, data, "init", "--epochs", "1",
                                                           "--runs-dir", str(tmp_path), "--init-from", str(bad))),
        "main --resume": resume(main_script, "plain"),
        "main_negativemining --resume": resume(main_negativemining, "mined"),
    }


ENTRY_POINTS = ["predictions", "search", "ensemble_method", "get_text_embeddings", "labels", "main --init-from",
                "main --resume", "main_negativemining --resume"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_crafted_checkpoint_is_refused_unexecuted(entry, runs, library, tmp_path, capsys):
    root, data = runs
    marker = tmp_path / "PWNED"
    genuine = root / "safe-runs" / ("mined" if "negativemining" in entry else "plain") / "last.pt"
    bad = craft_checkpoint(genuine, tmp_path / "bad.pt", marker)
    run = _ckpt_entry_points(root, data, library, bad, tmp_path)[entry]
    line = one_error_line(capsys, run, "could run code")
    assert "builtins.open" in line or "io.open" in line, line
    assert not marker.exists()


def test_crafted_checkpoint_in_legacy_torch_format_is_refused(runs, tmp_path, capsys):
    root, _ = runs
    marker = tmp_path / "PWNED"
    ckpt = torch.load(root / "safe-runs" / "plain" / "best.pt", weights_only=True)
    ckpt["metrics"] = Payload(marker)
    torch.save(ckpt, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    one_error_line(capsys, lambda: predictions.main(["--model", str(tmp_path / "legacy.pt")]), "could run code")
    assert not marker.exists()


def test_checkpoint_with_unsafe_tokenizer_file_is_refused(runs, tmp_path, capsys):
    root, _ = runs
    ckpt = torch.load(root / "safe-runs" / "plain" / "best.pt", weights_only=True)
    ckpt["tokenizer_files"]["../../escaped.json"] = b"{}"
    torch.save(ckpt, tmp_path / "tok.pt")
    one_error_line(capsys, lambda: predictions.main(["--model", str(tmp_path / "tok.pt")]),
                   "refusing tokenizer file")
    assert not list(tmp_path.parent.glob("escaped.json"))


# --------------------------------------------- crafted embedding dict refused

def test_crafted_embedding_dict_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "PWNED"
    bad = craft_embedding_dict(tmp_path / "token_embedding_dict.npy", marker)
    with pytest.raises(MolretError, match=r"token_embedding_dict\.npy: refused: .*open"):
        Vocab.from_npy(bad)
    assert not marker.exists()


@pytest.mark.parametrize("script", [main_script, main_negativemining], ids=["main", "main_negativemining"])
def test_training_on_a_data_folder_with_crafted_embedding_dict(script, runs, tmp_path, capsys):
    root, data = runs
    folder = tmp_path / "data"
    folder.mkdir()
    for f in data.iterdir():
        if f.name != "token_embedding_dict.npy" and f.name != "cache":
            (folder / f.name).symlink_to(f)
    marker = tmp_path / "PWNED"
    craft_embedding_dict(folder / "token_embedding_dict.npy", marker)
    args = _args(root, folder, "emb", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache"))
    one_error_line(capsys, lambda: script.main(args), "token_embedding_dict.npy: refused")
    assert not marker.exists()


def test_embedding_dicts_of_the_challenge_and_the_demo_still_load(runs, altegrad):
    _, data = runs
    demo = read_embedding_dict(data / "token_embedding_dict.npy")
    assert "UNK" in demo and all(isinstance(v, np.ndarray) for v in demo.values())
    ref = np.load(altegrad / "token_embedding_dict.npy", allow_pickle=True)[()]
    ours = read_embedding_dict(altegrad / "token_embedding_dict.npy")
    assert ours.keys() == ref.keys() and all(np.array_equal(ours[k], ref[k]) for k in ref)


def test_embedding_dict_that_is_not_a_npy_dict_is_one_clear_error(tmp_path):
    import pickle
    (tmp_path / "raw.npy").write_bytes(pickle.dumps({"UNK": np.zeros(3)}))
    with pytest.raises(MolretError, match="cannot read the substructure embedding dict"):
        Vocab.from_npy(tmp_path / "raw.npy")
    np.save(tmp_path / "float.npy", np.zeros((2, 3)))
    with pytest.raises(MolretError, match="expected a dict"):
        Vocab.from_npy(tmp_path / "float.npy")


# ------------------------------------------------ genuine checkpoints load

def test_genuine_checkpoints_are_plain_data(runs):
    root, _ = runs
    for run in ("plain", "mined"):
        for name in ("best.pt", "last.pt"):
            ckpt = torch.load(root / "safe-runs" / run / name, weights_only=True)
            assert ckpt["version"] == C.VERSION == 2


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_genuine_checkpoint_loads_in_every_entry_point(entry, runs, library, tmp_path):
    root, data = runs
    genuine = root / "safe-runs" / ("mined" if "negativemining" in entry else "plain")
    ckpt = genuine / ("last.pt" if "resume" in entry else "best.pt")
    result = _ckpt_entry_points(root, data, library, ckpt, tmp_path)[entry]()
    if "resume" in entry:
        assert result["epochs"] == 2
    if entry == "ensemble_method":
        assert (tmp_path / "e.csv").exists()


def test_rng_states_survive_the_safe_loader(tmp_path):
    np.random.seed(7)
    np.random.standard_normal()            # leaves a cached gaussian half the time
    random.seed(8)
    random.gauss(0, 1)                     # gauss_next set
    state = {"numpy_rng": C.numpy_rng_state(), "python_rng": C.python_rng_state()}
    expected = (np.random.random(5), [random.random() for _ in range(5)], random.gauss(0, 1))
    torch.save(C.to_plain(state), tmp_path / "s.pt")
    back = torch.load(tmp_path / "s.pt", weights_only=True)
    C.set_numpy_rng_state(back["numpy_rng"])
    C.set_python_rng_state(back["python_rng"])
    assert np.array_equal(np.random.random(5), expected[0])
    assert [random.random() for _ in range(5)] == expected[1] and random.gauss(0, 1) == expected[2]


# ------------------------------------------------------ old checkpoints

def _old_style(genuine: Path, out: Path) -> Path:
    """A checkpoint as written before format 2: numpy RNG state as an array."""
    ckpt = torch.load(genuine, weights_only=True)
    ckpt["version"] = 1
    np.random.seed(3)
    random.seed(3)
    ckpt["train_state"]["numpy_rng"] = np.random.get_state()
    ckpt["train_state"]["python_rng"] = random.getstate()
    torch.save(ckpt, out)
    return out


def test_old_checkpoint_is_refused_with_the_conversion_command(runs, tmp_path, capsys):
    root, _ = runs
    old = _old_style(root / "safe-runs" / "plain" / "last.pt", tmp_path / "old.pt")
    line = one_error_line(capsys, lambda: predictions.main(["--model", str(old)]),
                          f"python convert_checkpoint.py {old} NEW.pt")
    assert "numpy" in line


def test_convert_checkpoint_makes_an_old_checkpoint_loadable(runs, tmp_path, capsys):
    root, _ = runs
    run = tmp_path / "run"
    shutil.copytree(root / "safe-runs" / "plain", run)
    _old_style(run / "last.pt", run / "old.pt")
    np.random.seed(3)
    numpy_state = np.random.get_state()
    convert_checkpoint.main([str(run / "old.pt"), str(run / "last.pt")])
    assert "wrote" in capsys.readouterr().out
    ckpt = C.read_checkpoint(run / "last.pt")
    assert ckpt["version"] == C.VERSION
    C.set_numpy_rng_state(ckpt["train_state"]["numpy_rng"])
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    predictions.main(["--model", str(run / "last.pt"), "--out", str(tmp_path / "p.csv")])
    assert main_script.main(["--resume", str(run), "--epochs", "2", "--no-progress"])["epochs"] == 2
    # the converter never overwrites its input and gives one line on a file that is no checkpoint
    one_error_line(capsys, lambda: convert_checkpoint.main([str(run / "old.pt"), str(run / "old.pt")]),
                   "another path")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    one_error_line(capsys, lambda: convert_checkpoint.main([str(tmp_path / "junk.pt"), str(tmp_path / "j.pt")]),
                   "not a readable checkpoint")
