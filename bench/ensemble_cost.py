"""What a wider embedding costs an index: one model file (an ensemble, or a reduced one) against one member,
over the 102,980 challenge molecules, per index kind: recall@10 against the exact search of the same
embeddings (tie-aware), recall@10 of the true top-10 of the exact ensemble (for a reduced file), RAM per
molecule of the index, disk per molecule of a shard folder (float16 embeddings + ids + SMILES), and the
search latency of one query (1 thread; the text encoding excluded). Figures per 10^7 molecules are these
per-molecule figures times 10^7 (the index's RAM grows with n; IVF centroids are negligible there).

    python bench/ensemble_cost.py --models runs/recipe/model.pt runs/recipe/feat-nomorgan-1/best.pt \
        --exact-of runs/recipe/model.pt --cache-dir /tmp/libcache

The library embeddings come from (or go to) the library cache of ``--cache-dir``.  A measurement, not a test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"
K = 10


def recall(idx: np.ndarray, scores_exact: np.ndarray, truth: np.ndarray) -> float:
    """Tie-aware recall@10: share of returned molecules whose exact score reaches the exact 10th."""
    kth = truth[:, K - 1:K] - 1e-6
    return float(((scores_exact >= kth) & (idx >= 0)).sum() / (K * len(idx)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="checkpoints or model files to compare")
    p.add_argument("--exact-of", help="the model whose exact top-10 is also the reference (e.g. the exact "
                                      "ensemble, for a reduced one)")
    p.add_argument("--library", default=str(DATA / "raw.zip"))
    p.add_argument("--val", default=str(DATA / "val.tsv"))
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--latency-queries", type=int, default=100)
    p.add_argument("--json")
    args = p.parse_args(argv)

    import faiss
    from threadpoolctl import threadpool_limits
    from molret.data.challenge import read_pairs_tsv
    from molret.library.caches import library_embeddings
    from molret.models.embedder import load_embedder
    from molret.search.ann import AnnIndex, IndexParams, set_threads
    _, texts = read_pairs_tsv(args.val)
    rows, reference = [], None
    models = ([args.exact_of] if args.exact_of and args.exact_of not in args.models else []) + list(args.models)
    for path in models:
        embedder = load_embedder(path, "cpu")
        lib = library_embeddings(args.library, embedder, cache_dir=args.cache_dir, progress=True)
        emb, n, dim = lib.embeddings, len(lib.embeddings), lib.embeddings.shape[1]
        q = embedder.encode_texts(texts)
        exact_scores = q.astype(np.float64) @ emb.T.astype(np.float64)
        truth = -np.sort(-exact_scores, axis=1)[:, :K]
        if path == args.exact_of:
            reference = np.argsort(-exact_scores, axis=1, kind="stable")[:, :K]
        ids_smiles = sum(len(i) + 1 for i in lib.library.ids) + sum(len(s or "") + 1 for s in lib.library.smiles)
        disk = 2 * dim + 8 + ids_smiles / n     # float16 row + row number + its lines of ids and SMILES
        for kind, params in (("exact", IndexParams()), ("ivfpq", IndexParams(pq_m=64)),
                             ("ivfpq", IndexParams(pq_m=32)), ("hnsw", IndexParams(codec="sq8"))):
            if kind == "ivfpq" and dim % params.pq_m:
                continue
            set_threads(2)
            with threadpool_limits(2):
                ann = AnnIndex(emb, kind, params)
                s, idx = ann.search(q, K)
            got = np.take_along_axis(exact_scores, np.maximum(idx, 0), axis=1)
            row = {"model": str(path), "dim": dim, "n": n, "index": kind + (f" m{params.pq_m}" if kind == "ivfpq"
                                                                           else ""),
                   "recall10": recall(idx, got, truth), "ram_bytes_per_mol": ann.memory_bytes / n,
                   "disk_bytes_per_mol": disk, "build_s": round(ann.build_seconds, 1)}
            if reference is not None and path != args.exact_of:
                row["recall10_of_exact_ensemble"] = float(np.mean([len(set(a) & set(b)) / K
                                                                    for a, b in zip(idx, reference)]))
            times = []
            set_threads(1)
            with threadpool_limits(1):
                ann.search(q[:1], K)
                for i in range(min(args.latency_queries, len(q))):
                    t0 = time.perf_counter()
                    ann.search(q[i:i + 1], K)
                    times.append(time.perf_counter() - t0)
            row["p50_ms_1thread"] = statistics.median(times) * 1e3
            rows.append(row)
            print(json.dumps(row), flush=True)
            del ann
    faiss.omp_set_num_threads(2)
    print("| model | dim | index | recall@10 | RAM B/mol | disk B/mol (shard folder) | p50 ms (1 thread) | "
          "per 10^7: RAM / disk |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = f" (of the exact ensemble: {r['recall10_of_exact_ensemble']:.3f})" \
            if "recall10_of_exact_ensemble" in r else ""
        print(f"| {Path(r['model']).parent.name}/{Path(r['model']).name} | {r['dim']} | {r['index']} | "
              f"{r['recall10']:.3f}{extra} | {r['ram_bytes_per_mol']:.0f} | {r['disk_bytes_per_mol']:.0f} | "
              f"{r['p50_ms_1thread']:.1f} | {r['ram_bytes_per_mol'] * 1e7 / 2**30:.1f} / "
              f"{r['disk_bytes_per_mol'] * 1e7 / 2**30:.1f} GiB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
