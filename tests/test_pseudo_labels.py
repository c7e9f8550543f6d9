"""Transductive pseudo-labels: mutual best matches with a margin (by hand on
3x3 matrices), their precision, the TSV they are written as, main.py
--extra-pairs training on them (features of val/test texts reused, not
re-encoded), and ensemble_method.py --pseudo-labels end to end."""
import numpy as np
import pytest

from molret.utils.errors import MolretError
from molret.ranking.pseudo_labels import mutual_matches, pairs_tsv, precision, row_probabilities


def test_mutual_best_with_margin_by_hand():
    # log-probabilities: row 0 prefers col 0 (0.8 vs 0.1), row 1 prefers col 0 too (0.6) but col 0's best row is
    # row 0, so row 1 is not mutual; row 2 prefers col 2 at 0.5 vs 0.4: mutual, but a margin of only 0.1
    p = np.array([[0.8, 0.1, 0.1],
                  [0.6, 0.3, 0.1],
                  [0.05, 0.4, 0.55]])
    rows, cols, gap = mutual_matches(np.log(p), margin=0.5)
    assert rows.tolist() == [0] and cols.tolist() == [0] and gap == pytest.approx([0.7])
    rows, cols, gap = mutual_matches(np.log(p), margin=0.1)
    assert rows.tolist() == [0, 2] and cols.tolist() == [0, 2] and gap == pytest.approx([0.7, 0.15])
    rows, _, _ = mutual_matches(np.log(p), margin=0.0)
    assert rows.tolist() == [0, 2]          # row 1 is never mutual


def test_a_tie_is_not_confident_and_margin_range():
    rows, _, _ = mutual_matches(np.log(np.array([[0.5, 0.5], [0.1, 0.9]])), margin=0.0)
    assert rows.tolist() == [1]
    for bad in (-0.1, 1.5):
        with pytest.raises(MolretError, match="margin"):
            mutual_matches(np.zeros((2, 2)), bad)


def test_row_probabilities_is_a_softmax():
    p = row_probabilities(np.array([[0.0, np.log(3.0)]]))
    assert p == pytest.approx(np.array([[0.25, 0.75]]))


def test_precision_on_the_labelled_rows_only():
    rows, cols = np.array([0, 1, 3]), np.array([0, 2, 1])
    n, prec = precision(rows, cols, np.arange(4), n_labelled=2)   # rows 0, 1 labelled: 0->0 right, 1->2 wrong
    assert n == 2 and prec == pytest.approx(0.5)
    n, prec = precision(np.array([3]), np.array([1]), np.arange(4), n_labelled=2)
    assert n == 0 and np.isnan(prec)


def test_pairs_tsv_drops_the_test_prefix_and_refuses_newlines():
    text = pairs_tsv(np.array([1, 0]), np.array([0, 1]), ["q zero", "q\tone"], ["11", "test:22"])
    assert text == "11\tq\tone\n22\tq zero\n"
    with pytest.raises(MolretError, match="one TSV line"):
        pairs_tsv(np.array([0]), np.array([0]), ["two\nlines"], ["1"])


def _train_argv(demo_dir, tiny_text_model, tmp_path, name, *extra):
    return ["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--epochs", "1", "--batch-size", "16",
            "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16", "--max-length", "64", "--text-pooling",
            "mean", "--freeze-text", "--runs-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
            "--no-write-submission", "--run-name", name, *extra]


def test_extra_pairs_join_training_and_reuse_val_test_features(demo_dir, tiny_text_model, tmp_path, monkeypatch,
                                                                one_thread_module):
    from molret.models import split_inputs as challenge_data
    from molret.training import trainer as train
    from molret.cli.common import config_from_args, training_parser
    from molret.data.challenge import read_pairs_tsv, read_queries
    val_cids, val_texts = read_pairs_tsv(demo_dir / "val.tsv")
    test_cids = (demo_dir / "test_cids.txt").read_text().split()
    test_texts = read_queries(demo_dir / "test_text.txt")
    # two pseudo-pairs from val and test queries, one pair with a text no split has
    extra = tmp_path / "extra.tsv"
    extra.write_text(f"{val_cids[0]}\t{val_texts[0]}\n{test_cids[1]}\t{test_texts[0]}\n{test_cids[2]}\tbrand new\n")
    encoded = []
    real = challenge_data.run_text_encoder
    monkeypatch.setattr(challenge_data, "run_text_encoder", lambda m, tokens, *a, **k: encoded.append(len(tokens)) or
                        real(m, tokens, *a, **k))
    cfg = config_from_args(training_parser("t", "t").parse_args(
        _train_argv(demo_dir, tiny_text_model, tmp_path, "x", "--extra-pairs", str(extra))))
    (tmp_path / "x").mkdir()
    trainer = train.Trainer(cfg, tmp_path / "x", progress=False)
    n_train = len(read_pairs_tsv(demo_dir / "train.tsv")[0])
    assert len(trainer.train_set) == n_train + 3 and trainer.data.train.n_extra == 3
    assert trainer.data.train.cids[-3:] == [val_cids[0], test_cids[1], test_cids[2]]
    # val, test and train are encoded once each; of the extra pairs, only the text that val/test did not encode
    assert encoded == [len(val_texts), len(test_texts), n_train, 1]
    # a second run finds train.tsv's features in their usual cache: only the new extra text is encoded
    encoded.clear()
    (tmp_path / "x2").mkdir()
    train.Trainer(cfg, tmp_path / "x2", progress=False)
    assert encoded == [1]
    features = trainer.data.train.text_data.features
    assert np.array_equal(features[n_train], trainer.data.val.text_data.features[0])
    assert np.array_equal(features[n_train + 1], trainer.data.test_queries.text_data.features[0])
    # the reused features are what encoding those texts gives
    alone = challenge_data.run_text_encoder(trainer.model, trainer.data.train.tokens.take([n_train, n_train + 2]),
                                   trainer.device, 8, progress=False)
    np.testing.assert_allclose(alone, features[[n_train, n_train + 2]], rtol=1e-5, atol=1e-6)
    trainer.fit()


def test_extra_pairs_with_an_unknown_molecule_is_one_error_line(demo_dir, tiny_text_model, tmp_path, capsys):
    import main as main_script
    extra = tmp_path / "extra.tsv"
    extra.write_text("999999999\tno such molecule\n")
    with pytest.raises(SystemExit) as e:
        main_script.main(_train_argv(demo_dir, tiny_text_model, tmp_path, "y", "--extra-pairs", str(extra),
                                     "--no-progress"))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "999999999" in err[0]


def test_ensemble_writes_pseudo_labels_with_their_val_precision(demo_dir, tiny_text_model, tmp_path,
                                                                one_thread_module):
    import ensemble_method
    import main as main_script
    from molret.data.challenge import read_pairs_tsv
    main_script.main(_train_argv(demo_dir, tiny_text_model, tmp_path, "m", "--save-embeddings", "--no-progress"))
    out = tmp_path / "pseudo.tsv"
    res = ensemble_method.main(["--members", str(tmp_path / "m" / "embeddings"), "--rerank", "sinkhorn",
                                "--data-dir", str(demo_dir), "--pseudo-labels", str(out), "--pseudo-margin", "0"])
    stats = res["pool"]["pseudo_labels"]
    cids, texts = read_pairs_tsv(out)
    assert stats["pairs"] == len(cids) == stats["val_pairs"] + stats["test_pairs"] > 0
    val = dict(zip(*read_pairs_tsv(demo_dir / "val.tsv")))
    val_by_text = {t: c for c, t in val.items()}
    # the val rows' precision is the share of written val queries paired with their own molecule
    val_rows = [(c, t) for c, t in zip(cids, texts) if t in val_by_text]
    assert len(val_rows) == stats["val_pairs"]
    if val_rows:
        assert stats["val_precision"] == pytest.approx(np.mean([val_by_text[t] == c for c, t in val_rows]), abs=1e-4)
    # --unlabelled-by: the val queries the pairs leave out, scored alone (here: the plain member's own rows)
    from molret.ranking.ensemble import member_from_path
    from molret.evaluation.pool import pool_metrics_of
    again = ensemble_method.main(["--members", str(tmp_path / "m" / "embeddings"), "--rerank", "sinkhorn",
                                  "--data-dir", str(demo_dir), "--unlabelled-by", str(out)])
    unlabelled = again["pool"]["unlabelled"]
    val_texts = list(val.values())
    rows = [i for i, t in enumerate(val_texts) if t not in set(texts)]
    assert unlabelled["queries"] == len(rows) == len(val_texts) - stats["val_pairs"] > 0
    member = member_from_path(tmp_path / "m" / "embeddings")
    expected = pool_metrics_of(member.splits["pool"][0], member.n_val, np.array(rows))
    assert unlabelled["ensemble"]["pool_lrap"] == pytest.approx(expected["pool_lrap"])
    assert unlabelled["members"][str(tmp_path / "m" / "embeddings")] == expected
    with pytest.raises(SystemExit):
        ensemble_method.main(["--members", str(tmp_path / "m" / "embeddings"), "--data-dir", str(demo_dir),
                              "--pseudo-labels", str(out)])          # needs --rerank
