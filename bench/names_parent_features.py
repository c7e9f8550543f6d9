"""Does a parent-containment feature help the pool with names? (issue 30, item 6; a measurement, not a test)

The recipe's ensemble of saved members (weights fitted on val as ``ensemble_method.py --fit-weights``),
its pool square, the names features of today (exact, subject, parent Tanimoto, form), and one more:
``contains``, the share of a cited parent structure's substructure identifiers that a candidate has
(a derivative "Y in which ...", "derives from Y" keeps most of Y's substructures but is larger, which
Tanimoto penalises), max over the query's parents, only on rows whose subject does not resolve. The
new weight is fitted on val by a line search with the other weights fitted as today.

    python bench/names_parent_features.py --members R/feat-1/embeddings ... --groups feat ... \\
        --data-dir D --cache-dir C [--temperature 0.02]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8)


def containment(candidates, identifier_sets) -> np.ndarray:
    """[len(sets), M] share of each set's identifiers the candidate has."""
    tanimoto_like = candidates.tanimoto(identifier_sets)           # inter / union
    sizes = np.array([len(s) for s in identifier_sets], np.float32)[:, None]
    union_plus = sizes + candidates.sizes[None, :]
    inter = tanimoto_like * union_plus / (1.0 + tanimoto_like)     # from T = I / (a + b - I)
    return inter / np.maximum(sizes, 1.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", nargs="+", required=True)
    p.add_argument("--groups", nargs="+")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir")
    p.add_argument("--temperature", type=float, default=0.02)
    args = p.parse_args(argv)
    from molret.evaluation.pool import challenge_pool_inputs, pool_metrics_of, reranked_pool_lrap
    from molret.names.cache import resolve_queries_cached
    from molret.names.opsin import shared_opsin
    from molret.names.sources import pairs_dictionary_from_dir
    from molret.ranking.ensemble_engine import EnsembleOptions, ensemble_split, fit_weights, load_members
    from molret.ranking.name_fusion import Candidates, NameFeatures, block, fuse, name_features
    from molret.ranking.name_fusion import fit_weights as fit_name_weights
    opts = EnsembleOptions(members=args.members, groups=args.groups, fit_weights=True, rerank="sinkhorn",
                           rerank_temperature=args.temperature, names="opsin", data_dir=args.data_dir,
                           cache_dir=args.cache_dir)
    members = load_members(opts)
    fit_weights(opts, members, True, {})
    square, _, _ = ensemble_split(members, "pool", opts, do_rerank=False)
    n_val = members[0].n_val
    _, val_texts, val_graphs, _, test_texts, test_graphs = challenge_pool_inputs(args.data_dir, args.cache_dir)
    candidates = Candidates.from_stores([val_graphs, test_graphs])
    pairs = pairs_dictionary_from_dir(args.data_dir, args.cache_dir)
    structures = resolve_queries_cached(list(val_texts) + list(test_texts), shared_opsin(), pairs,
                                        candidate_keys=candidates.keys, cache_dir=args.cache_dir)
    base = name_features(structures, candidates)
    weights = fit_name_weights(square[:n_val], block(base, slice(0, n_val), slice(None)))
    fused = fuse(square, base, weights)
    extra = np.zeros((len(square), len(candidates)), np.float32)
    sets, rows = [], []
    for q, s in enumerate(structures):
        if s.subject is None and not s.enantiomers:
            for parent in s.parents:
                sets.append(parent.identifiers)
                rows.append(q)
    if sets:
        for q, row in zip(rows, containment(candidates, sets)):
            np.maximum(extra[q], row, out=extra[q])
    print(f"rows with a containment feature: {len(set(rows))} ({sum(r < n_val for r in set(rows))} val)")

    def lrap(w: float, rerank: bool) -> float:
        s = fused + w * extra
        return reranked_pool_lrap(s, n_val, "sinkhorn", args.temperature) if rerank else \
            pool_metrics_of(s, n_val)["pool_lrap"]

    plain = {w: lrap(w, False) for w in GRID}
    best = max(plain, key=plain.get)
    print(f"names weights (today's fit): {weights}")
    for w in GRID:
        print(f"  contains weight {w:<5} pool LRAP with names {plain[w]:.4f}")
    print(f"best weight on val {best}: re-ranked pool LRAP with names {lrap(best, True):.4f} "
          f"(without the feature {lrap(0.0, True):.4f})")


if __name__ == "__main__":
    main()
