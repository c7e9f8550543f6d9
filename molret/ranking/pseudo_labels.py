"""Transductive pseudo-labels: the confident one-to-one matches between
unlabelled queries and molecules, as extra training pairs for a second round.

The challenge's test set pairs every query with exactly one molecule, so after
re-ranking (Sinkhorn over the square val + test problem, names fused) a query
and a molecule that are each other's best match, with a clear margin over the
query's second best, are very likely a true pair. ``ensemble_method.py
--pseudo-labels FILE`` writes them as ``cid<TAB>text`` lines, and ``main.py
--extra-pairs FILE`` trains on them next to train.tsv (``recipe.py --rounds 2``
does both). Measured with the val queries treated as unlabelled: their
pseudo-labels' precision is reported, and the val pool metrics of the second
round say what the pairs bought.

Pure functions of a score matrix; no training code here.
"""
from __future__ import annotations

import numpy as np

from molret.utils.errors import MolretError

MARGIN_LIMITS = (0.0, 1.0, False)   # --pseudo-margin: a probability difference (low, high, low excluded)


def row_probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax of each row of ``scores`` (for the log-domain output of
    ``molret.ranking.rerank``, whose rows already sum to 1, these are its probabilities)."""
    s = np.asarray(scores, dtype=np.float64)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def mutual_matches(scores: np.ndarray, margin: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, confidence) of the confident one-to-one matches of a
    query x molecule score matrix: row i and column j are each other's best
    (argmax of the row, and of the column), and the row's probability of j
    exceeds that of its second-best column by at least ``margin`` (in [0, 1]).
    Ties on a row's best are not confident (margin 0)."""
    if not 0.0 <= margin <= 1.0:
        raise MolretError(f"pseudo-label margin must be in [0, 1], got {margin}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or min(s.shape) == 0:
        raise MolretError(f"pseudo-labels need a non-empty matrix, got shape {s.shape}")
    best_col = s.argmax(axis=1)
    best_row = s.argmax(axis=0)
    mutual = best_row[best_col] == np.arange(len(s))
    p = row_probabilities(s)
    if s.shape[1] > 1:
        top2 = np.partition(p, -2, axis=1)[:, -2:]
        gap = top2[:, 1] - top2[:, 0]
    else:
        gap = p[:, 0]
    keep = np.flatnonzero(mutual & (gap >= margin) & (gap > 0))
    return keep, best_col[keep], gap[keep]


def precision(rows: np.ndarray, cols: np.ndarray, true_cols: np.ndarray, n_labelled: int) -> tuple[int, float]:
    """(number of pseudo-labels on the first ``n_labelled`` rows, the share of
    them that match ``true_cols``): the precision measured on val queries
    treated as unlabelled (nan when none)."""
    labelled = rows < n_labelled
    n = int(labelled.sum())
    if n == 0:
        return 0, float("nan")
    return n, float(np.mean(cols[labelled] == np.asarray(true_cols)[rows[labelled]]))


def pairs_tsv(rows: np.ndarray, cols: np.ndarray, query_texts: list, molecule_ids: list) -> str:
    """The ``cid<TAB>text`` lines of the matches (molecule ids may carry the
    pool's ``test:`` prefix; it is dropped)."""
    lines = []
    for r, c in zip(rows.tolist(), cols.tolist()):
        cid = str(molecule_ids[c])
        cid = cid[len("test:"):] if cid.startswith("test:") else cid
        text = query_texts[r]
        if "\n" in text or "\r" in text:
            raise MolretError(f"query {r} cannot be written as one TSV line")
        lines.append(f"{cid}\t{text}\n")
    return "".join(lines)
