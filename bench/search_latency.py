"""Library search timings: embedding a whole library, index build, per-query
latency (text encoding + search) and a worked example with the rank of the
true molecule.

    python bench/search_latency.py --model /tmp/h3runs/s/best.pt \
        --library /work/shared/data/altegrad/raw.zip --cache-dir /tmp/h3cache --recompute

--recompute drops this model's cached library embeddings first so that the
embedding time is measured (the parsed library, model-independent, stays
cached unless --reparse).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from molret.models.embedder import load_embedder  # noqa: E402
from molret.data.challenge import read_pairs_tsv  # noqa: E402
from molret.library import reading as L  # noqa: E402
from molret.library import caches as LC  # noqa: E402
from molret.search import engine as S  # noqa: E402
from molret.models.encoding import pick_device  # noqa: E402

DATA = Path("/work/shared/data/altegrad")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--library", default=str(DATA / "raw.zip"))
    p.add_argument("--val", default=str(DATA / "val.tsv"), help="cid<TAB>text queries with their true molecule")
    p.add_argument("--cache-dir")
    p.add_argument("--device", default="cpu")
    p.add_argument("--queries", type=int, default=50, help="queries timed one at a time")
    p.add_argument("--example", type=int, default=1, help="line of --val used for the worked example")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch threads for embedding the library (0: default)")
    p.add_argument("--query-threads", type=int, default=S.QUERY_THREADS, help="torch threads for query encoding")
    p.add_argument("--recompute", action="store_true", help="drop this model's cached embeddings first")
    p.add_argument("--reparse", action="store_true", help="also drop the parsed-library cache")
    p.add_argument("--names", action="store_true",
                   help="also time one query with the names fused (every molecule scored exactly; the model file's "
                        "name weights, else the defaults)")
    p.add_argument("--smiles-map", nargs="*", default=["/work/shared/data/chebi20/validation.txt",
                                                       "/work/shared/data/chebi20/test_smiles.tsv"])
    args = p.parse_args(argv)

    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()} (queries: {args.query_threads or 'default'}), "
          f"device: {args.device}")
    device = pick_device(args.device)
    embedder = load_embedder(args.model, device)   # a checkpoint or an ensemble's model file
    folder = L.library_cache_dir(args.library, args.cache_dir)
    mkey = LC.embedder_key(embedder)
    if args.recompute:
        (folder / f"emb-{mkey[:16]}.npz").unlink(missing_ok=True)
    if args.reparse:
        (folder / "library.npz").unlink(missing_ok=True)

    t0 = time.perf_counter()
    lib = LC.library_embeddings(args.library, embedder, cache_dir=args.cache_dir, progress=sys.stderr.isatty())
    first = time.perf_counter() - t0
    n = len(lib.library)
    if lib.cached:
        print(f"library embeddings were cached (run with --recompute to time them); stored timing: ", end="")
    print(f"embedded {n:,} molecules in {lib.seconds:.1f} s = {n / lib.seconds:,.0f} molecules/s "
          + (f"[CPU time {lib.cpu_seconds:.0f} s, {torch.get_num_threads()} threads] " if lib.cpu_seconds else "") +
          f"(parsing the library {lib.parse_seconds:.1f} s; whole first open {first:.1f} s; "
          f"{lib.library.invalid} invalid; {lib.num_unknown} atoms with unknown substructures)")
    t0 = time.perf_counter()
    lib2 = LC.library_embeddings(args.library, embedder, cache_dir=args.cache_dir)
    assert lib2.cached
    print(f"reopening from the cache ({lib2.cache_path}): {time.perf_counter() - t0:.2f} s")

    smiles_map = {}
    for path in args.smiles_map:
        if Path(path).exists():
            for ident, smi in L.read_smiles_map(path).items():
                smiles_map.setdefault(ident, smi)
    engines = {}
    for backend in ("numpy", "faiss"):
        engines[backend] = S.LibrarySearch(embedder, lib2, backend, smiles_map, args.query_threads)
        print(f"index build ({backend}): {engines[backend].index.build_seconds * 1e3:.1f} ms")

    cids, texts = read_pairs_tsv(args.val)
    timed = texts[: args.queries]
    for backend, eng in engines.items():
        for q in timed[:3]:  # warm-up
            eng.search([q], args.k)
        enc, srch, total, cpu = [], [], [], []
        for q in timed:
            c0 = time.process_time()
            t0 = time.perf_counter()
            e = eng.encode([q])
            t1 = time.perf_counter()
            eng.index.search(e, args.k)
            t2 = time.perf_counter()
            cpu.append(time.process_time() - c0)
            enc.append(t1 - t0)
            srch.append(t2 - t1)
            total.append(t2 - t0)
        print(f"one query, {backend}: median {statistics.median(total) * 1e3:.1f} ms wall "
              f"(text encoding {statistics.median(enc) * 1e3:.1f} ms + search {statistics.median(srch) * 1e3:.1f} ms; "
              f"p90 {np.percentile(total, 90) * 1e3:.1f} ms; CPU time {statistics.median(cpu) * 1e3:.1f} ms) "
              f"over {len(timed)} queries, k={args.k}, N={n:,}")
    if args.names:
        eng = engines["faiss"]
        if eng.enable_names(embedder.fusion.names_weights, cache_dir=args.cache_dir):
            for q in timed[:3]:  # warm-up (OPSIN's start)
                eng.search([q], args.k)
            total = []
            for q in timed:
                t0 = time.perf_counter()
                eng.search([q], args.k)
                total.append(time.perf_counter() - t0)
            print(f"one query with names: median {statistics.median(total) * 1e3:.1f} ms wall (p90 "
                  f"{np.percentile(total, 90) * 1e3:.1f} ms) over {len(timed)} queries, k={args.k}, N={n:,}")
            eng.names = None
        else:
            print("names: no name source here")
    a, b = engines["numpy"], engines["faiss"]
    qe = a.encode(timed)
    same = (a.index.search(qe, args.k)[1] == b.index.search(qe, args.k)[1]).all()
    print(f"load while measuring (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"numpy and faiss top-{args.k} identical on {len(timed)} queries: {bool(same)}")

    # Worked example.
    i = args.example - 1
    cid, text = cids[i], texts[i]
    eng = engines["faiss"]
    e = eng.encode([text])
    hits = eng.search([text], 5, query_emb=e)[0]
    rank, score, ties = eng.rank_of(e, cid)
    print(f"\nworked example: {Path(args.val).name} line {args.example}, true CID {cid}")
    print(f"query: {text}")
    for h in hits:
        print(f"  {h.rank:>2}  {h.id:<10} {h.score:.4f}  {h.smiles or '-'}")
    print(f"rank of the true molecule {cid}: {rank} of {n:,} (score {score:.4f}; {ties} other molecules have exactly "
          f"this score, i.e. the same graph, e.g. stereoisomers)")

    # All val queries against the whole library.
    pos = np.array([eng.position(c) for c in cids])
    qe = eng.encode(texts)
    ranks = []
    for s in range(0, len(qe), 100):  # float32 matrix; exact ties counted in the true molecule's favour
        sims = eng.index.scores(qe[s:s + 100])
        true = sims[np.arange(len(sims)), pos[s:s + 100]]
        ranks += ((sims > true[:, None]).sum(axis=1) + 1).tolist()
    ranks = np.array(ranks)
    print(f"all {len(ranks)} {Path(args.val).name} queries vs {n:,} molecules (ties in favour): median rank {np.median(ranks):.0f}, "
          f"MRR {np.mean(1 / ranks):.3f}, top-1 {np.mean(ranks == 1):.1%}, top-10 {np.mean(ranks <= 10):.1%}, "
          f"top-100 {np.mean(ranks <= 100):.1%}")


if __name__ == "__main__":
    main()
