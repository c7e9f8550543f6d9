"""Bag-of-words text view (--text-bow N): hashed word uni- and bigrams of a
query, TF-IDF weighted, embedded by a table learned from scratch and added to
the text projection's input layer.

Why: a frozen general-domain encoder averages a description into one vector
in which the chemical class words ("thiophenecarboxylic acid",
"N-sulfonylurea") are diluted; a table learned on the training descriptions
keeps them (docs/experiments.md "What moves the pool metric" has the measurements).

Terms are hashed (crc32, stable across runs and machines) into N buckets, so
no vocabulary has to be stored: the inverse document frequencies, fitted on
the training descriptions, are a buffer of the model (in every checkpoint),
and a bucket seen in fewer than ``MIN_DF`` of them has weight 0 (its row is
never trained, so it must not add noise at inference).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from molret.data.graph_store import concat_ranges

WORD = re.compile(r"[a-z0-9\-\(\)',\[\]]+")  # chemical names keep their locants, primes and brackets
MIN_DF = 2
SCALE = 10.0  # the TF-IDF rows are L2-normalised; this puts their sum on the scale of the encoder features


def terms(text: str, chars: int = 0) -> list[str]:
    """Lower-cased words and adjacent word pairs of ``text``; with ``chars`` >= 3 also the character
    3..``chars``-grams of each word of 4+ characters, inside boundary marks and tagged "#" so that they
    never collide with a word ("chloro" -> "#<ch", "#chl", ..., "#ro>"): the parts of chemical names,
    which the molecule features describe (docs/experiments.md "Chemistry features member")."""
    words = [w.rstrip(",") for w in WORD.findall(text.lower())]  # "acid," is "acid"
    words = [w for w in words if w]
    out = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    if chars >= 3:
        for word in (f"<{w}>" for w in words if len(w) >= 4):
            out += [f"#{word[i:i + n]}" for n in range(3, chars + 1) for i in range(len(word) - n + 1)]
    return out


def bucket(term: str, n_buckets: int) -> int:
    return zlib.crc32(term.encode("utf-8")) % n_buckets


def counts(text: str, n_buckets: int, chars: int = 0) -> dict[int, int]:
    """Bucket -> occurrences of its terms in ``text`` (``chars``: as ``terms``)."""
    out: dict[int, int] = {}
    for t in terms(text, chars):
        b = bucket(t, n_buckets)
        out[b] = out.get(b, 0) + 1
    return out


def fit_idf(texts: Sequence[str], n_buckets: int, min_df: int = MIN_DF, chars: int = 0) -> np.ndarray:
    """Smoothed inverse document frequency per bucket, ln((1 + n) / (1 + df)) + 1
    (scikit-learn's), and 0 where df < ``min_df``."""
    df = np.zeros(n_buckets, dtype=np.int64)
    for text in texts:
        for b in counts(text, n_buckets, chars):
            df[b] += 1
    idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
    idf[df < min_df] = 0.0
    return idf.astype(np.float32)


@dataclass
class BowRows:
    """The TF-IDF rows of a list of texts, CSR: row i is
    ``ids[ptr[i]:ptr[i+1]]`` with ``weights[ptr[i]:ptr[i+1]]``."""
    ids: np.ndarray      # int64 buckets
    weights: np.ndarray  # float32
    ptr: np.ndarray      # int64 [n + 1]

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, offsets, weights) of the rows at ``indices``: EmbeddingBag's inputs."""
        idx = np.asarray(indices, dtype=np.int64)
        lengths = np.diff(self.ptr)[idx]
        rows = concat_ranges(self.ptr[idx], lengths)  # vectorised: this runs for every training batch
        offsets = (np.cumsum(lengths) - lengths).astype(np.int64)
        return (torch.from_numpy(self.ids[rows].astype(np.int64)), torch.from_numpy(offsets),
                torch.from_numpy(self.weights[rows].astype(np.float32)))


def tfidf_rows(texts: Sequence[str], idf: np.ndarray, chars: int = 0) -> BowRows:
    """Sublinear TF (1 + ln count) x IDF, each row L2-normalised; buckets of
    IDF 0 dropped (a text of unknown words only is an empty row)."""
    n_buckets = len(idf)
    ids, weights, ptr = [], [], [0]
    for text in texts:
        c = counts(text, n_buckets, chars)
        b = np.fromiter(c.keys(), dtype=np.int64, count=len(c))
        w = (1.0 + np.log(np.fromiter(c.values(), dtype=np.float64, count=len(c)))) * idf[b]
        keep = w > 0
        b, w = b[keep], w[keep]
        norm = np.sqrt((w * w).sum())
        if norm > 0:
            w = w / norm
        order = np.argsort(b, kind="stable")
        ids.append(b[order])
        weights.append(w[order].astype(np.float32))
        ptr.append(ptr[-1] + len(b))
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return BowRows(cat(ids, np.int64), cat(weights, np.float32), np.asarray(ptr, dtype=np.int64))


class BowEncoder(nn.Module):
    """TF-IDF rows -> a vector of ``out_dim``: a learned table, one row per
    bucket, summed with the rows' weights (x SCALE); with ``rank`` > 0 the
    table is ``rank`` wide and a linear map widens it (fewer weights to
    update per step). ``idf`` is a buffer."""

    def __init__(self, n_buckets: int, out_dim: int, rank: int = 0, dropout: float = 0.0, chars: int = 0):
        super().__init__()
        self.chars = chars      # character n-grams of the words up to this length (0: words and pairs only)
        self.dropout = dropout  # training only: each term of a row is dropped with this probability
        self.table = nn.EmbeddingBag(n_buckets, rank or out_dim, mode="sum")
        bound = 1.0 / np.sqrt(n_buckets)  # as nn.Linear over n_buckets inputs would start
        nn.init.uniform_(self.table.weight, -bound, bound)
        self.widen = nn.Linear(rank, out_dim, bias=False) if rank else None
        self.register_buffer("idf", torch.zeros(n_buckets))

    @property
    def fitted(self) -> bool:
        return bool((self.idf > 0).any())

    def set_idf(self, idf: np.ndarray) -> None:
        with torch.no_grad():
            self.idf.copy_(torch.as_tensor(idf, dtype=torch.float32))

    def rows(self, texts: Sequence[str]) -> BowRows:
        return tfidf_rows(texts, self.idf.detach().cpu().numpy(), self.chars)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        weights = weights * SCALE
        if self.training and self.dropout > 0:
            # word dropout: a description seen with other words each epoch (its unique bigrams alone can
            # be memorised), rescaled so that the expected row is unchanged
            keep = torch.rand_like(weights) >= self.dropout
            weights = weights * keep / (1.0 - self.dropout)
        out = self.table(ids, offsets, per_sample_weights=weights)
        return out if self.widen is None else self.widen(out)


class WithBow:
    """A split's text data (tokens or frozen features) plus its TF-IDF rows:
    batches carry both."""

    def __init__(self, inner, bow: BowRows):
        if len(inner) != len(bow):
            raise ValueError(f"{len(inner)} texts but {len(bow)} bag-of-words rows")
        self.inner, self.bow = inner, bow

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def lengths(self) -> np.ndarray:
        return self.inner.lengths

    def collate(self, indices):
        batch = self.inner.collate(indices)
        batch.bow_ids, batch.bow_offsets, batch.bow_weights = self.bow.batch(indices)
        return batch


def attach(text_data, texts: Sequence[str], model):
    """``text_data`` with the TF-IDF rows of ``texts`` when the model has a
    bag-of-words view, else ``text_data`` itself."""
    encoder = getattr(getattr(model, "module", model), "text_bow", None)
    if encoder is None or text_data is None:
        return text_data
    return WithBow(text_data, encoder.rows(texts))
