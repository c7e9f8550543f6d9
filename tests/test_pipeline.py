"""End-to-end: main(...) on the DEMO data and on a slice of the shared
challenge data, and predictions.py from the checkpoint."""
import json

import numpy as np
import pandas as pd
import pytest

import main as main_script
import predictions as predictions_script


def run_main(args):
    return main_script.main(args + ["--no-progress"])


@pytest.fixture(scope="module")
def demo_run(demo_dir, tiny_text_model, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = run_main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--epochs", "2",
                       "--batch-size", "16", "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16",
                       "--proj-hidden", "0", "--max-length", "64", "--text-pooling", "mean", "--text-lr", "1e-3",
                       "--runs-dir", str(runs), "--run-name", "smoke",
                       "--cache-dir", str(runs / "cache"), "--seed", "3"])
    return runs / "smoke", result


def test_run_folder_contents(demo_run):
    run_dir, result = demo_run
    for name in ["config.json", "train.log", "metrics.csv", "metrics.json", "curves.png", "best.pt", "last.pt",
                 "submission.csv", "result.json"]:
        assert (run_dir / name).exists(), name
    history = json.loads((run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"val_lrap", "val_mrr", "val_hits@1", "val_hits@10", "train_loss"} <= set(history[0])
    # better than chance (LRAP of a random ranking of the 85 demo val pairs: H(85)/85 = 0.059)
    assert result["val"]["lrap"] > 0.08, result["val"]
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob(".*.tmp*"))  # no temp files left behind


def test_submission_format(demo_run, demo_dir):
    run_dir, _ = demo_run
    n_test = len((demo_dir / "test_cids.txt").read_text().split())
    df = pd.read_csv(run_dir / "submission.csv")
    assert list(df.columns) == ["ID"] + [str(i) for i in range(n_test)]
    assert df["ID"].tolist() == list(range(n_test))
    assert np.isfinite(df.iloc[:, 1:].to_numpy()).all()


def test_predictions_reproduce_submission(demo_run, tmp_path):
    run_dir, _ = demo_run
    out = tmp_path / "pred.csv"
    predictions_script.main(["--model", str(run_dir / "best.pt"), "--out", str(out),
                             "--save-embeddings", str(tmp_path / "emb")])
    assert out.read_bytes() == (run_dir / "submission.csv").read_bytes()
    text_emb = np.load(tmp_path / "emb" / "test_text_emb.npy")
    assert np.allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    assert len((tmp_path / "emb" / "test_graph_ids.txt").read_text().split()) == text_emb.shape[0]


def test_seed_makes_cpu_run_repeatable(demo_run, demo_dir, tiny_text_model, tmp_path):
    run_dir, first = demo_run
    cfg = json.loads((run_dir / "config.json").read_text())
    again = run_main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--epochs", "2",
                      "--batch-size", "16", "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16",
                      "--proj-hidden", "0", "--max-length", "64", "--text-pooling", "mean", "--text-lr", "1e-3",
                      "--runs-dir", str(tmp_path), "--run-name", "again",
                      "--cache-dir", str(run_dir.parent / "cache"), "--seed", "3", "--no-write-submission"])
    assert cfg["train"]["seed"] == 3
    assert again["val"] == first["val"]


def test_frozen_text_path_caches_features(demo_dir, tiny_text_model, tmp_path):
    result = run_main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--freeze-text",
                       "--epochs", "2", "--hidden-dim", "32", "--heads", "2", "--max-length", "64",
                       "--runs-dir", str(tmp_path), "--run-name", "frozen", "--cache-dir", str(tmp_path / "cache"),
                       "--no-write-submission"])
    assert result["val"]["lrap"] > 0
    assert len(list((tmp_path / "cache").glob("textfeat-train-*.npz"))) == 1
    # a final fit (train + val) keeps its own cache files: the train-only ones are not rebuilt after it
    before = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("textfeat-train-*.npz")}
    run_main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--freeze-text", "--train-on-val",
              "--epochs", "1", "--hidden-dim", "32", "--heads", "2", "--max-length", "64", "--runs-dir",
              str(tmp_path), "--run-name", "final", "--cache-dir", str(tmp_path / "cache"), "--no-write-submission"])
    assert len(list((tmp_path / "cache").glob("textfeat-train+val-*.npz"))) == 1
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("textfeat-train-*.npz")} == before


def test_integration_on_shared_data(altegrad, tiny_text_model, tmp_path):
    """A few hundred molecules of the real challenge data, with the full test submission."""
    result = run_main(["--data-dir", str(altegrad), "--text-model", tiny_text_model, "--conv", "gat",
                       "--epochs", "1", "--max-train", "300", "--max-val", "100", "--hidden-dim", "32",
                       "--heads", "2", "--max-length", "48", "--batch-size", "32", "--runs-dir", str(tmp_path),
                       "--run-name", "real", "--cache-dir", str(tmp_path / "cache")])
    assert 0 < result["val"]["lrap"] <= 1
    df = pd.read_csv(tmp_path / "real" / "submission.csv", usecols=[0, 1, 3300, 3301])
    assert len(df) == 3301 and list(df.columns)[-1] == "3300"


def test_offline_hub_model_is_one_clear_line(demo_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as e:
        run_main(["--data-dir", str(demo_dir), "--text-model", "allenai/scibert_scivocab_uncased",
                  "--runs-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--text-model minilm" in err[-1] and "scibert" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_rerank_in_training_reports_both_and_predictions_reproduce(demo_dir, tiny_text_model, tmp_path):
    """--rerank sinkhorn: the plain and the re-ranked val metrics are both
    reported (the re-ranked ones computed from the same embeddings), the
    submission is re-ranked, and predictions.py reproduces it from the
    checkpoint alone; --rerank none there gives the plain cosine matrix."""
    from molret.evaluation.metrics import retrieval_metrics
    from molret.ranking.rerank import rerank
    result = run_main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--epochs", "1",
                       "--batch-size", "16", "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16",
                       "--max-length", "64", "--text-pooling", "mean", "--rerank", "sinkhorn",
                       "--rerank-temperature", "0.1", "--save-embeddings", "--runs-dir", str(tmp_path),
                       "--run-name", "rr", "--cache-dir", str(tmp_path / "cache")])
    run_dir = tmp_path / "rr"
    assert result["rerank"] == {"method": "sinkhorn", "temperature": 0.1}
    emb = run_dir / "embeddings"
    sim = np.load(emb / "val_text_emb.npy") @ np.load(emb / "val_graph_emb.npy").T
    assert result["val"] == pytest.approx(retrieval_metrics(sim))
    assert result["val_reranked"] == pytest.approx(retrieval_metrics(rerank(sim, "sinkhorn", 0.1)))
    assert "with --rerank sinkhorn (T=0.1): val LRAP" in (run_dir / "train.log").read_text()
    sub = pd.read_csv(run_dir / "submission.csv").iloc[:, 1:].to_numpy()
    test_sim = np.load(emb / "test_text_emb.npy") @ np.load(emb / "test_graph_emb.npy").T
    assert np.allclose(sub, rerank(test_sim, "sinkhorn", 0.1), atol=1e-4)
    out = tmp_path / "pred.csv"
    predictions_script.main(["--model", str(run_dir / "best.pt"), "--out", str(out)])
    assert out.read_bytes() == (run_dir / "submission.csv").read_bytes()
    plain = tmp_path / "plain.csv"
    predictions_script.main(["--model", str(run_dir / "best.pt"), "--out", str(plain), "--rerank", "none"])
    assert np.allclose(pd.read_csv(plain).iloc[:, 1:].to_numpy(), test_sim, atol=1e-4)


def test_time_budget_replans_and_stops(demo_dir, tiny_text_model, tmp_path):
    """--time-budget: the epoch count is re-fitted after every epoch from their
    cost, and training stops within the budget (plus at most one epoch)."""
    import json
    result = run_main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--epochs", "500",
                       "--batch-size", "16", "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16",
                       "--max-length", "64", "--text-pooling", "mean", "--freeze-text", "--time-budget", "0.15",
                       "--runs-dir", str(tmp_path), "--run-name", "tb", "--cache-dir", str(tmp_path / "cache"),
                       "--no-write-submission"])
    history = json.loads((tmp_path / "tb" / "metrics.json").read_text())
    assert 1 <= result["epochs"] == len(history) < 500
    per_epoch = max(h["epoch_seconds"] + h["eval_seconds"] for h in history)
    spent = sum(h["epoch_seconds"] + h["eval_seconds"] for h in history)
    assert spent <= 0.15 * 60 + per_epoch + 1.0
    log = (tmp_path / "tb" / "train.log").read_text()
    assert "planning" in log


def test_train_on_val_trains_on_both_and_keeps_the_last_epoch(demo_dir, tiny_text_model, tmp_path):
    from molret.cli.common import config_from_args, training_parser
    from molret.data.challenge import read_pairs_tsv
    from molret.training.trainer import Trainer, setup_logging
    argv = ["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--epochs", "2", "--batch-size", "16",
            "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16", "--max-length", "64", "--text-pooling",
            "mean", "--freeze-text", "--runs-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
            "--no-write-submission", "--train-on-val"]
    cfg = config_from_args(training_parser("t", "t").parse_args(argv + ["--run-name", "tv"]))
    (tmp_path / "tv").mkdir()
    setup_logging(tmp_path / "tv")
    trainer = Trainer(cfg, tmp_path / "tv", progress=False)
    n_train, n_val = (len(read_pairs_tsv(demo_dir / f)[0]) for f in ("train.tsv", "val.tsv"))
    assert len(trainer.train_set) == n_train + n_val
    result = trainer.fit()
    assert result["best_epoch"] == 2
