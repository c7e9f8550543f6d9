"""Approximate-index benchmark for libraries of millions: recall@10 against
exact search, per-query latency (one query at a time, 1 and 2 threads) and
memory per molecule of exact / ivf / ivfpq / hnsw (molret.search.ann), on

* ``real``: a shard folder of the 102,980 challenge molecules (written by
  ``embed_library.py``; the val queries' text embeddings as queries);
* ``sim``: a simulated library of ``--sim-size`` (10^7) molecules: row r is
  the real embedding r % 102,980 plus isotropic Gaussian noise of norm
  ~``--sim-noise`` (per-dimension sd noise / sqrt(D)), renormalised, stored
  float16 in one memory-mapped .npy (the first 102,980 rows are the real
  embeddings themselves); the same real val queries.  HNSW is measured on
  its first ``--hnsw-sim-size`` rows (float32 vectors) and on all rows
  (8-bit vectors, to fit in memory).

    nice -n 19 python bench/index_bench.py --model /tmp/i13runs/m/best.pt --shards /tmp/i13shards \
        --work /tmp/i13bench --phase real --phase sim

Recall@10 is tie-aware: a returned molecule counts when its exact score is
at least the exact 10th score (the 102,980 molecules hold identical graphs,
which tie exactly).  Latency is the search only (index + exact rescoring of
the candidates from the memory-mapped embeddings), not the text encoding;
each figure comes with the load averages measured around it.  Results go
to ``<work>/index_bench.json`` and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from molret.search.ann import AnnIndex, IndexParams, open_index, set_threads  # noqa: E402
from molret.library.shard_folder import open_shard_folder  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "altegrad"
K = 10


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def query_embeddings(model_path: str, work: Path, val: Path) -> np.ndarray:
    path = work / "val_queries.npy"
    if path.is_file():
        return np.load(path)
    import torch
    from molret.models.embedder import load_embedder
    from molret.data.challenge import read_pairs_tsv
    torch.set_num_threads(2)
    _, texts = read_pairs_tsv(val)
    q = load_embedder(model_path, torch.device("cpu")).encode_texts(texts)
    np.save(path, q)
    return q


def recall_at_k(got_idx: np.ndarray, got_scores_exact: np.ndarray, truth_scores: np.ndarray) -> float:
    """Tie-aware recall@k: share of the returned molecules whose exact score reaches the exact k-th."""
    kth = truth_scores[:, K - 1:K] - 1e-6
    return float(((got_scores_exact >= kth) & (got_idx >= 0)).sum() / (K * len(got_idx)))


def latency(ann: AnnIndex, q: np.ndarray, threads: int, n: int) -> dict:
    from threadpoolctl import threadpool_limits
    set_threads(threads)
    times = []
    with threadpool_limits(threads):
        ann.search(q[:1], K)  # warm-up
        for i in range(min(n, len(q))):
            t0 = time.perf_counter()
            ann.search(q[i:i + 1], K)
            times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    return {"p50_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)), "queries": len(t),
            "load": loadavg()}


def label(kind: str, p: IndexParams) -> str:
    if kind == "hnsw":
        return f"hnsw M {p.hnsw_m} {p.codec} ef_search {p.ef_search}"
    if kind == "ivfpq":
        return f"ivfpq nlist {p.nlist} m {p.pq_m} nprobe {p.nprobe} rerank {p.rerank}"
    return f"ivf nlist {p.nlist} {p.codec} nprobe {p.nprobe}"


def add_row(results: list, row: dict) -> None:
    """Append ``row``, replacing an earlier one of the same library and setting (reruns of one step)."""
    results[:] = [r for r in results if (r["library"], r["setting"]) != (row["library"], row["setting"])]
    results.append(row)
    print(json.dumps(row), flush=True)


def measure(name: str, ann: AnnIndex, q: np.ndarray, truth: tuple, n_lat: int, results: list, extra: dict) -> None:
    from threadpoolctl import threadpool_limits
    load0 = loadavg()
    set_threads(2)
    with threadpool_limits(2):
        s, i = ann.search(q, K)
    rec = recall_at_k(i, s, truth[0])
    row = {"setting": name, "kind": ann.kind, "n": ann.n, "recall10": rec, "load_recall": load0,
           "bytes_per_mol": getattr(ann, "analytic_bytes", None) or ann.memory_bytes / ann.n, "build_s": round(ann.build_seconds, 1), **extra}
    for threads in (1, 2):
        row[f"t{threads}"] = latency(ann, q, threads, n_lat)
    add_row(results, row)


def exact_truth(emb, q: np.ndarray) -> tuple:
    from threadpoolctl import threadpool_limits
    set_threads(2)
    with threadpool_limits(2):
        ex = AnnIndex(emb, "exact")
        t0 = time.perf_counter()
        s, i = ex.search(q, K)
    return s, i, ex, time.perf_counter() - t0


def run_real(args, q: np.ndarray, results: list) -> None:
    lib = open_shard_folder(args.shards)
    print(f"real: {len(lib):,} molecules, {lib.embeddings.dtype}, load {loadavg()}", flush=True)
    s, i, ex, secs = exact_truth(lib.embeddings, q)
    measure("exact (FAISS flat, float32 copy)", ex, q, (s, i), args.latency_queries, results, {"library": "real"})
    for kind, params, sweep in (
            ("ivf", IndexParams(nlist=1024, codec="flat"), [("nprobe", v) for v in (8, 16, 32, 64)]),
            ("ivfpq", IndexParams(nlist=1024, pq_m=32, rerank=8), [("nprobe", v) for v in (16, 32, 64)]),
            ("ivfpq", IndexParams(nlist=1024, pq_m=64, rerank=8), [("nprobe", v) for v in (32,)]),
            ("hnsw", IndexParams(hnsw_m=32, ef_construction=80, codec="flat"),
             [("ef_search", v) for v in (32, 64, 128, 256)])):
        set_threads(2)
        ann = open_index(lib.folder, lib.embeddings, kind, params, signature=lib.meta["signature"], order=lib.rows)
        for field, value in sweep:
            setattr(ann.params, field, value)
            ann.apply_search_params()
            measure(label(kind, ann.params), ann, q, (s, i), args.latency_queries, results,
                    {"library": "real", "build_s": round(ann.build_seconds, 1)})
        del ann


def simulate(args, work: Path) -> Path:
    """The simulated library (float16 .npy), written once in chunks."""
    path = work / f"sim-{args.sim_size}.npy"
    if path.is_file():
        return path
    real = np.asarray(open_shard_folder(args.shards).embeddings, dtype=np.float32)
    n, d = args.sim_size, real.shape[1]
    rng = np.random.default_rng(0)
    tmp = work / f".sim-{args.sim_size}.npy.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, d))
    t0 = time.perf_counter()
    for start in range(0, n, len(real)):
        m = min(len(real), n - start)
        block = real[:m].copy()
        if start:
            block += rng.standard_normal((m, d), dtype=np.float32) * (args.sim_noise / np.sqrt(d))
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + m] = block
    out.flush()
    del out
    os.replace(tmp, path)
    print(f"simulated {n:,} x {d} float16 in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
    return path


def run_sim(args, q: np.ndarray, results: list, work: Path) -> None:
    path = simulate(args, work)
    emb = np.load(path, mmap_mode="r")
    n = len(emb)
    print(f"sim: {n:,} molecules, load {loadavg()}", flush=True)
    truth_path = work / f"sim-{n}-truth.npz"
    if truth_path.is_file():
        z = np.load(truth_path)
        s, i = z["s"], z["i"]
        ex = AnnIndex(emb, "exact")
    else:
        s, i, ex, secs = exact_truth(emb, q)
        np.savez(truth_path, s=s, i=i)
        print(f"exact truth for {len(q)} queries in {secs:.0f} s", flush=True)
    if args.exact_sim_queries:
        row = {"setting": "exact (chunked scan of the float16 memmap)", "kind": "exact", "n": n, "recall10": 1.0,
               "bytes_per_mol": 0.0, "library": "sim", "note": "embeddings: 512 B/molecule in the page cache"}
        for threads in (1, 2):
            row[f"t{threads}"] = latency(ex, q, threads, args.exact_sim_queries)
        add_row(results, row)
    nl, ts = args.sim_nlist, 200_000
    steps = (("ivfpq", n, IndexParams(nlist=nl, pq_m=64, rerank=8, train_size=ts),
              [{"nprobe": p, "rerank": r} for p, r in ((16, 8), (32, 8), (64, 8), (64, 32), (64, 64), (32, 32))]),
             ("ivfpq", n, IndexParams(nlist=nl, pq_m=32, rerank=8, train_size=ts),
              [{"nprobe": p, "rerank": r} for p, r in ((32, 8), (64, 8), (64, 32))]),
             ("hnsw", args.hnsw_sim_size, IndexParams(hnsw_m=32, ef_construction=80, codec="flat"),
              [{"ef_search": v} for v in (64, 128, 256, 512)]),
             ("ivf", n, IndexParams(nlist=nl, codec="fp16", train_size=ts), [{"nprobe": v} for v in (16, 32, 64)]),
             ("hnsw", n, IndexParams(hnsw_m=32, ef_construction=80, codec="sq8"),
              [{"ef_search": v} for v in (64, 128, 256)]))
    for step, (kind, size, params, sweep) in enumerate(steps):
        if str(step) not in args.sim_steps:
            continue
        sub, truth_sub = (emb, (s, i)) if size >= n else (emb[:size], exact_truth(emb[:size], q)[:2])
        set_threads(2)
        t0 = time.perf_counter()
        if kind == "ivf" and args.ivf_from_ivfpq:  # reuse step 0's stored IVF-PQ lists
            pq = open_index(work, emb, "ivfpq", steps[0][2], signature=f"sim-{n}-{args.sim_noise}", build=False)
            ann = ivf_from_ivfpq(pq, emb, params.codec)
            ann.analytic_bytes /= n
            del pq
        else:
            ann = open_index(work, sub, kind, params, signature=f"sim-{size}-{args.sim_noise}", progress=True)
        print(f"{kind}: built/opened in {time.perf_counter() - t0:.0f} s, load {loadavg()}", flush=True)
        for setting in sweep:
            for field, value in setting.items():
                setattr(ann.params, field, value)
            ann.apply_search_params()
            measure(label(kind, ann.params), ann, q, truth_sub, args.latency_queries, results,
                    {"library": "sim" if size >= n else f"sim-{size}", "build_s": round(ann.build_seconds, 1)})
        del ann


def ivf_from_ivfpq(pq: AnnIndex, emb, codec: str) -> AnnIndex:
    """An IVF-``codec`` index with the IVF-PQ index's trained coarse quantizer and list
    assignment (the k-means and the 10^7 assignments, most of an IVF build here, are not redone)."""
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned
    from molret.search.ann import normalise_rows
    src = faiss.extract_index_ivf(pq.index)
    quantizer = faiss.clone_index(faiss.downcast_index(src.quantizer))
    sq = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}[codec]
    index = faiss.IndexIVFScalarQuantizer(quantizer, src.d, src.nlist, sq, faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()
    t0 = time.perf_counter()
    index.train(normalise_rows(np.asarray(emb[:100_000], dtype=np.float32)))  # the scalar quantizer only
    inv = src.invlists
    for lst in range(src.nlist):
        size = inv.list_size(lst)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(inv.get_ids(lst), size).copy()
        order = np.argsort(ids)
        ids = ids[order]
        add_preassigned(index, normalise_rows(np.asarray(emb[ids], dtype=np.float32)), np.full(size, lst, np.int64), ids)
    ann = AnnIndex(emb, "ivf", IndexParams(nlist=src.nlist, codec=codec), faiss_index=index)
    ann.build_seconds = time.perf_counter() - t0
    ann.analytic_bytes = index.ntotal * (index.code_size + 8) + src.nlist * src.d * 4
    return ann


def table(results: list) -> str:
    lines = ["| library | index | recall@10 | p50 / p95 ms, 1 thread | p50 / p95 ms, 2 threads | RAM B/molecule "
             "| build s | load (1/5/15 min) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['library']} ({r['n']:,}) | {r['setting']} | {r['recall10']:.3f} | "
                     f"{r['t1']['p50_ms']:.1f} / {r['t1']['p95_ms']:.1f} | {r['t2']['p50_ms']:.1f} / "
                     f"{r['t2']['p95_ms']:.1f} | {r['bytes_per_mol']:.0f} | {r.get('build_s', '-')} | "
                     f"{r['t1']['load']} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint that embedded --shards (encodes the val queries)")
    p.add_argument("--shards", required=True, help="shard folder of the real library (embed_library.py --out)")
    p.add_argument("--work", default="/tmp/i13bench", help="folder for the simulation, its indexes and results")
    p.add_argument("--val", default=str(DATA / "val.tsv"))
    p.add_argument("--phase", action="append", choices=["real", "sim"], help="what to measure (repeatable)")
    p.add_argument("--sim-size", type=int, default=10_000_000)
    p.add_argument("--sim-noise", type=float, default=0.2,
                   help="norm of the noise added to each copy (0.2: copy-original cosine ~0.98, the median cosine "
                        "of a real molecule with its 10th nearest real neighbour)")
    p.add_argument("--sim-nlist", type=int, default=2048)
    p.add_argument("--sim-steps", nargs="+", default=["0", "1", "2", "3", "4"],
                   help="sim indexes to measure: 0 ivfpq m64, 1 ivfpq m32, 2 hnsw on --hnsw-sim-size rows, "
                        "3 ivf fp16, 4 hnsw sq8 on all rows")
    p.add_argument("--hnsw-sim-size", type=int, default=1_000_000)
    p.add_argument("--ivf-from-ivfpq", action="store_true",
                   help="sim: build the IVF index from the stored IVF-PQ index's coarse lists (no second k-means "
                        "and assignment of 10^7 rows; its build time then excludes those)")
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--exact-sim-queries", type=int, default=3)
    args = p.parse_args(argv)
    for name in ("sim_size", "sim_nlist", "hnsw_sim_size", "latency_queries", "exact_sim_queries"):
        if getattr(args, name) < (0 if name == "exact_sim_queries" else 1):
            p.error(f"--{name.replace('_', '-')} out of range")
    if not args.sim_noise >= 0:
        p.error("--sim-noise must be >= 0")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    q = query_embeddings(args.model, work, Path(args.val))
    out = work / "index_bench.json"
    results = json.loads(out.read_text()) if out.is_file() else []
    for phase in args.phase or ["real", "sim"]:
        (run_real(args, q, results) if phase == "real" else run_sim(args, q, results, work))
        out.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
