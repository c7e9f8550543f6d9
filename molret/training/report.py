"""What a training run measures and writes: per-epoch metrics, the history files and curves, the final result.

Free functions of a ``molret.training.trainer.Trainer`` (its model, data and run
folder); the final result is what predictions.py reproduces from best.pt.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from molret.evaluation.pool import format_pool
from molret.models.encoding import embed_graphs, embed_test, embed_texts, save_embeddings, similarity_matrix
from molret.utils.files import atomic_path, atomic_write_text
from molret.evaluation.metrics import retrieval_metrics

log = logging.getLogger("molret")


# ------------------------------------------------------------------ epochs

def evaluate_split(trainer, split) -> tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, text_emb, graph_emb) of a val split: the split's own
    metrics (lrap, mrr, hits@1, hits@10, mean_rank: the val-sized pool) and,
    when test molecules are present, the pool metrics (molret.evaluation.pool);
    the re-ranked pool metric (a Sinkhorn over val + test) only when it
    selects the best epoch (the final report has it anyway)."""
    t, model, device, data = trainer.cfg.train, trainer.model, trainer.device, trainer.data
    rerank = t.rerank if t.select_metric == "pool_lrap_reranked" else "none"
    text_emb = embed_texts(model, split.text_data, device, t.eval_batch_size, t.amp)
    graph_emb = embed_graphs(model, split.graphs, device, t.eval_batch_size, t.amp)
    metrics = retrieval_metrics(similarity_matrix(text_emb, graph_emb))
    if data.test_graphs is not None:
        from molret.evaluation.pool import pool_metrics
        test_graph = embed_graphs(model, data.test_graphs.graphs, device, t.eval_batch_size, t.amp)
        test_text = None
        if rerank != "none":
            test_text = embed_texts(model, data.test_queries.text_data, device, t.eval_batch_size, t.amp)
        metrics.update(pool_metrics(text_emb, graph_emb, test_graph, test_text, rerank, t.rerank_temperature))
    return metrics, text_emb, graph_emb


def selection_score(t, metrics: dict, epoch: int) -> float:
    """The score that picks the best epoch (--select-metric; the val-sized
    LRAP when there are no test molecules for the pool; with --train-on-val
    the epoch number: the last epoch is kept)."""
    if t.train_on_val:
        return float(epoch + 1)
    return metrics.get(t.select_metric, metrics["lrap"])


def epoch_row(epoch: int, train_loss: float, epoch_seconds: float, pairs: int, eval_seconds: float,
              temperature: float, metrics: dict, n_val: int) -> dict:
    """The metrics.json row of an epoch, logged in one line."""
    row = {"epoch": epoch, "train_loss": float(train_loss), "epoch_seconds": round(epoch_seconds, 3),
           "pairs_per_s": round(pairs / max(epoch_seconds, 1e-9), 2), "eval_seconds": round(eval_seconds, 3),
           "temperature": temperature,
           **{f"val_{k}": v for k, v in metrics.items() if not k.startswith("pool_")},
           **{k: v for k, v in metrics.items() if k.startswith("pool_")}}
    pool = f"  |  {format_pool(metrics)}" if "pool_lrap" in metrics else ""
    log.info(f"epoch {row['epoch']}: loss {train_loss:.4f}  val({n_val}) LRAP {metrics['lrap']:.4f}  "
             f"MRR {metrics['mrr']:.4f}  H@1 {metrics['hits@1']:.3f}  H@10 {metrics['hits@10']:.3f}{pool}  "
             f"({epoch_seconds:.1f}s, {row['pairs_per_s']:.0f} pairs/s)")
    return row


def epochs_within_budget(history: list[dict], epochs_done: int, max_epochs: int, train_seconds: float,
                         budget_minutes: float) -> int:
    """Epochs that fit --time-budget, from the cost of the epochs so far (the
    first one, slower with its warm-up, only until there are others)."""
    costs = [h["epoch_seconds"] + h["eval_seconds"] for h in history]
    per_epoch = float(np.mean(costs[1:] if len(costs) > 1 else costs))
    left = budget_minutes * 60 - train_seconds - sum(h["eval_seconds"] for h in history)
    return min(max_epochs, epochs_done + max(0, int(left // max(per_epoch, 1e-6))))


def write_history(history: list[dict], run_dir: Path) -> None:
    atomic_write_text(run_dir / "metrics.json", json.dumps(history, indent=2) + "\n")
    if history:
        from io import StringIO
        buf = StringIO()
        fields = list(dict.fromkeys(k for row in history for k in row))  # rows of older runs lack some
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(history)
        atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
        plot_curves(history, run_dir / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_lrap"] for h in history], "s-", color="tab:red", label="val LRAP")
    ax2.set_ylabel("val LRAP", color="tab:red")
    ax2.set_ylim(0, 1)
    fig.suptitle("training curves")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# ------------------------------------------------------------ final result

def final_result(trainer) -> dict:
    """The val metrics of the loaded (best) model, the pool report and the
    submission; writes result.json and logs the summary."""
    t, data = trainer.cfg.train, trainer.data
    metrics, val_text, val_graph = evaluate_split(trainer, data.val)
    metrics = {k: v for k, v in metrics.items() if not k.startswith("pool_")}  # the final report has them
    result = {"best_epoch": trainer.best_epoch, "select_metric": t.select_metric, "val": metrics,
              "train_seconds": round(trainer.train_seconds, 2), "epochs": trainer.epoch}
    from molret.ranking.rerank import rerank
    if t.rerank != "none":
        result["val_reranked"] = retrieval_metrics(
            rerank(similarity_matrix(val_text, val_graph), t.rerank, t.rerank_temperature))
        result["rerank"] = {"method": t.rerank, "temperature": t.rerank_temperature}
    if t.save_embeddings:
        save_embeddings(trainer.run_dir / "embeddings", "val", val_text, data.val.cids, val_graph, data.val.cids)
    report_lines = []
    if data.test_graphs is not None:
        report_lines = pool_report_and_submission(trainer, val_text, val_graph, result)
    atomic_write_text(trainer.run_dir / "result.json", json.dumps(result, indent=2) + "\n")
    n_test = len(data.test_graphs.cids) if report_lines else 0
    log_result(result, report_lines, t, trainer.train_seconds, len(data.val.cids), n_test)
    return result


def pool_report_and_submission(trainer, val_text, val_graph, result: dict) -> list[str]:
    """The pool report and the submission (result updated); returns the report's lines."""
    # The same computation as predictions.py (from tokens, not cached
    # features), so that a checkpoint reproduces the submission exactly.
    t, data, run_dir = trainer.cfg.train, trainer.data, trainer.run_dir
    queries = data.test_queries
    text_emb, graph_emb = embed_test(trainer.model, queries.text_data if t.freeze_text else queries.tokens,
                                     data.test_graphs.graphs, trainer.device, t.eval_batch_size, t.amp)
    if t.save_embeddings:
        save_embeddings(run_dir / "embeddings", "test", text_emb, queries.cids, graph_emb, data.test_graphs.cids)
    from molret.evaluation.pool import final_report, format_report, pool_name_features, pool_similarity, test_matrix
    names = None
    if t.names == "opsin":
        # the pairs dictionary of the whole train.tsv (not --max-train's subset), as predictions.py uses
        names, result["names_stats"] = pool_name_features(data.val.texts, queries.texts, data.val.graphs,
                                                          data.test_graphs.graphs, data_dir=t.data_dir,
                                                          cache_dir=data.cache_dir)
    report, weights = final_report(pool_similarity(val_text, val_graph, text_emb, graph_emb),
                                   len(val_text), t.rerank, t.rerank_temperature, names)
    result.update(report)
    if t.write_submission:
        from molret.evaluation.submission import write_submission
        similarity = similarity_matrix(text_emb, graph_emb)
        if t.rerank != "none" or weights:  # else the float32 matrix as it is
            similarity = test_matrix(similarity, t.rerank, t.rerank_temperature, names, weights, len(val_text))
        write_submission(similarity, run_dir / "submission.csv")
        result["submission"] = str(run_dir / "submission.csv")
    return format_report(report)


def log_result(result: dict, report_lines: list[str], t, train_seconds: float, n_val: int, n_test: int) -> None:
    """The end-of-run summary lines of train.log."""
    metrics = result["val"]
    log.info(f"best epoch {result['best_epoch']} (by {t.select_metric if report_lines else 'lrap'}): "
             f"val({n_val}) LRAP {metrics['lrap']:.4f}  MRR {metrics['mrr']:.4f}  "
             f"Hits@1 {metrics['hits@1']:.3f}  Hits@10 {metrics['hits@10']:.3f}  (training {train_seconds:.0f}s)")
    if report_lines:
        log.info(f"pool: val queries among {n_val + n_test} val + test molecules")
        for line in report_lines:
            log.info("  " + line)
    if "val_reranked" in result:
        r = result["val_reranked"]
        log.info(f"with --rerank {t.rerank} (T={t.rerank_temperature:g}): val LRAP {r['lrap']:.4f}  "
                 f"MRR {r['mrr']:.4f}  Hits@1 {r['hits@1']:.3f}  Hits@10 {r['hits@10']:.3f}")
    if "submission" in result:
        log.info(f"submission written to {result['submission']}")
