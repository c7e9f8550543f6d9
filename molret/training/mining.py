"""Hard negatives for the contrastive loss: samplers that put similar pairs
in the same batch, and a loss with extra negatives from a memory bank.

Everything here is a pure function (or a small class) of arrays and a numpy
Generator, so a training run can rebuild an epoch's batches exactly on
resume. molret.training.hard_negatives wires them into molret.training.trainer.Trainer.

Three sources:

* ``cluster``: K-means labels of the train text embeddings (labels.py); each
  batch is drawn from at most ``groups_per_batch`` label groups
  (:func:`group_batches`), so its in-batch negatives are texts/molecules of
  the same topic.
* ``knn``: each text's mined nearest neighbours (the train molecules the
  current model scores highest for it, :func:`mine_neighbours`); batches are
  grown from random seeds plus their unassigned neighbours
  (:func:`knn_batches`).
* ``queue``: a FIFO memory bank of recent graph embeddings
  (:class:`GraphQueue`) appended as extra negatives of the text->graph
  cross-entropy (:func:`clip_loss_with_negatives`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from molret.utils.errors import MolretError


# ------------------------------------------------------------- clustering

def cluster_labels(text_emb: np.ndarray, n_clusters: int, seed: int = 0, n_init: int = 3) -> np.ndarray:
    """K-means (scikit-learn, ``n_init`` fixed, ``random_state=seed``) labels
    of the rows of ``text_emb``; deterministic for a seed. Rows are
    L2-normalised first (cosine geometry, as in retrieval)."""
    from sklearn.cluster import KMeans
    x = np.asarray(text_emb, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise MolretError(f"clustering needs a non-empty [N, D] matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise MolretError("clustering: the embeddings have non-finite values")
    if not 1 <= n_clusters <= len(x):
        raise MolretError(f"--n-clusters must be between 1 and the number of texts ({len(x)}), got {n_clusters}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=int(seed))
    return km.fit_predict(x).astype(np.int64)


# ---------------------------------------------------------------- samplers

def _merge_singletons(batches: list[list[int]], claims: list[list[int]] | None):
    """Batches of one example have no negative: fold each into the previous
    (or next) batch, adding its claimed groups. Keeps every example once."""
    i = 0
    while i < len(batches) and len(batches) > 1:
        if len(batches[i]) < 2:
            j = i - 1 if i > 0 else 1
            batches[j] = batches[j] + batches[i] if j < i else batches[i] + batches[j]
            if claims is not None:
                claims[j] = sorted(set(claims[j]) | set(claims[i]))
                del claims[i]
            del batches[i]
            continue
        i += 1
    return batches, claims


def group_batches(labels: np.ndarray, batch_size: int, groups_per_batch: int, rng: np.random.Generator,
                  return_groups: bool = False):
    """Batches whose examples come from at most ``groups_per_batch`` label groups.

    Each group's members are shuffled and cut into near-equal *units* of at
    most ``ceil(batch_size / groups_per_batch)`` examples; the units are
    shuffled and packed ``groups_per_batch`` at a time into batches, so every
    example appears exactly once per epoch. The only exception to the group
    limit: a batch that would hold a single example (no negative) is merged
    into its neighbour, which then claims one group more.

    With ``return_groups`` also returns, for each batch, the sorted labels it
    was drawn from.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise MolretError(f"labels must be a vector, got shape {labels.shape}")
    if batch_size < 2 or groups_per_batch < 1:
        raise MolretError(f"need batch_size >= 2 and groups_per_batch >= 1 (got {batch_size}, {groups_per_batch})")
    unit = -(-batch_size // groups_per_batch)
    units, unit_groups = [], []
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        members = members[rng.permutation(len(members))]
        n_units = -(-len(members) // unit)
        for part in np.array_split(members, n_units):
            units.append(part.tolist())
            unit_groups.append(g.item())
    order = rng.permutation(len(units))
    batches, claims = [], []
    for k in range(0, len(order), groups_per_batch):
        chosen = order[k:k + groups_per_batch]
        batches.append([i for u in chosen for i in units[u]])
        claims.append(sorted({unit_groups[u] for u in chosen}))
    batches, claims = _merge_singletons(batches, claims)
    return (batches, claims) if return_groups else batches


def mine_neighbours(text_emb: np.ndarray, graph_emb: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """[N, k] indices of the k train pairs whose *molecule* the model scores
    highest for text i, excluding i itself (its positive): the hardest
    negatives of each text under the current model."""
    t = np.asarray(text_emb, dtype=np.float32)
    g = np.asarray(graph_emb, dtype=np.float32)
    n = len(t)
    if len(g) != n:
        raise MolretError(f"{n} text embeddings but {len(g)} graph embeddings")
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), dtype=np.int64)
    out = np.zeros((n, k), dtype=np.int64)
    for s in range(0, n, chunk):
        sim = t[s:s + chunk] @ g.T
        rows = np.arange(sim.shape[0])
        sim[rows, s + rows] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(sim, top, axis=1)
        out[s:s + chunk] = np.take_along_axis(top, np.argsort(-top_scores, axis=1, kind="stable"), axis=1)
    return out


def knn_batches(neighbours: np.ndarray, batch_size: int, rng: np.random.Generator,
                per_seed: int = 7) -> list[list[int]]:
    """Batches grown from seeds: take a random unassigned example, add it and
    up to ``per_seed`` of its still unassigned neighbours (nearest first),
    repeat until the batch is full. Every example appears exactly once."""
    neighbours = np.asarray(neighbours, dtype=np.int64)
    n = len(neighbours)
    if batch_size < 2:
        raise MolretError(f"batch_size must be >= 2, got {batch_size}")
    assigned = np.zeros(n, dtype=bool)
    batches, current = [], []
    for seed in rng.permutation(n):
        if assigned[seed]:
            continue
        group = [int(seed)]
        assigned[seed] = True
        for j in neighbours[seed]:
            if len(group) > per_seed or len(current) + len(group) >= batch_size:
                break
            if not assigned[j]:
                assigned[j] = True
                group.append(int(j))
        current += group
        if len(current) >= batch_size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    batches, _ = _merge_singletons(batches, None)
    return batches


# ----------------------------------------------------------------- losses

def clip_loss_with_negatives(text_emb: torch.Tensor, graph_emb: torch.Tensor, scale,
                             extra_graph: torch.Tensor | None = None,
                             extra_mask: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP loss with extra graph negatives for the text->graph direction.

    ``extra_graph`` [Q, D] (L2-normalised, no gradient needed) are appended to
    the candidate molecules of every text; ``extra_mask`` [B, Q] (bool) marks
    entries to ignore (e.g. a stale copy of the text's own molecule). The
    graph->text direction keeps the in-batch texts. With no extra negatives
    this is exactly :func:`molret.training.losses.clip_loss`.
    """
    b = text_emb.shape[0]
    target = torch.arange(b, device=text_emb.device)
    candidates = graph_emb if extra_graph is None else torch.cat([graph_emb, extra_graph.to(graph_emb.dtype)])
    logits = scale * text_emb @ candidates.t()
    in_batch = logits[:, :b]
    if extra_mask is not None and extra_graph is not None and extra_mask.any():
        pad = torch.zeros((b, b), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(torch.cat([pad, extra_mask.to(logits.device)], dim=1), float("-inf"))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(in_batch.t(), target))


class GraphQueue:
    """FIFO memory bank of the most recent ``size`` graph embeddings
    (detached) and the train indices they belong to."""

    def __init__(self, size: int, dim: int):
        if size < 0:
            raise MolretError(f"--queue-size must be >= 0, got {size}")
        self.size, self.dim = size, dim
        self.emb = torch.zeros((0, dim))
        self.index = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.index)

    def negatives(self, batch_index: torch.Tensor, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(queue embeddings, mask [B, Q] of entries that are the batch's own pairs)."""
        if len(self) == 0:
            return None, None
        mask = batch_index.view(-1, 1).cpu() == self.index.view(1, -1)
        return self.emb.to(device), mask.to(device)

    def push(self, graph_emb: torch.Tensor, batch_index: torch.Tensor) -> None:
        if self.size == 0:
            return
        self.emb = torch.cat([graph_emb.detach().float().cpu(), self.emb])[: self.size]
        self.index = torch.cat([batch_index.detach().cpu().long(), self.index])[: self.size]

    def state(self) -> dict:
        return {"size": self.size, "dim": self.dim, "emb": self.emb.clone(), "index": self.index.clone()}

    def load_state(self, state: dict) -> None:
        self.emb, self.index = state["emb"].float(), state["index"].long()


# ------------------------------------------------------------ label files

def write_labels(path, ids, labels) -> None:
    """``id<TAB>label`` lines."""
    from molret.utils.files import atomic_write_text
    labels = np.asarray(labels)
    if len(ids) != len(labels):
        raise MolretError(f"{len(ids)} ids for {len(labels)} labels")
    atomic_write_text(path, "".join(f"{i}\t{int(l)}\n" for i, l in zip(ids, labels)))


def read_labels(path, cids) -> np.ndarray:
    """Labels of ``cids`` (in that order) from an ``id<TAB>label`` file."""
    from pathlib import Path
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise MolretError(f"cannot read labels file {path}: {e.strerror or e}") from None
    table = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip().lstrip("-").isdigit():
            raise MolretError(f"{path}: line {n}: expected 'cid<TAB>integer label'")
        table[parts[0].strip()] = int(parts[1])
    missing = [c for c in cids if str(c) not in table]
    if missing:
        raise MolretError(f"{path}: no label for CID {missing[0]} ({len(missing)} of {len(cids)} missing)")
    return np.array([table[str(c)] for c in cids], dtype=np.int64)
