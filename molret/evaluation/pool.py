"""Validation at the test's pool size: val queries ranked among the val
molecules plus every test molecule as a distractor.

A 500-molecule val pool is far easier than the 3,301-molecule test pool and
misranks settings, so every evaluation also reports these *pool* metrics
(no test label is used: test molecules only compete). With re-ranking, the
one-to-one structure holds for the square problem val + test queries x val +
test molecules; it is re-ranked whole and scored on the val rows.

Pure functions of embeddings/similarities; ``molret.evaluation.metrics`` does the
scoring.
"""
from __future__ import annotations

import numpy as np

from molret.evaluation.metrics import retrieval_metrics

# metric name in metrics.json/result.json -> key of retrieval_metrics on the pool
POOL_NAMES = {"pool_lrap": "lrap", "pool_mrr": "mrr", "pool_hits1": "hits@1", "pool_hits10": "hits@10"}


def pool_similarity(val_text: np.ndarray, val_graph: np.ndarray, test_text: np.ndarray | None,
                    test_graph: np.ndarray) -> np.ndarray:
    """The square similarity [val + test queries] x [val + test molecules]
    (rows of the test queries only when ``test_text`` is given); column i < n_val
    is the answer of val row i."""
    texts = val_text if test_text is None else np.concatenate([val_text, test_text])
    graphs = np.concatenate([val_graph, test_graph])
    return texts @ graphs.T


def pool_metrics_of(similarity: np.ndarray, n_val: int, rows: np.ndarray | None = None) -> dict:
    """pool_lrap, pool_mrr, pool_hits1, pool_hits10 of the val rows (the first
    ``n_val``, or the val row indices ``rows``) of a pool similarity matrix
    whose first ``n_val`` columns are their answers, in order."""
    rows = np.arange(n_val) if rows is None else np.asarray(rows)
    m = retrieval_metrics(similarity[rows], rows)
    return {name: m[key] for name, key in POOL_NAMES.items()}


def reranked_pool_lrap(square: np.ndarray, n_val: int, method: str, temperature: float,
                       rows: np.ndarray | None = None, n_iter: int | None = None) -> float:
    """LRAP of the val rows (or of the val row indices ``rows``) after
    re-ranking the whole square pool problem."""
    from molret.ranking.rerank import SINKHORN_ITERS, rerank
    rows = np.arange(n_val) if rows is None else np.asarray(rows)
    reranked = rerank(square, method, temperature, n_iter=n_iter or SINKHORN_ITERS)
    return retrieval_metrics(reranked[rows], rows)["lrap"]


def pool_metrics(val_text: np.ndarray, val_graph: np.ndarray, test_graph: np.ndarray,
                 test_text: np.ndarray | None = None, rerank: str = "none", temperature: float = 0.05) -> dict:
    """The pool metrics of one model's embeddings; ``pool_lrap_reranked`` too
    when ``rerank`` is not "none" (it needs ``test_text``)."""
    square = pool_similarity(val_text, val_graph, test_text if rerank != "none" else None, test_graph)
    out = pool_metrics_of(square, len(val_text))
    if rerank != "none":
        out["pool_lrap_reranked"] = reranked_pool_lrap(square, len(val_text), rerank, temperature)
    return out


def format_pool(m: dict) -> str:
    """One log fragment: 'pool LRAP 0.4123 MRR ... H@1 ... H@10 ...'."""
    s = (f"pool LRAP {m['pool_lrap']:.4f}  MRR {m['pool_mrr']:.4f}  H@1 {m['pool_hits1']:.3f}  "
         f"H@10 {m['pool_hits10']:.3f}")
    if "pool_lrap_reranked" in m:
        s += f"  re-ranked pool LRAP {m['pool_lrap_reranked']:.4f}"
    return s


# ------------------------------------------------------------ the challenge's final report

def challenge_pool_inputs(data_dir, cache_dir=None, progress: bool = False):
    """(val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs) of a
    challenge data folder: what the pool and name fusion need besides the
    embeddings (graphs as GraphStores; no vocabulary needed)."""
    from pathlib import Path
    from molret.data.graph_store import GraphSource, load_graphs
    from molret.data.challenge import default_cache_dir, read_pairs_tsv, read_test_inputs, resolve_data_dir
    paths = resolve_data_dir(data_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(data_dir)
    source = GraphSource(paths.need("raw"))
    val_cids, val_texts = read_pairs_tsv(paths.need("val"))
    test_cids, test_texts = read_test_inputs(paths)
    return (val_cids, val_texts, load_graphs("val", val_cids, source, cache, None, progress),
            test_cids, test_texts, load_graphs("test", test_cids, source, cache, None, progress))


def pool_name_features(val_texts, test_texts, val_graphs, test_graphs, pairs=None, data_dir=None, cache_dir=None):
    """Name features (molret.ranking.name_fusion) of val + test queries against val +
    test molecules, names resolved by OPSIN, the chemicals dictionary and the
    pairs dictionary (molret.names.sources.PairsDictionary), those available;
    None (with one warning line each) when none is. The pairs dictionary is
    ``pairs``, else that of the whole ``train.tsv`` of ``data_dir`` (never a
    --max-train subset: every path gives the same features for the same data).
    The resolved structures are cached in ``cache_dir`` (molret.names.cache;
    default: the data folder's cache when ``data_dir`` is given)."""
    from molret.names.cache import resolve_queries_cached
    from molret.ranking.name_fusion import Candidates, name_features, name_stats
    from molret.names.opsin import shared_opsin
    if data_dir is not None and cache_dir is None:
        from molret.data.challenge import default_cache_dir
        cache_dir = default_cache_dir(data_dir)
    if pairs is None and data_dir is not None:
        from molret.names.sources import pairs_dictionary_from_dir
        pairs = pairs_dictionary_from_dir(data_dir, cache_dir)
    candidates = Candidates.from_stores([g for g in (val_graphs, test_graphs) if g is not None])
    structures = resolve_queries_cached(list(val_texts) + list(test_texts), shared_opsin(), pairs,
                                        candidate_keys=candidates.keys, cache_dir=cache_dir)
    if structures is None:
        return None, {}
    stats = name_stats(structures[:len(val_texts)], candidates, np.arange(len(val_texts)))
    return name_features(structures, candidates), stats


def final_report(square: np.ndarray, n_val: int, rerank: str = "none", temperature: float = 0.05,
                 names=None, rows: np.ndarray | None = None, weights: dict | None = None,
                 n_iter: int | None = None) -> tuple[dict, dict | None]:
    """Pool metrics of a square pool matrix (val + test queries x val + test
    molecules), re-ranked when asked, and with name fusion when ``names``
    (NameFeatures of the same square) is given: its weights are fitted on the
    val rows unless ``weights`` are given. ``rows``: score only these val rows
    (the re-ranking still covers the whole square). Returns (report, weights or None)."""
    from molret.ranking.name_fusion import block, fit_weights, fuse
    report = pool_metrics_of(square, n_val, rows)
    if rerank != "none":
        report["pool_lrap_reranked"] = reranked_pool_lrap(square, n_val, rerank, temperature, rows, n_iter)
    if names is not None:
        if weights is None:
            weights = fit_weights(square[:n_val], block(names, slice(0, n_val), slice(None)))
        fused = fuse(square, names, weights)
        with_names = pool_metrics_of(fused, n_val, rows)
        if rerank != "none":
            with_names["pool_lrap_reranked"] = reranked_pool_lrap(fused, n_val, rerank, temperature, rows, n_iter)
        report["names"] = {"weights": weights, **with_names}
    return report, weights


def test_matrix(test_similarity: np.ndarray, rerank: str = "none", temperature: float = 0.05, names=None,
                weights: dict | None = None, n_val: int = 0, n_iter: int | None = None) -> np.ndarray:
    """The submission's test queries x test molecules matrix: fused with the
    names' test block (``names`` of the square pool, test rows/columns after
    ``n_val``) when given, then re-ranked."""
    from molret.ranking.name_fusion import block, fuse
    from molret.ranking.rerank import SINKHORN_ITERS
    from molret.ranking.rerank import rerank as do_rerank
    s = test_similarity
    if names is not None and weights:
        s = fuse(s, block(names, slice(n_val, None), slice(n_val, None)), weights)
    return do_rerank(s, rerank, temperature, n_iter=n_iter or SINKHORN_ITERS) if rerank != "none" else s


def format_report(report: dict) -> list[str]:
    """Log lines of a final_report."""
    lines = [format_pool(report)]
    if "names" in report:
        n = report["names"]
        w = ", ".join(f"{k} {v:g}" for k, v in n["weights"].items())
        lines.append(f"with names (weights {w}): {format_pool(n)}")
    return lines
