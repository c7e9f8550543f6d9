"""Name-fusion weights for library search: the 500 val queries among the 102,980 challenge molecules, scored
with a grid of weights (EXACT SUBJECT PARENT FORM) over one model's cached library embeddings; the best
weights on all queries, and cross-fitted (fitted on one half of the queries, scored on the other, both ways).

    python bench/library_names_weights.py --model runs/recipe/model.pt --cache-dir /tmp/libcache

A measurement, not a test: it tunes on val, as the pool's name weights are, and says so.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"
GRID = {"exact": (0.25, 0.5, 1.0, 2.0), "subject": (0.25, 0.4, 0.6, 1.0, 1.5), "parent": (0.0, 0.1, 0.25, 0.32, 0.5),
        "form": (0.25, 0.5, 1.0)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--library", default=str(DATA / "raw.zip"))
    p.add_argument("--val", default=str(DATA / "val.tsv"))
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--chunk", type=int, default=25)
    p.add_argument("--hubness-temperature", type=float, default=0.0,
                   help="also correct hubness against the training texts (inverted softmax at this temperature)")
    p.add_argument("--json")
    args = p.parse_args(argv)

    from molret.data.challenge import read_pairs_tsv
    from molret.library.caches import library_embeddings
    from molret.models.embedder import load_embedder
    from molret.names.queries import resolve_queries
    from molret.ranking.name_fusion import FEATURES, name_features
    from molret.search.engine import LibrarySearch
    embedder = load_embedder(args.model, "cpu")
    engine = LibrarySearch(embedder, library_embeddings(args.library, embedder, cache_dir=args.cache_dir))
    if not engine.enable_names(cache_dir=args.cache_dir):
        raise SystemExit("no name source")
    candidates, _, opsin, sources = engine.names
    if args.hubness_temperature > 0:
        from molret.cli.search import read_bank
        engine.enable_hubness(read_bank(DATA / "train.tsv"), args.hubness_temperature)
    cids, queries = read_pairs_tsv(args.val)
    true = np.array([engine.position(c) for c in cids])
    q_emb = engine.encode(queries)
    combos = list(itertools.product(*(GRID[f] for f in FEATURES)))
    reciprocal = np.zeros((len(combos), len(queries)))
    top1 = np.zeros((len(combos), len(queries)), bool)
    for start in range(0, len(queries), args.chunk):
        rows = slice(start, start + args.chunk)
        base = engine._all_scores(q_emb[rows])   # noqa: SLF001 - the bench reads the engine's own scores
        if engine.hub_offsets is not None:
            base -= engine.hub_offsets[None, :]
        feats = name_features(resolve_queries(queries[rows], opsin, sources=sources), candidates)
        t = true[rows]
        for c, weights in enumerate(combos):
            fused = base.copy()
            if len(feats.rows):
                fused[feats.rows] += np.tensordot(np.asarray(weights), feats.values, axes=1)
            target = fused[np.arange(len(fused)), t]
            ranks = (fused >= target[:, None]).sum(axis=1)    # ties counted against the true molecule
            reciprocal[c, rows], top1[c, rows] = 1.0 / ranks, ranks == 1
        print(f"{min(start + args.chunk, len(queries))} / {len(queries)} queries", flush=True)
    mrr = reciprocal.mean(axis=1)
    best = int(np.argmax(mrr))
    halves = np.array_split(np.random.default_rng(0).permutation(len(queries)), 2)
    cross = np.zeros(len(queries))
    for fit, score in (halves, halves[::-1]):
        c = int(np.argmax(reciprocal[:, fit].mean(axis=1)))
        cross[score] = reciprocal[c, score]
    named = dict(zip(FEATURES, combos[best]))
    out = {"best_weights": named, "mrr": float(mrr[best]), "top1": float(top1[best].mean()),
           "mrr_cross_fitted": float(cross.mean())}
    for label, weights in (("file", embedder.fusion.names_weights), ("defaults", None)):
        from molret.ranking.name_fusion import DEFAULT_WEIGHTS
        w = tuple((weights or DEFAULT_WEIGHTS)[f] for f in FEATURES)
        if w in combos:
            c = combos.index(w)
            out[f"{label}_weights"] = {"weights": dict(zip(FEATURES, w)), "mrr": float(mrr[c]),
                                       "top1": float(top1[c].mean())}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
