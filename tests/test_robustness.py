"""Faults fed to the scripts: each gives one clear line and a non-zero exit
(or a counted skip), nothing truncated is left behind, and interrupted runs
resume exactly."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import main as main_script
import predictions as predictions_script
from molret.cli.common import run_training
from molret.utils.errors import GraphFormatError, MolretError
from molret.chem.graph_format import parse_graph_text
from molret.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def small_args(data_dir, text_model, runs, name, *extra):
    return ["--data-dir", str(data_dir), "--text-model", text_model, "--epochs", "3", "--batch-size", "16",
            "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16", "--proj-hidden", "0", "--max-length", "48",
            "--text-pooling", "mean", "--text-lr", "1e-3", "--runs-dir", str(runs), "--run-name", name, "--cache-dir", str(Path(runs) / "cache"), "--seed", "5",
            "--no-write-submission", "--no-progress", *extra]


def expect_user_error(capsys, fn, needle):
    with pytest.raises(SystemExit) as e:
        fn()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and needle in err[-1], err
    assert not any("Traceback" in line for line in err)


# ------------------------------------------------------------------ resume

class StopAt(Trainer):
    """Simulates a signal (or a hard kill) at a given global step."""
    stop_step = None
    crash_after_epoch = None

    def train_step(self, batch):
        loss = super().train_step(batch)
        if self.global_step + 1 == self.stop_step:
            self._stop_signal = signal.SIGINT
        return loss

    def end_epoch(self, *a, **k):
        super().end_epoch(*a, **k)
        if self.epoch == self.crash_after_epoch:
            raise RuntimeError("simulated hard kill after the epoch's checkpoint")


@pytest.mark.parametrize("how", ["mid-epoch signal", "kill between epochs"])
def test_resume_gives_same_metrics_as_uninterrupted(demo_dir, tiny_text_model, tmp_path, how):
    ref = main_script.main(small_args(demo_dir, tiny_text_model, tmp_path, "ref"))
    if how == "mid-epoch signal":
        StopAt.stop_step, StopAt.crash_after_epoch = 20, None  # epoch 2 of 3 (~26 steps an epoch)
        with pytest.raises(SystemExit) as e:
            run_training(small_args(demo_dir, tiny_text_model, tmp_path, "cut"), StopAt, "t", "t")
        assert e.value.code == 130
    else:
        StopAt.stop_step, StopAt.crash_after_epoch = None, 1
        with pytest.raises(RuntimeError):
            run_training(small_args(demo_dir, tiny_text_model, tmp_path, "cut"), StopAt, "t", "t")
    assert (tmp_path / "cut" / "last.pt").exists()
    resumed = main_script.main(["--resume", str(tmp_path / "cut"), "--no-progress"])
    assert resumed["val"] == ref["val"]
    assert resumed["epochs"] == 3
    hist = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    ref_hist = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["val_lrap"] for h in hist] == [h["val_lrap"] for h in ref_hist]
    assert len({h["val_lrap"] for h in ref_hist}) > 1  # the model does learn: equality is not trivial


def test_ctrl_c_saves_and_exits_cleanly(demo_dir, tiny_text_model, tmp_path):
    args = small_args(demo_dir, tiny_text_model, tmp_path, "sig")
    args[args.index("--epochs") + 1] = "200"
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), *args], cwd=REPO, stderr=subprocess.PIPE,
                            text=True)
    metrics = tmp_path / "sig" / "metrics.json"
    deadline = time.time() + 120
    while not metrics.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert metrics.exists(), "training did not reach the end of epoch 1"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "--resume" in err
    assert (tmp_path / "sig" / "last.pt").exists()
    state = torch.load(tmp_path / "sig" / "last.pt", weights_only=False)["train_state"]
    assert state["epoch"] >= 1


def test_resume_of_a_folder_without_checkpoint(tmp_path, capsys):
    expect_user_error(capsys, lambda: main_script.main(["--resume", str(tmp_path)]), "not a run folder with a last.pt checkpoint")


def test_existing_run_folder_is_not_overwritten(demo_dir, tiny_text_model, tmp_path, capsys):
    args = small_args(demo_dir, tiny_text_model, tmp_path, "once")
    args[args.index("--epochs") + 1] = "1"
    main_script.main(args)
    expect_user_error(capsys, lambda: main_script.main(args), "already holds a run")


# ---------------------------------------------------------- non-finite loss

class NanAt(Trainer):
    nan_steps = set()

    def compute_loss(self, text_emb, graph_emb, batch):
        loss = super().compute_loss(text_emb, graph_emb, batch)
        return loss * float("nan") if self.global_step in self.nan_steps else loss


def test_nonfinite_loss_skips_step_and_names_cids(demo_dir, tiny_text_model, tmp_path, caplog):
    NanAt.nan_steps = {3}
    result = run_training(small_args(demo_dir, tiny_text_model, tmp_path, "nan1"), NanAt, "t", "t")
    log = (tmp_path / "nan1" / "train.log").read_text()
    assert "non-finite loss at epoch 1 step 4: step skipped; batch CIDs:" in log
    assert np.isfinite(result["val"]["lrap"])
    for p in (tmp_path / "nan1").glob("*.pt"):
        state = torch.load(p, weights_only=False)["model_state"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_persistent_nonfinite_loss_stops_without_checkpoint(demo_dir, tiny_text_model, tmp_path, capsys):
    NanAt.nan_steps = set(range(1000))
    expect_user_error(capsys, lambda: run_training(small_args(demo_dir, tiny_text_model, tmp_path, "nan2"), NanAt,
                                                   "t", "t"), "non-finite")
    assert not (tmp_path / "nan2" / "best.pt").exists()


# -------------------------------------------------------------- bad input

def copy_demo(demo_dir, tmp_path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(demo_dir, dst)
    return dst


def first_line(path):
    return path.read_text().splitlines()[0]


@pytest.mark.parametrize("fault,needle", [
    ("missing data dir", "does not exist"),
    ("cid without graph", "is missing"),
    ("malformed graph", "node indices must be integers"),
    ("edge to missing node", "refers to an atom that does not exist"),
    ("no identifier section", "missing 'idx to identifier:'"),
    ("empty text", "empty description"),
    ("duplicated cid", "duplicated"),
    ("test length mismatch", "must have the same length"),
    ("missing embeddings", "token_embedding_dict.npy"),
])
def test_bad_data_gives_one_clear_line(fault, needle, demo_dir, tiny_text_model, tmp_path, capsys):
    data = copy_demo(demo_dir, tmp_path)
    cid = first_line(data / "train.tsv").split("\t")[0]
    graph = data / "raw" / f"{cid}.graph"
    if fault == "missing data dir":
        data = tmp_path / "nope"
    elif fault == "cid without graph":
        graph.unlink()
    elif fault == "malformed graph":
        graph.write_text(graph.read_text().replace("edgelist:\n", "edgelist:\n0 zero\n"))
    elif fault == "edge to missing node":
        graph.write_text(graph.read_text().replace("edgelist:\n", "edgelist:\n0 999\n"))
    elif fault == "no identifier section":
        graph.write_text(graph.read_text().split("idx to identifier:")[0])
    elif fault == "empty text":
        lines = (data / "train.tsv").read_text().splitlines()
        lines[3] = lines[3].split("\t")[0] + "\t   "
        (data / "train.tsv").write_text("\n".join(lines) + "\n")
    elif fault == "duplicated cid":
        lines = (data / "val.tsv").read_text().splitlines()
        (data / "val.tsv").write_text("\n".join(lines + [lines[0]]) + "\n")
    elif fault == "test length mismatch":
        (data / "test_text.txt").write_text("\n".join((data / "test_text.txt").read_text().splitlines()[:-1]) + "\n")
    elif fault == "missing embeddings":
        (data / "token_embedding_dict.npy").unlink()
    args = small_args(data, tiny_text_model, tmp_path / "runs", "bad")
    args.remove("--no-write-submission")
    expect_user_error(capsys, lambda: main_script.main(args), needle)
    cache = tmp_path / "runs" / "cache"
    if cache.exists():  # nothing half-written in the cache
        assert not list(cache.glob(".*tmp*"))


@pytest.fixture(scope="module")
def trained_ckpt(demo_dir, tiny_text_model, tmp_path_factory):
    runs = tmp_path_factory.mktemp("ck")
    args = small_args(demo_dir, tiny_text_model, runs, "m")
    args[args.index("--epochs") + 1] = "1"
    main_script.main(args)
    return runs / "m" / "best.pt"


def test_predictions_rejects_unrelated_pt(tmp_path, capsys):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    expect_user_error(capsys, lambda: predictions_script.main(["--model", str(tmp_path / "other.pt")]),
                      "not a molret checkpoint")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle at all")
    expect_user_error(capsys, lambda: predictions_script.main(["--model", str(tmp_path / "junk.pt")]),
                      "not a readable checkpoint")
    expect_user_error(capsys, lambda: predictions_script.main(["--model", str(tmp_path / "none.pt")]),
                      "does not exist")


def test_predictions_rejects_checkpoint_of_other_configuration(trained_ckpt, tmp_path, capsys):
    ckpt = torch.load(trained_ckpt, weights_only=False)
    ckpt["config"]["model"]["hidden_dim"] = 64  # weights no longer match the config
    torch.save(ckpt, tmp_path / "mismatch.pt")
    expect_user_error(capsys, lambda: predictions_script.main(["--model", str(tmp_path / "mismatch.pt")]),
                      "do not match")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_nonroot(trained_ckpt, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    expect_user_error(capsys, lambda: predictions_script.main(["--model", str(trained_ckpt), "--out",
                                                               str(ro / "s.csv")]), "not writable")


def test_unwritable_output(trained_ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    expect_user_error(capsys, lambda: predictions_script.main(["--model", str(trained_ckpt), "--out",
                                                               str(blocker / "s.csv")]), "not writable")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    from molret.utils.files import atomic_path
    target = tmp_path / "x.csv"
    target.write_text("old complete content")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old complete content"
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]


# -------------------------------------------------------------------- fuzz

line = st.one_of(
    st.tuples(st.integers(-3, 12), st.integers(-3, 12)).map(lambda t: f"{t[0]} {t[1]}"),
    st.text(alphabet="0123456789 x-\t", max_size=8),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges=st.lists(line, max_size=12), atoms=st.lists(st.integers(0, 2**32), max_size=10),
       header=st.sampled_from(["edgelist:", "edgelist:", "edges:", ""]),
       middle=st.sampled_from(["idx to identifier:", "idx to identifier:", "", "idx:"]),
       newline=st.sampled_from(["\n", "\r\n"]), shuffle_ids=st.booleans())
def test_fuzz_parser_succeeds_consistently_or_raises_own_error(edges, atoms, header, middle, newline, shuffle_ids):
    ids = list(enumerate(atoms))
    if shuffle_ids:
        ids = ids[::-1]
    text = newline.join([header, *edges, "", middle, *[f"{i} {a}" for i, a in ids]]) + newline
    try:
        edge_index, identifiers = parse_graph_text(text, "fuzz.graph")
    except GraphFormatError as e:
        assert "fuzz.graph" in str(e)
        return
    assert edge_index.shape[0] == 2 and edge_index.dtype == np.int64
    assert len(identifiers) >= 1
    if edge_index.size:
        assert edge_index.min() >= 0 and edge_index.max() < len(identifiers)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_tsv_lines(tmp_path_factory, content):
    from molret.data.challenge import read_pairs_tsv
    p = tmp_path_factory.mktemp("tsv") / "f.tsv"
    p.write_text(content, encoding="utf-8")
    try:
        cids, texts = read_pairs_tsv(p)
    except MolretError:
        return
    assert len(cids) == len(texts) >= 1
    assert all(c.isdigit() for c in cids) and all(t.strip() for t in texts)


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])
def test_first_contact_without_data_says_what_to_do(tmp_path, capsys, make):
    """`python main.py` before any download: one line naming the Kaggle command and --demo."""
    import main
    with pytest.raises(SystemExit) as e:
        main.main(["--data-dir", str(make(tmp_path)), "--runs-dir", str(tmp_path / "runs")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "kaggle competitions download" in err[0] and "--demo" in err[0]
