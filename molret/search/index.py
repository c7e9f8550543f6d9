"""Nearest-neighbour search over L2-normalised embeddings: ``SearchIndex``
with its candidate backends chosen by name, and the exact top-k and rank
helpers that order results the same way everywhere.

A backend only proposes candidates (``candidates(queries, m)``); the index
rescores them exactly (float64) and sorts them by (-score, library index),
so every exact backend returns the same top-k and an approximate one (to
come: FAISS IVF/HNSW) differs only by the molecules it misses.  A new
backend is one class in ``BACKEND_TYPES``.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from molret.utils.errors import MolretError

log = logging.getLogger(__name__)

FAISS_AUTO_THRESHOLD = 20_000      # backend "auto": FAISS above this many molecules
RESCORE_MARGIN = 32                # extra candidates rescored exactly by every backend


def normalise(x: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class NumpyBackend:
    """Exact: the k best of the full matrix product."""

    def __init__(self, embeddings: np.ndarray):
        self.embeddings = embeddings

    def candidates(self, q: np.ndarray, m: int) -> np.ndarray:
        n = len(self.embeddings)
        if m < n:
            return np.argpartition(-(q @ self.embeddings.T), m - 1, axis=1)[:, :m]
        return np.broadcast_to(np.arange(n, dtype=np.int64), (len(q), n))


class FaissFlatBackend:
    """Exact: FAISS ``IndexFlatIP``."""

    def __init__(self, embeddings: np.ndarray):
        try:
            import faiss
        except ImportError:
            raise MolretError("--backend faiss needs the faiss package (pip install faiss-cpu)") from None
        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        self.index.add(embeddings)

    def candidates(self, q: np.ndarray, m: int) -> np.ndarray:
        _, cand = self.index.search(q, m)
        return cand.astype(np.int64)  # -1 where FAISS has fewer results


# --backend name -> candidate source built from the normalised [N, D] embeddings
BACKEND_TYPES = {"numpy": NumpyBackend, "faiss": FaissFlatBackend}
BACKENDS = ("auto",) + tuple(BACKEND_TYPES)


def choose_backend(n: int, backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise MolretError(f"unknown search backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto":
        if n <= FAISS_AUTO_THRESHOLD:
            return "numpy"
        try:
            import faiss  # noqa: F401
        except ImportError:
            log.warning("faiss is not installed (pip install faiss-cpu): exact numpy search instead")
            return "numpy"
        return "faiss"
    return backend


class SearchIndex:
    """Maximum-inner-product (cosine) search over L2-normalised rows."""

    def __init__(self, embeddings: np.ndarray, backend: str = "auto"):
        t0 = time.perf_counter()
        self.embeddings = normalise(embeddings)
        self.n, self.dim = self.embeddings.shape
        self.backend = choose_backend(self.n, backend)
        self.source = BACKEND_TYPES[self.backend](self.embeddings)
        self.build_seconds = time.perf_counter() - t0

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Full cosine matrix [Q, N] (float32 matrix product)."""
        return normalise(np.atleast_2d(queries)) @ self.embeddings.T

    def exact_scores(self, query: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Cosine of one query with every molecule, computed as ``search``
        rescores its candidates (float64), so ranks agree with it exactly."""
        q64 = normalise(np.atleast_2d(query))[0].astype(np.float64)
        return np.concatenate([(self.embeddings[i:i + chunk].astype(np.float64) * q64).sum(axis=1)
                               for i in range(0, self.n, chunk)])

    def rank(self, query: np.ndarray, index: int) -> tuple[int, float, int]:
        """(1-based rank of library row ``index`` for one query as ``search``
        orders it (exact ties: lower index first), its score, and how many
        other rows have exactly that score (e.g. stereoisomers sharing a graph))."""
        return rank_in(self.exact_scores(query), index)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices), each [Q, min(k, N)], best first.

        The backend proposes ``k + RESCORE_MARGIN`` candidates, which are
        rescored in float64 and sorted by (-score, library index): identical
        molecules (e.g. stereoisomers, which share a graph) tie exactly and
        come in library order, and the exact backends return the same top-k.
        """
        q = normalise(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise MolretError(f"query embeddings have dimension {q.shape[1]}, the library {self.dim}")
        k = max(0, min(int(k), self.n))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        cand = self.source.candidates(q, min(self.n, k + RESCORE_MARGIN))
        out_idx = np.empty((len(q), k), np.int64)
        out_scores = np.empty((len(q), k), np.float64)
        q64 = q.astype(np.float64)
        for i in range(len(q)):
            c = cand[i][cand[i] >= 0]
            s = (self.embeddings[c].astype(np.float64) * q64[i]).sum(axis=1)  # same sum for equal rows
            order = np.lexsort((c, -s))[:k]
            out_idx[i], out_scores[i] = c[order], s[order]
        return out_scores.astype(np.float32), out_idx


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) [Q, k] of a full score matrix, best first, exact ties
    in library order (as SearchIndex.search)."""
    k = max(0, min(int(k), scores.shape[1]))
    out_s, out_i = np.empty((len(scores), k), np.float32), np.empty((len(scores), k), np.int64)
    for i, row in enumerate(scores):
        cand = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
        top = row[cand].min() if k else 0.0
        cand = np.flatnonzero(row >= top)  # every tie of the k-th score, so library order decides
        order = np.lexsort((cand, -row[cand]))[:k]
        out_i[i], out_s[i] = cand[order], row[cand[order]]
    return out_s, out_i


def rank_in(scores: np.ndarray, index: int) -> tuple[int, float, int]:
    """(1-based rank, score, exact ties) of row ``index`` in one query's full scores."""
    t = scores[index]
    return int((scores > t).sum() + (scores[:index] == t).sum()) + 1, float(t), int((scores == t).sum()) - 1
