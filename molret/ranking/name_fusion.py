"""Name evidence fused with the learned scores (``--names opsin``).

For each query and candidate molecule, three features from the structures the
query names (``molret.names.resolve``):

* ``exact``: the candidate's graph is the subject's (or an enantiomer's)
  graph: same atom identifiers and bonds, as multisets;
* ``subject``: Tanimoto similarity of the subject's and the candidate's sets
  of substructure identifiers;
* ``parent``: the best such similarity over the structures the query cites
  (derives from, conjugate acid/base of, tautomer of, ... in which);
* ``form``: the candidate's graph is another form of a named structure: the
  subject (or an enantiomer) in another charge state or tautomer, or a
  structure the query cites as its conjugate acid/base or tautomer in another
  form (``molret.names.resolve.QueryStructures.forms``): 1, or 0.5 for a form that
  goes against the query's charge words ("(2-)", "zwitterion", "conjugate
  base of", "major species at pH 7.3") when another matching form fits them.

The fused score is ``similarity + sum_f weight_f * feature_f``; weights are
fitted on val (``fit_weights``: the pool LRAP of the val queries), so all
zero weights give exactly the learned scores. Queries without a resolved name
keep their learned row. Re-ranking (Sinkhorn) comes after fusion, so that a
molecule claimed by a resolved query stops competing for the others.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from molret.evaluation.metrics import ranks_of_targets

log = logging.getLogger("molret")

FEATURES = ("exact", "subject", "parent", "form")
# Weights used where there is no val set to fit them on (search.py): fitted on the shared val pool
# with the recipe's seed-0 ensemble (python recipe.py --data-dir data --minutes 30;
# docs/experiments.md "Names in queries"). "form" was not fitted with that ensemble: the weight of "exact", since the
# fits of docs/experiments.md "Names 2.0" gave the two equal weights.
DEFAULT_WEIGHTS = {"exact": 0.25, "subject": 0.6, "parent": 0.32, "form": 0.25}
_GRID = {"exact": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
         "subject": (0.0, 0.05, 0.1, 0.2, 0.4, 0.8),
         "parent": (0.0, 0.025, 0.05, 0.1, 0.2, 0.4),
         "form": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)}
FORM_AGAINST_HINT = 0.5     # the form feature of a form the query's charge words speak against


@dataclass
class Candidates:
    """Candidate molecules as name-matching sees them: a graph key each and
    their substructure-identifier sets (a sparse binary matrix)."""
    keys: list
    sets: object              # scipy.sparse.csr_matrix [M, V] of 0/1
    columns: dict             # identifier (int) -> column of ``sets``
    sizes: np.ndarray         # identifiers per candidate
    # computed once, on first use (a library's candidates answer one query after another)
    _by_key: dict | None = field(default=None, repr=False, compare=False)
    _columns_major: object = field(default=None, repr=False, compare=False)

    def positions(self) -> dict:
        """graph key -> the candidates with that graph."""
        if self._by_key is None:
            by_key: dict = {}
            for j, key in enumerate(self.keys):
                by_key.setdefault(key, []).append(j)
            self._by_key = by_key
        return self._by_key

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_stores(cls, stores: Sequence) -> "Candidates":
        """From GraphStores (``molret.data.challenge``), concatenated in order."""
        from scipy import sparse
        from molret.names.resolve import graph_keys
        keys, parts, n_atoms = [], [], 0
        for store in stores:
            keys += graph_keys(store.identifiers, store.node_ptr, store.edges, store.edge_ptr)
            graph_of_atom = np.repeat(np.arange(len(store)), np.diff(store.node_ptr)) + len(keys) - len(store)
            parts.append((graph_of_atom, store.identifiers))
            n_atoms += len(store.identifiers)
        graph_of_atom = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        identifiers = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.uint64)
        vocab, col = np.unique(identifiers, return_inverse=True)
        width = max(1, len(vocab))
        pairs = np.unique(graph_of_atom.astype(np.int64) * width + col.ravel())  # each identifier once per graph
        sets = sparse.csr_matrix((np.ones(len(pairs), np.float32), (pairs // width, pairs % width)),
                                 shape=(len(keys), width))
        columns = {int(v): i for i, v in enumerate(vocab.tolist())}
        return cls(keys, sets, columns, np.asarray(sets.sum(axis=1)).ravel().astype(np.float32))

    def tanimoto(self, identifier_sets: Sequence[np.ndarray]) -> np.ndarray:
        """[len(identifier_sets), M] Tanimoto similarity of each set with each candidate."""
        n = len(identifier_sets)
        if n == 0:
            return np.zeros((0, len(self)), np.float32)
        # only the columns the query sets use matter for the intersections
        used = sorted({self.columns[int(i)] for s in identifier_sets for i in s if int(i) in self.columns})
        pos = {c: k for k, c in enumerate(used)}
        dense = np.zeros((max(1, len(used)), n), np.float32)
        for j, s in enumerate(identifier_sets):
            for i in s:
                c = self.columns.get(int(i))
                if c is not None:
                    dense[pos[c], j] = 1.0
        if self._columns_major is None:
            self._columns_major = self.sets.tocsc()   # column slices of CSC are cheap, of CSR a full scan
        inter = (np.asarray(self._columns_major[:, used] @ dense[:len(used)]) if used
                 else np.zeros((len(self), n), np.float32))
        query_sizes = np.array([len(s) for s in identifier_sets], np.float32)
        union = query_sizes[None, :] + self.sizes[:, None] - inter
        return (inter / np.maximum(union, 1.0)).T.astype(np.float32)


@dataclass
class NameFeatures:
    """Features of the queries that have at least one resolved structure:
    ``values[f, k, :]`` is feature ``FEATURES[f]`` of query ``rows[k]``."""
    rows: np.ndarray          # int64 [R]
    values: np.ndarray        # float32 [len(FEATURES), R, M]
    num_queries: int


def name_features(structures: Sequence, candidates: Candidates) -> NameFeatures:
    """The features of every query (``molret.names.resolve.QueryStructures``) against every candidate."""
    rows = [q for q, s in enumerate(structures) if s.subject or s.enantiomers or s.parents or getattr(s, "forms", None)]
    values = np.zeros((len(FEATURES), len(rows), len(candidates)), np.float32)
    by_key = candidates.positions()
    subject_sets, subject_rows, parent_sets, parent_rows = [], [], [], []
    for k, q in enumerate(rows):
        s = structures[q]
        identity = s.identity_keys
        for key in identity:
            values[0, k, by_key.get(key, [])] = 1.0
        matched = {}   # form key -> preferred by the charge words (True / False / None)
        for f in getattr(s, "forms", ()):
            if f.key not in identity and f.key in by_key:
                p = s.preferred(f)
                if p is None:
                    matched.setdefault(f.key, None)
                else:
                    matched[f.key] = bool(matched.get(f.key)) or p
        any_preferred = any(p for p in matched.values())
        for key, p in matched.items():
            values[3, k, by_key[key]] = FORM_AGAINST_HINT if any_preferred and p is False else 1.0
        if s.subject is not None:
            subject_sets.append(s.subject.identifiers)
            subject_rows.append(k)
        for p in s.parents:
            parent_sets.append(p.identifiers)
            parent_rows.append(k)
    if subject_sets:
        values[1, subject_rows] = candidates.tanimoto(subject_sets)
    if parent_sets:
        sims = candidates.tanimoto(parent_sets)
        for k, sim in zip(parent_rows, sims):
            np.maximum(values[2, k], sim, out=values[2, k])
    return NameFeatures(np.asarray(rows, np.int64), values, len(structures))


def fuse(similarity: np.ndarray, features: NameFeatures, weights: dict) -> np.ndarray:
    """``similarity + sum_f weights[f] * feature_f`` (float64); rows without
    names are the learned rows unchanged."""
    fused = np.array(similarity, dtype=np.float64, copy=True)
    if len(features.rows) == 0:
        return fused
    bonus = np.zeros(features.values.shape[1:], np.float64)
    for f, name in enumerate(FEATURES):
        w = float(weights.get(name, 0.0))
        if w:
            bonus += w * features.values[f]
    fused[features.rows] += bonus
    return fused


def block(features: NameFeatures, rows: slice, cols: slice) -> NameFeatures:
    """The features of a contiguous block of queries and candidate columns."""
    start, stop, _ = rows.indices(features.num_queries)
    keep = (features.rows >= start) & (features.rows < stop)
    return NameFeatures(features.rows[keep] - start, features.values[:, keep][:, :, cols], stop - start)


def fit_weights(similarity: np.ndarray, features: NameFeatures, targets: np.ndarray | None = None) -> dict:
    """Weights maximising the mean reciprocal rank (= LRAP with one answer)
    of ``similarity`` rows fused with ``features``: a grid over the weights
    of FEATURES, then one refinement pass per feature around the best.
    Only rows with names change, so only they are re-scored."""
    targets = np.arange(similarity.shape[0]) if targets is None else np.asarray(targets)
    zero = {f: 0.0 for f in FEATURES}
    if len(features.rows) == 0:
        return zero
    rows = features.rows
    sim = np.asarray(similarity[rows], dtype=np.float64)
    true_col = targets[rows]
    values = features.values.astype(np.float64)
    others = np.delete(np.arange(len(targets)), rows)
    fixed = float(np.sum(1.0 / ranks_of_targets(similarity[others], targets[others]))) if len(others) else 0.0
    at = np.arange(len(rows))

    def score(w):
        fused = sim + np.tensordot(np.array([w[f] for f in FEATURES]), values, axes=1)
        ranks = (fused >= fused[at, true_col][:, None]).sum(axis=1)
        return (fixed + float(np.sum(1.0 / ranks))) / len(targets)

    best_w, best = zero, score(zero)
    # a feature that is zero everywhere (no forms matched, say) keeps weight 0: its grid is not searched
    grids = [_GRID[f] if values[i].any() else (0.0,) for i, f in enumerate(FEATURES)]
    for combo in itertools.product(*grids):
        w = dict(zip(FEATURES, combo))
        s = score(w)
        if s > best + 1e-12:
            best_w, best = w, s
    for f in FEATURES:  # refine each weight between its grid neighbours
        for factor in (0.6, 0.8, 1.25, 1.6):
            w = dict(best_w, **{f: best_w[f] * factor})
            s = score(w)
            if s > best + 1e-12:
                best_w, best = w, s
    return {f: round(float(v), 6) for f, v in best_w.items()}


def name_stats(structures: Sequence, candidates: Candidates, targets: np.ndarray) -> dict:
    """How many queries have a subject name, how many resolve, how many give
    their true molecule's graph exactly (``targets``: column of each query's
    answer), and how many cited structures resolved."""
    n_subject = sum(s.names.subject is not None for s in structures)
    resolved = sum(s.subject is not None for s in structures)
    exact = sum(bool(s.identity_keys) and candidates.keys[int(t)] in s.identity_keys
                for s, t in zip(structures, targets))
    true_keys = [candidates.keys[int(t)] for t in targets]
    form = [next((f for f in getattr(s, "forms", ()) if f.key == k and k not in s.identity_keys), None)
            for s, k in zip(structures, true_keys)]
    by_source: dict = {}
    for s, k in zip(structures, true_keys):
        if s.subject is not None:
            d = by_source.setdefault(s.subject.source, {"resolved": 0, "exact": 0})
            d["resolved"] += 1
            d["exact"] += int(k == s.subject.key)
    form_kinds: dict = {}
    for f in form:
        if f is not None:
            form_kinds[f.kind] = form_kinds.get(f.kind, 0) + 1
    return {"queries": len(structures), "subject_found": n_subject, "subject_resolved": resolved,
            "exact_true_graph": int(exact),
            "form_true_graph": sum(f is not None for f in form), "form_true_by_kind": form_kinds,
            "subject_by_source": by_source,
            "cited_found": sum(len(s.names.parents) + len(s.names.enantiomers) for s in structures),
            "cited_resolved": sum(len(s.parents) + len(s.enantiomers) for s in structures)}
