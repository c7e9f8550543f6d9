"""Re-ranking a query x molecule similarity matrix with the one-to-one
structure of the challenge: each query has exactly one molecule and each
molecule is the answer of exactly one query, so a molecule that is a much
better match for another query should lose some of its score here.

* ``sinkhorn``: Sinkhorn-Knopp normalisation of ``exp(sim / T)`` (rows sum to
  1, columns to ``n_rows / n_cols``), an entropic relaxation of the optimal
  assignment.
* ``dual-softmax``: ``softmax over rows * softmax over columns`` of
  ``sim / T`` (one Sinkhorn half-step each way, in parallel).
* ``none``: the matrix as it is.

The result is returned in the **log domain** (log of the normalised matrix):
the ranking of each row is the same as that of the probabilities, but far
candidates never underflow to exact ties with the true molecule, and every
value stays finite. ``np.exp(rerank(...))`` gives the normalised matrix.
"""
from __future__ import annotations

import numpy as np

from molret.utils.errors import MolretError

METHODS = ("none", "sinkhorn", "dual-softmax")
SINKHORN_ITERS = 100   # one bound for every caller (it stops earlier once converged)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def rerank(similarity: np.ndarray, method: str = "sinkhorn", temperature: float = 0.05, n_iter: int = SINKHORN_ITERS,
           tol: float = 1e-6) -> np.ndarray:
    """Re-ranked scores (log domain, float64) of ``similarity`` [queries, molecules].

    ``temperature`` scales the similarities (``sim / T``): the smaller, the
    closer to a hard assignment. ``n_iter`` bounds the Sinkhorn iterations
    (it stops earlier once the column sums are within ``tol`` of their target).
    """
    if method not in METHODS:
        raise MolretError(f"unknown re-ranking method {method!r} (one of {', '.join(METHODS)})")
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or min(s.shape) == 0:
        raise MolretError(f"re-ranking needs a non-empty matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise MolretError("re-ranking: the similarity matrix has non-finite values")
    if method == "none":
        return s.copy()
    if not temperature > 0:
        raise MolretError(f"--rerank-temperature must be > 0, got {temperature}")
    logits = s / temperature
    if method == "dual-softmax":
        return (logits - _logsumexp(logits, axis=1)) + (logits - _logsumexp(logits, axis=0))
    if n_iter < 1:
        raise MolretError(f"Sinkhorn needs at least one iteration, got n_iter={n_iter}")
    n_rows, n_cols = s.shape
    log_col_target = np.log(n_rows / n_cols)
    log_p = logits - _logsumexp(logits, axis=1)
    kernel = np.exp(log_p)
    if kernel.min() > 1e-250:  # no underflow: scaling vectors, two matrix-vector products per iteration
        return _sinkhorn_scaling(log_p, kernel, log_col_target, n_iter, tol)
    for _ in range(n_iter):
        log_p = log_p - _logsumexp(log_p, axis=0) + log_col_target
        log_p = log_p - _logsumexp(log_p, axis=1)            # rows sum to 1 exactly after this
        col_err = np.abs(np.exp(_logsumexp(log_p, axis=0) - log_col_target) - 1.0).max()
        if col_err < tol:
            break
    return log_p


def _sinkhorn_scaling(log_kernel: np.ndarray, kernel: np.ndarray, log_col_target: float, n_iter: int,
                      tol: float) -> np.ndarray:
    """The same iteration as the log-domain loop of ``rerank`` (columns to
    their target, then rows to 1, until the column sums are within ``tol``),
    as ``diag(u) K diag(v)``: far faster, for kernels that do not underflow."""
    col_target = np.exp(log_col_target)
    u = np.ones(kernel.shape[0])
    v = np.ones(kernel.shape[1])
    for _ in range(n_iter):
        v = col_target / (kernel.T @ u)
        u = 1.0 / (kernel @ v)                                  # rows sum to 1 exactly after this
        col_err = np.abs(v * (kernel.T @ u) / col_target - 1.0).max()
        if col_err < tol:
            break
    return log_kernel + np.log(u)[:, None] + np.log(v)[None, :]
