"""The claims score fused with the ensemble's pool scores (``ensemble_method.py --claims``), before re-ranking.

The ranker (``molret.ranking.claims.ranker``) is fitted on the training pairs of the data folder, then scores
each query's top-k candidates of the learned square; its scores, standardised (one scale for the whole pool),
become a bonus ``score - the row's lowest top-k score`` on those candidates and 0 elsewhere, so a
candidate outside the top-k never passes one inside on claims alone. The fused matrix is
``similarity + weight * bonus``; the weight is fitted on the val rows like the names' weights (the pool MRR
of the val queries over a grid), so weight 0 gives exactly the learned scores.

``ClaimsScorer`` is the fitted scorer a model file carries (``state`` / ``from_state``: plain data): the ranker,
its weight, the pool's scale and top-k; library search (molret.search.engine) and predictions.py apply it to
any score matrix, the attributes of the candidates only computed (``LazyAttributes``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molret.evaluation.metrics import ranks_of_targets
from molret.ranking.claims.ranker import ClaimsRanker, RankerOptions, fit_ranker
from molret.ranking.claims.statements import stated_matrix
from molret.ranking.claims.structure import ATTRIBUTES, attribute_matrix, cached_attribute_matrix
from molret.utils.errors import MolretError

WEIGHT_GRID = (0.0, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
TOP_K_LIMITS = (1, 100_000)


@dataclass
class ClaimsOptions:
    """The claims scorer of the ensemble step."""
    top_k: int = 50
    ranker: RankerOptions = field(default_factory=RankerOptions)


def top_k_columns(square: np.ndarray, k: int) -> np.ndarray:
    """[Q, min(k, M)] the columns of each row's k highest scores (in no particular order)."""
    k = min(k, square.shape[1])
    return np.argpartition(-square, k - 1, axis=1)[:, :k] if k < square.shape[1] else \
        np.tile(np.arange(square.shape[1]), (len(square), 1))


def claims_scale(scores: np.ndarray) -> float:
    """The scale ``claims_bonus`` divides ranker scores by: their std over the whole matrix."""
    return max(float(np.std(scores)), 1e-12)


def claims_bonus(scores: np.ndarray, columns: np.ndarray, shape: tuple, scale: float | None = None) -> np.ndarray:
    """[shape] the bonus of ranker ``scores`` [Q, k] of ``columns`` [Q, k]: standardised by ``scale`` (default:
    their std over the whole matrix, ``claims_scale``), minus each row's lowest, on those columns; 0 elsewhere."""
    bonus = np.zeros(shape, np.float32)
    if scores.size == 0:
        return bonus
    z = scores / (claims_scale(scores) if scale is None else scale)
    np.put_along_axis(bonus, columns, (z - z.min(axis=1, keepdims=True)).astype(np.float32), axis=1)
    return bonus


def fuse_claims(similarity: np.ndarray, bonus: np.ndarray, weight: float) -> np.ndarray:
    """``similarity + weight * bonus`` (float64); weight 0 gives the learned scores exactly."""
    fused = np.array(similarity, dtype=np.float64, copy=True)
    if weight:
        fused += weight * bonus
    return fused


def fit_claims_weight(similarity: np.ndarray, bonus: np.ndarray, targets: np.ndarray | None = None,
                      grid=WEIGHT_GRID) -> float:
    """The weight of ``grid`` (then refined around the best) maximising the mean reciprocal rank of the rows of
    ``similarity + weight * bonus`` (``targets``: each row's true column; default the diagonal)."""
    targets = np.arange(len(similarity)) if targets is None else np.asarray(targets)

    def score(w: float) -> float:
        return float(np.mean(1.0 / ranks_of_targets(fuse_claims(similarity, bonus, w), targets)))
    best_w, best = 0.0, score(0.0)
    for w in grid:
        s = score(w)
        if s > best + 1e-12:
            best_w, best = w, s
    for factor in (0.7, 0.85, 1.2, 1.4):
        s = score(best_w * factor)
        if s > best + 1e-12:
            best_w, best = best_w * factor, s
    return round(float(best_w), 6)


def store_smiles(store, cache_dir) -> list:
    """The SMILES of a GraphStore's graphs (None where the decoder could not rebuild one), decoded once and
    cached beside the molecule features' decodings (molret.chem.store_decoding)."""
    from molret.chem.store_decoding import cached_decode_store, decoding_key
    file = Path(cache_dir) / f"decoded-{decoding_key(store)[:16]}.npz" if cache_dir is not None else None
    return cached_decode_store(store, file).smiles


def store_attributes(stores, cache_dir) -> np.ndarray:
    """[molecules, A] the claims attributes of the graphs of ``stores`` (GraphStores, in order), from their
    decoded SMILES (``store_smiles``), cached in ``cache_dir``."""
    return np.concatenate([cached_attribute_matrix(store_smiles(s, cache_dir), cache_dir) for s in stores])


def training_claims(data_dir, cache_dir) -> tuple:
    """(stated [N, R], attributes [N, A]) of the data folder's training pairs."""
    from molret.data.challenge import default_cache_dir, read_pairs_tsv, resolve_data_dir
    from molret.data.graph_store import GraphSource, load_graphs
    paths = resolve_data_dir(data_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(data_dir)
    cids, texts = read_pairs_tsv(paths.need("train"))
    graphs = load_graphs("train", cids, GraphSource(paths.need("raw")), cache, None, False)
    if list(graphs.cids) != list(cids):
        keep = {c: i for i, c in enumerate(graphs.cids)}
        texts = [t for c, t in zip(cids, texts) if c in keep]
    return stated_matrix(texts), store_attributes([graphs], cache)


def top_k_scores(ranker: ClaimsRanker, texts, base: np.ndarray, attrs, top_k: int) -> tuple:
    """(the ranker's scores [Q, k] of each row's ``top_k`` best columns of ``base`` [Q, N], those columns [Q, k]);
    ``attrs``: the N candidates' attributes, indexable by an array of columns (an attribute matrix,
    LazyAttributes): only the candidates' rows are read."""
    columns = top_k_columns(base, top_k)
    unique, positions = np.unique(columns, return_inverse=True)
    queries = np.repeat(np.arange(len(base)), columns.shape[1])
    scores = ranker.score(stated_matrix(list(texts)), np.asarray(attrs[unique]), queries,
                          positions.ravel()).reshape(columns.shape)
    return scores, columns


def pool_claims_scores(square: np.ndarray, texts, stores, data_dir, cache_dir, opts: ClaimsOptions) -> tuple:
    """(the ranker fitted on ``data_dir``'s training pairs, its scores [Q, k] of the top-k ``columns`` [Q, k] of
    each row of ``square`` (queries ``texts``, molecules the graphs of ``stores``), timings)."""
    t0 = time.perf_counter()
    ranker = fit_ranker(*training_claims(data_dir, cache_dir), opts.ranker)
    t1 = time.perf_counter()
    scores, columns = top_k_scores(ranker, texts, square, store_attributes(stores, cache_dir), opts.top_k)
    return ranker, scores, columns, {"fit_s": round(t1 - t0, 2), "score_s": round(time.perf_counter() - t1, 2),
                                     "top_k": int(columns.shape[1])}


def pool_claims_bonus(square: np.ndarray, texts, stores, data_dir, cache_dir, opts: ClaimsOptions) -> tuple:
    """(bonus [Q, M] of the square pool, timings): ``pool_claims_scores`` as a bonus."""
    _, scores, columns, stats = pool_claims_scores(square, texts, stores, data_dir, cache_dir, opts)
    return claims_bonus(scores, columns, square.shape), stats


class LazyAttributes:
    """The claims attributes of a library's rows from their SMILES (``smiles[j]``, None when unknown: a NaN
    row), computed on first use and kept: ``attrs[columns]`` -> [..., A] like an attribute matrix, so that a
    search computes those of its candidates only."""

    def __init__(self, smiles):
        self.smiles = smiles
        self.values = np.full((len(smiles), len(ATTRIBUTES)), np.nan, np.float32)
        self.known = np.zeros(len(smiles), bool)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, columns) -> np.ndarray:
        columns = np.asarray(columns, np.int64)
        todo = np.unique(columns[~self.known[columns]])
        if len(todo):
            self.values[todo] = attribute_matrix([self.smiles[int(j)] for j in todo])
            self.known[todo] = True
        return self.values[columns]


@dataclass
class ClaimsScorer:
    """A fitted claims scorer as a model file carries it: ``fuse`` adds ``weight * bonus`` to a score matrix,
    the bonus of the ranker's scores of each row's ``top_k`` candidates standardised by the pool's ``scale``."""
    ranker: ClaimsRanker
    weight: float
    scale: float
    top_k: int

    def bonus(self, texts, base: np.ndarray, attrs) -> np.ndarray:
        """[Q, N] float32 bonus (unweighted) for the queries ``texts`` and scores ``base`` [Q, N]; ``attrs``: the
        N candidates' attributes, indexable by an array of columns (an attribute matrix, LazyAttributes)."""
        if base.size == 0:
            return np.zeros(base.shape, np.float32)
        scores, columns = top_k_scores(self.ranker, texts, base, attrs, self.top_k)
        return claims_bonus(scores, columns, base.shape, self.scale)

    def weighted_bonus(self, texts, base: np.ndarray, attrs) -> np.ndarray:
        """[Q, N] float32 ``weight * bonus`` (what the ensemble added to its test block); weight 0: zeros."""
        if not self.weight:
            return np.zeros(base.shape, np.float32)
        return (self.weight * self.bonus(texts, base, attrs)).astype(np.float32)

    def fuse(self, texts, base: np.ndarray, attrs) -> np.ndarray:
        """``base + weight * bonus`` (float64), as the pool fused it; weight 0: ``base`` unchanged."""
        if not self.weight:
            return np.asarray(base, np.float64)
        return fuse_claims(base, self.bonus(texts, base, attrs), self.weight)

    def state(self) -> dict:
        """Plain data for a model file (molret.models.embedder.Fusion.claims)."""
        return {"ranker": self.ranker.state(), "weight": float(self.weight), "scale": float(self.scale),
                "top_k": int(self.top_k)}

    @classmethod
    def from_state(cls, state, where: str = "the claims scorer") -> "ClaimsScorer":
        """The scorer of ``state``; a wrong or stale one is one MolretError."""
        if not isinstance(state, dict):
            raise MolretError(f"{where}: not a claims scorer")
        weight, scale, top_k = state.get("weight"), state.get("scale"), state.get("top_k")
        if not (isinstance(weight, (int, float)) and np.isfinite(weight) and weight >= 0) or \
                not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0) or \
                not (isinstance(top_k, int) and TOP_K_LIMITS[0] <= top_k <= TOP_K_LIMITS[1]):
            raise MolretError(f"{where}: its weight (>= 0), scale (> 0) or top-k ({TOP_K_LIMITS[0]}.."
                              f"{TOP_K_LIMITS[1]}) is not valid (got {weight!r}, {scale!r}, {top_k!r})")
        return cls(ClaimsRanker.from_state(state.get("ranker"), where), float(weight), float(scale), int(top_k))


def check_claims(top_k: int) -> None:
    """The claims scorer's options, checked before any work."""
    if not TOP_K_LIMITS[0] <= top_k <= TOP_K_LIMITS[1]:
        raise MolretError(f"--claims-top-k must be within {TOP_K_LIMITS[0]}..{TOP_K_LIMITS[1]}, got {top_k}")


def pool_claims(opts, square: np.ndarray, n_val: int, inputs, data_dir, names=None) -> tuple:
    """The ensemble step's claims fusion (``opts``: the EnsembleOptions; ``inputs``: the pool's
    challenge_pool_inputs; ``data_dir``: the folder of the training pairs): (the fused square, the weighted
    bonus added to it, the report, the fitted ClaimsScorer). The report holds the pool report without claims
    (names fused as given), the fitted weight, the scale and the timings, printed."""
    from molret.evaluation.pool import final_report, format_report
    check_claims(opts.claims_top_k)
    if data_dir is None:
        raise MolretError("--claims fits its ranker on the training pairs: give --data-dir")
    claims_opts = ClaimsOptions(top_k=opts.claims_top_k)
    _, val_texts, val_graphs, _, test_texts, test_graphs = inputs
    ranker, scores, columns, stats = pool_claims_scores(square, list(val_texts) + list(test_texts),
                                                        (val_graphs, test_graphs), data_dir, opts.cache_dir,
                                                        claims_opts)
    scale = claims_scale(scores)
    bonus = claims_bonus(scores, columns, square.shape, scale)
    weight = fit_claims_weight(square[:n_val], bonus[:n_val])
    without, _ = final_report(square, n_val, opts.rerank, opts.rerank_temperature, names, n_iter=opts.sinkhorn_iters)
    print(f"claims scorer ({claims_opts.ranker.ranker}, top {stats['top_k']}): fitted in {stats['fit_s']:.1f} s, "
          f"scored in {stats['score_s']:.1f} s; weight fitted on val {weight:g}; the pool without claims:")
    for line in format_report(without):
        print("    " + line)
    scorer = ClaimsScorer(ranker, weight, scale, claims_opts.top_k)
    return fuse_claims(square, bonus, weight), (weight * bonus).astype(np.float32), \
        {"weight": weight, "scale": scale, **stats, "without": without}, scorer


def final_fit_bonus(scorer: ClaimsScorer, square: np.ndarray, texts, stores, cache_dir) -> np.ndarray:
    """The weighted claims bonus whose test block goes into a submission made with the final fit's members: the
    top-k candidates of their square pool ``square`` (val + test queries ``texts`` x the molecules of ``stores``),
    the members the model file holds, so that ``predictions.py --model`` picks the same ones."""
    return scorer.weighted_bonus(texts, square, store_attributes(stores, cache_dir))
