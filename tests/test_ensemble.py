"""Tests for molret.ranking.ensemble, ensemble_method.py and get_text_embeddings.py."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from molret.ranking import ensemble as E  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402
from molret.evaluation.submission import read_submission  # noqa: E402

A = np.array([[1.0, 2.0, 3.0],
              [4.0, 0.0, 2.0]])
B = np.array([[3.0, 0.0, 1.0],
              [0.0, 0.0, 6.0]])


# ---------------------------------------------------------------- combining

def test_ensemble_of_one_is_the_matrix():
    for how in ("none",):
        np.testing.assert_array_equal(E.combine([A], normalize=how), A)
    np.testing.assert_array_equal(E.combine([A], weights=[3.0]), A)


def test_mean_and_weighted_mean_of_two():
    np.testing.assert_array_equal(E.combine([A, B]), [[2.0, 1.0, 2.0], [2.0, 0.0, 4.0]])
    np.testing.assert_allclose(E.combine([A, B], weights=[3, 1]), [[1.5, 1.5, 2.5], [3.0, 0.0, 3.0]])
    with pytest.raises(MolretError, match="2 weights for 1"):
        E.combine([A], weights=[1, 1])
    with pytest.raises(MolretError, match="different shapes"):
        E.combine([A, B[:, :2]])


def test_zscore_and_minmax_by_row_hand_computed():
    # Row [1, 2, 3]: mean 2, population std sqrt(2/3); row [4, 0, 2]: mean 2, std sqrt(8/3).
    z = E.normalize_rows(A, "zscore")
    np.testing.assert_allclose(z[0], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2 / 3))
    np.testing.assert_allclose(z[1], np.array([2.0, -2.0, 0.0]) / np.sqrt(8 / 3))
    np.testing.assert_allclose(E.normalize_rows(A, "minmax"), [[0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    const = np.array([[5.0, 5.0, 5.0]])
    np.testing.assert_array_equal(E.normalize_rows(const, "zscore"), [[0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(E.normalize_rows(const, "minmax"), [[0.0, 0.0, 0.0]])
    # Normalising before averaging: a member on a 10x scale no longer dominates.
    np.testing.assert_allclose(E.combine([A, 10 * B], normalize="minmax"),
                               0.5 * (E.normalize_rows(A, "minmax") + E.normalize_rows(B, "minmax")))
    with pytest.raises(MolretError, match="unknown normalisation"):
        E.normalize_rows(A, "softmax")


def test_val_targets_follow_cids():
    assert E.val_targets(["7", "5", "6"], ["5", "6", "7"], 3).tolist() == [2, 0, 1]
    assert E.val_targets(None, None, 3).tolist() == [0, 1, 2]


# ---------------------------------------------------------------- fitted weights

GOOD = np.eye(4) + 0.1            # every query's true molecule (the diagonal) first
BAD = np.eye(4)[[1, 2, 3, 0]]     # every query's true molecule last-but-tied: rank 4 (ties count against it)


def test_fitted_weights_outweigh_a_harmful_member():
    # equal weights: each row ties its diagonal (1.1 + 0) with BAD's 1 (0.1 + 1): rank 2, MRR 0.5. Coordinate
    # ascent tries GOOD's weight over the grid 0, 0.5, 1, 1.5: at 1.5 (1.65 vs 1.15) every query ranks first,
    # nothing after that scores strictly higher: weights (1.5, 1) / 2.5
    assert E.fit_member_weights([GOOD, BAD], np.arange(4)) == [0.6, 0.4]


def test_group_weights_without_groups_are_the_member_weights_and_groups_share_one():
    rng = np.random.default_rng(0)
    mats, targets = [rng.normal(size=(30, 40)) for _ in range(3)], rng.integers(0, 40, 30)
    assert E.fit_group_weights(mats, ["a", "b", "c"], targets) == E.fit_member_weights(mats, targets)
    w = E.fit_group_weights([GOOD, GOOD, BAD], ["g", "g", "h"], np.arange(4))
    assert w == [0.3, 0.3, 0.4]                 # (0.6, 0.4) as above, g's split equally between its two members
    with pytest.raises(MolretError, match="2 group labels for 3"):
        E.fit_group_weights([GOOD, GOOD, BAD], ["g", "h"], np.arange(4))


def test_cross_fitted_lrap_scores_each_half_with_the_other_halfs_weights():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(8, 8))
    perfect = np.eye(8) * 100
    # one member: weights do not matter, so it is that member's plain LRAP
    from molret.evaluation.metrics import ranks_of_targets
    assert E.cross_fitted_lrap([noise], ["a"], np.arange(8)) == pytest.approx(
        float(np.mean(1 / ranks_of_targets(noise, np.arange(8)))))
    # each half's fit drops the noise member (it only hurts): every held-out query ranks first
    assert E.cross_fitted_lrap([perfect, noise * 1000], ["a", "b"], np.arange(8)) == 1.0


def test_cli_groups_need_fit_weights_and_one_label_per_member(tmp_path, capsys):
    import ensemble_method
    np.save(tmp_path / "sim.npy", np.eye(3))
    for extra in (["--groups", "a", "b"], ["--groups", "a", "--fit-weights"]):
        with pytest.raises(SystemExit) as e:
            ensemble_method.main(["--members", str(tmp_path / "sim.npy"), str(tmp_path / "sim.npy"), *extra])
        assert e.value.code == 2
        assert "--groups needs --fit-weights and one label per member" in capsys.readouterr().err


# -------------------------------------------------------- ensemble_method.py

def _write_member(folder: Path, split: str, text, graph, text_ids, graph_ids):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{split}_text_emb.npy", np.asarray(text, np.float32))
    np.save(folder / f"{split}_graph_emb.npy", np.asarray(graph, np.float32))
    (folder / f"{split}_text_ids.txt").write_text("".join(f"{i}\n" for i in text_ids))
    (folder / f"{split}_graph_ids.txt").write_text("".join(f"{i}\n" for i in graph_ids))


def test_cli_single_npy_member_writes_that_matrix(tmp_path, capsys):
    import ensemble_method
    s = np.random.default_rng(0).uniform(-1, 1, (4, 5)).astype(np.float32)
    np.save(tmp_path / "sim.npy", s)
    ensemble_method.main(["--members", str(tmp_path / "sim.npy"), "--out", str(tmp_path / "sub.csv")])
    np.testing.assert_allclose(read_submission(tmp_path / "sub.csv"), s, rtol=1e-6)
    assert "no val matrices" in capsys.readouterr().out


def test_cli_val_lrap_of_members_and_mean(tmp_path, capsys):
    import ensemble_method
    cids = ["11", "12", "13"]
    eye = np.eye(3)
    # Member a ranks every true molecule first; member b swaps queries 0 and 1.
    _write_member(tmp_path / "a", "val", eye, eye, cids, cids)
    _write_member(tmp_path / "b", "val", eye[[1, 0, 2]], eye, cids, cids)
    res = ensemble_method.main(["--members", str(tmp_path / "a"), str(tmp_path / "b"),
                                "--save-similarity", str(tmp_path / "ens")])
    assert res[str(tmp_path / "a")]["lrap"] == 1.0
    # b: queries 0 and 1 score their molecule 0, tied with a third one and below another: rank 3.
    assert res[str(tmp_path / "b")]["lrap"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    # mean: query 0 -> [0.5, 0.5, 0]: tie with molecule 1 counts against it (rank 2).
    assert res["ensemble"]["lrap"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    np.testing.assert_allclose(np.load(tmp_path / "ens" / "val_similarity.npy"),
                               [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1]])
    # Weighting member a more breaks the tie the right way; a saved ensemble is itself a member.
    res = ensemble_method.main(["--members", str(tmp_path / "a"), str(tmp_path / "b"), "--weights", "2", "1"])
    assert res["ensemble"]["lrap"] == 1.0
    res = ensemble_method.main(["--members", str(tmp_path / "ens")])
    assert res[str(tmp_path / "ens")]["lrap"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    # Re-ranking the tied mean with the one-to-one structure cannot separate a symmetric tie,
    # but does not break the correct third query.
    res = ensemble_method.main(["--members", str(tmp_path / "a"), str(tmp_path / "b"), "--rerank", "sinkhorn",
                                "--rerank-temperature", "0.1"])
    assert res["ensemble"]["lrap"] >= (0.5 + 0.5 + 1) / 3 - 1e-9
    assert "ensemble of 2" in capsys.readouterr().out


def test_cli_refuses_misaligned_members(tmp_path, capsys):
    import ensemble_method
    cids = ["11", "12", "13"]
    eye = np.eye(3)
    _write_member(tmp_path / "a", "val", eye, eye, cids, cids)
    _write_member(tmp_path / "rev", "val", eye[::-1], eye, cids[::-1], cids)
    _write_member(tmp_path / "small", "val", eye[:2], eye[:2], cids[:2], cids[:2])
    for other, message in (("rev", "disagree on the val query order: position 0 is 11"),
                           ("small", "is 3x3 but")):
        with pytest.raises(SystemExit) as e:
            ensemble_method.main(["--members", str(tmp_path / "a"), str(tmp_path / other)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
    with pytest.raises(SystemExit):
        ensemble_method.main(["--members", str(tmp_path / "a"), "--weights", "1", "2"])
    assert "--weights has 2 values for 1 members" in capsys.readouterr().err


def test_cli_test_members_give_the_submission_and_nothing_else(tmp_path, capsys):
    import ensemble_method
    cids, eye = ["11", "12", "13"], np.eye(3)
    rng = np.random.default_rng(0)
    first_test, final_test = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    _write_member(tmp_path / "a", "val", eye, eye, cids, cids)
    _write_member(tmp_path / "a", "test", first_test, eye, ["0", "1", "2"], ["21", "22", "23"])
    _write_member(tmp_path / "final", "test", final_test, eye, ["0", "1", "2"], ["21", "22", "23"])
    res = ensemble_method.main(["--members", str(tmp_path / "a"), "--test-members", str(tmp_path / "final"),
                                "--out", str(tmp_path / "sub.csv")])
    # the submission is the final fit's test matrix (graph embeddings are the identity: text x I = text)
    np.testing.assert_allclose(read_submission(tmp_path / "sub.csv"), final_test, rtol=1e-5, atol=1e-6)
    assert res[str(tmp_path / "a")]["lrap"] == 1.0      # the val metrics stay the member's own
    _write_member(tmp_path / "other", "test", eye[:2], eye, ["0", "1"], ["21", "22", "23"])
    for paths, message in (([str(tmp_path / "final"), str(tmp_path / "final")], "2 paths for 1 members"),
                           ([str(tmp_path / "other")], "not over the same queries and molecules")):
        with pytest.raises(SystemExit):
            ensemble_method.main(["--members", str(tmp_path / "a"), "--test-members", *paths])
        assert message in capsys.readouterr().err


def _pool_members(tmp_path, n_members=2, n=6, seed=0):
    """Members with val and test embeddings (a pool): val CIDs v0.., test CIDs t0..; random 4-d unit rows."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n_members):
        def unit(rows):
            x = rng.normal(size=(rows, 4))
            return x / np.linalg.norm(x, axis=1, keepdims=True)
        folder = tmp_path / f"m{k}"
        _write_member(folder, "val", unit(n), unit(n), [f"v{i}" for i in range(n)], [f"v{i}" for i in range(n)])
        _write_member(folder, "test", unit(n), unit(n), [str(i) for i in range(n)], [f"t{i}" for i in range(n)])
        paths.append(str(folder))
    return paths


def test_sinkhorn_iters_reach_every_path(tmp_path):
    """Issue 33: --sinkhorn-iters reaches the submission whether or not --save-similarity is given (the pool
    report's test matrix used the default iterations before)."""
    import ensemble_method
    members = _pool_members(tmp_path)
    base = ["--members", *members, "--rerank", "sinkhorn", "--rerank-temperature", "0.05"]
    ensemble_method.main(base + ["--sinkhorn-iters", "1", "--out", str(tmp_path / "one.csv")])
    ensemble_method.main(base + ["--sinkhorn-iters", "1", "--out", str(tmp_path / "saved.csv"),
                                 "--save-similarity", str(tmp_path / "sim")])
    ensemble_method.main(base + ["--out", str(tmp_path / "default.csv")])
    one, saved = read_submission(tmp_path / "one.csv"), read_submission(tmp_path / "saved.csv")
    np.testing.assert_array_equal(one, saved)
    assert not np.allclose(one, read_submission(tmp_path / "default.csv"), atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "sim" / "test_similarity.npy"), one, rtol=1e-5, atol=1e-5)


def test_engine_api_returns_a_result(tmp_path):
    """The ensemble engine through its typed options: fitted weights, submission, result dataclass."""
    from molret.ranking.ensemble_engine import EnsembleOptions, run_ensemble
    members = _pool_members(tmp_path)
    res = run_ensemble(EnsembleOptions(members=members, fit_weights=True, rerank="sinkhorn",
                                       out=str(tmp_path / "sub.csv")))
    assert len(res.member_weights) == 2 and sum(res.member_weights) == pytest.approx(1.0)
    assert res.submission == str(tmp_path / "sub.csv") and res.names_weights is None and res.model_file is None
    assert 0 < res.metrics["pool"]["ensemble"]["pool_lrap"] <= 1
    # a model file needs every member's checkpoint, checked before any work
    with pytest.raises(MolretError, match="needs each member's checkpoint"):
        run_ensemble(EnsembleOptions(members=members, save_model=str(tmp_path / "m.pt")))
    with pytest.raises(MolretError, match="--normalize none"):
        run_ensemble(EnsembleOptions(members=members, normalize="zscore", save_model=str(tmp_path / "m.pt")))


# --------------------------------------- get_text_embeddings.py (trained model)

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from test_mining import _train_args, make_tiny_setup
    import main
    root, data = make_tiny_setup(tmp_path_factory.getbasetemp())
    run = root / "runs" / "ens-base"
    if not (run / "best.pt").exists():
        main.main(_train_args(root, data, "ens-base", "--epochs", "1"))
    return root, data, run / "best.pt"


def test_export_round_trips_with_ids(tiny_checkpoint, capsys):
    import get_text_embeddings
    from molret.data.challenge import read_cids, read_pairs_tsv, read_queries
    root, data, ckpt = tiny_checkpoint
    prefix = root / "export" / "val"
    paths = get_text_embeddings.main(["--model", str(ckpt), "--split", "val", "--graphs", "--out", str(prefix),
                                      "--cache-dir", str(root / "cache"), "--no-progress", "--device", "cpu"])
    assert "val: 85 text embeddings of dimension 16" in capsys.readouterr().out
    cids, _ = read_pairs_tsv(data / "val.tsv")
    text = np.load(paths["text_emb"])
    assert paths["text_emb"] == root / "export" / "val_text_emb.npy"
    assert (root / "export" / "val_text_ids.txt").read_text().split() == cids        # full split, in order
    assert (root / "export" / "val_graph_ids.txt").read_text().split() == cids
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    ref = E.checkpoint_embeddings(ckpt, ("val",), cache_dir=root / "cache")["val"]
    np.testing.assert_allclose(text, ref.text_emb, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.load(paths["graph_emb"]), ref.graph_emb, rtol=1e-6, atol=1e-7)
    # test: text ids are query line numbers, no graphs without --graphs.
    get_text_embeddings.main(["--model", str(ckpt), "--split", "test", "--out", str(root / "export" / "test"),
                              "--cache-dir", str(root / "cache"), "--no-progress", "--device", "cpu"])
    n = len(read_queries(data / "test_text.txt"))
    assert (root / "export" / "test_text_ids.txt").read_text().split() == [str(i) for i in range(n)]
    assert np.load(root / "export" / "test_text_emb.npy").shape == (n, 16)
    assert not (root / "export" / "test_graph_emb.npy").exists()
    assert len(read_cids(data / "test_cids.txt")) == n


def test_ensemble_of_checkpoint_and_its_export(tiny_checkpoint, tmp_path):
    import ensemble_method
    import get_text_embeddings
    root, data, ckpt = tiny_checkpoint
    for split in ("val", "test"):
        get_text_embeddings.main(["--model", str(ckpt), "--split", split, "--graphs",
                                  "--out", str(tmp_path / "m" / split), "--cache-dir", str(root / "cache"),
                                  "--no-progress", "--device", "cpu"])
    out = tmp_path / "sub.csv"
    res = ensemble_method.main(["--models", str(ckpt), "--members", str(tmp_path / "m"), "--data-dir", str(data),
                                "--cache-dir", str(root / "cache"), "--device", "cpu", "--out", str(out),
                                "--normalize", "zscore"])
    lraps = {k: v["lrap"] for k, v in res.items() if k != "pool"}
    pool = res["pool"]   # both members have val and test embeddings: the pool report
    assert pool["members"][str(ckpt)]["pool_lrap"] == pytest.approx(pool["ensemble"]["pool_lrap"], abs=1e-6)
    assert lraps[str(ckpt)] == pytest.approx(lraps[str(tmp_path / "m")], abs=1e-6)
    assert lraps["ensemble"] == pytest.approx(lraps[str(ckpt)], abs=1e-6)   # two equal members
    sub = read_submission(out)
    emb = E.member_from_path(tmp_path / "m").splits["test"][0]
    assert sub.shape == emb.shape == (85, 85)
    np.testing.assert_allclose(sub, E.normalize_rows(emb, "zscore"), rtol=1e-5, atol=1e-5)
