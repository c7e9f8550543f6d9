"""Retrieval metrics of a query x molecule similarity matrix where molecule i
is the answer of query i (or ``targets[i]``)."""
from __future__ import annotations

import numpy as np


def ranks_of_targets(similarity: np.ndarray, targets: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each query's true molecule. Ties count against the
    target (as scikit-learn's LRAP does): rank = #scores >= the target's."""
    similarity = np.asarray(similarity, dtype=np.float64)
    n = similarity.shape[0]
    targets = np.arange(n) if targets is None else np.asarray(targets)
    true_scores = similarity[np.arange(n), targets]
    return (similarity >= true_scores[:, None]).sum(axis=1)


def lrap(similarity: np.ndarray, targets: np.ndarray | None = None) -> float:
    """Label ranking average precision (scikit-learn), the challenge metric."""
    from sklearn.metrics import label_ranking_average_precision_score
    similarity = np.asarray(similarity)
    n = similarity.shape[0]
    targets = np.arange(n) if targets is None else np.asarray(targets)
    labels = np.zeros(similarity.shape, dtype=np.int8)
    labels[np.arange(n), targets] = 1
    return float(label_ranking_average_precision_score(labels, similarity))


def retrieval_metrics(similarity: np.ndarray, targets: np.ndarray | None = None) -> dict:
    ranks = ranks_of_targets(similarity, targets)
    return {
        "lrap": lrap(similarity, targets),
        "mrr": float(np.mean(1.0 / ranks)),
        "hits@1": float(np.mean(ranks <= 1)),
        "hits@10": float(np.mean(ranks <= 10)),
        "mean_rank": float(np.mean(ranks)),
    }
