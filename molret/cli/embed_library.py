"""Command line of embed_library.py: embed a library's shards (one, or all distributed), index and search them.

    python embed_library.py --model CKPT --library FILE --out DIR --shard I/N [--dtype float16]
    python embed_library.py --model CKPT --library FILE --out DIR --shards N [--cluster auto|ADDRESS] [--workers K]
    python embed_library.py index --out DIR --index auto|exact|ivf|ivfpq|hnsw [--nlist ...]
    python embed_library.py search --out DIR --model CKPT [--index auto] -k 10 "query" ...
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from molret.cli.common import add_distribute_args, add_index_args, distribute_options, index_options
from molret.search.opening import open_folder_index
from molret.utils.errors import MolretError

EPILOG = """\
Shard I of N takes the records whose number r (0-based in library order, invalid rows included)
has r % N == I, streaming the file (a 10^7-line SMILES file is never held in memory).

Every shard at once: --shards N schedules them on Ray (a local Ray started for the run; a cluster
with --cluster auto|ray://HOST:10001 or RAY_ADDRESS), each worker loading the model once; without
Ray installed, a local process pool writes the same files. --gpus-per-worker 0.5 puts two workers
on each GPU. By hand, one shard per process, anywhere that sees DIR:

  for i in 0 1; do OMP_NUM_THREADS=1 nice python embed_library.py --model best.pt --library lib.smi \\
      --out lib.shards --shard $i/2 --threads 1 & done; wait

or on N GPUs: CUDA_VISIBLE_DEVICES=$i ... --device cuda --shard $i/N (OMP_NUM_THREADS=1, as Ray sets
for its workers: by-hand shards were much slower without it; docs/experiments.md, "Libraries of millions").
A finished shard is skipped on a rerun; a killed one left nothing but .*.tmp files and is redone (a
worker that dies is replaced and its shard redone). Then `embed_library.py index --out DIR` builds
and stores the approximate index once, and `embed_library.py search` uses it.
"""


def _positive(name: str, value, low: int = 1, high: int | None = None):
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high:,}" if high is not None else f">= {low}"
        raise MolretError(f"{name} must be {bound}, got {value}")


def embed_parser() -> argparse.ArgumentParser:
    from molret.cli.common import add_library_args
    from molret.library.shards import CHUNK_SIZE, DTYPES
    p = argparse.ArgumentParser(
        prog="embed_library.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Embed a molecule library (one shard, or every shard distributed) into a shard folder "
                    "(memory-mapped .npy per shard, a manifest per shard). Subcommands: `index` (build the folder's "
                    "ANN index), `search`.")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="checkpoint written by main.py, or an ensemble's model file (recipe.py's model.pt)")
    p.add_argument("--library", required=True, metavar="FILE",
                   help="SMILES library (.smi/.csv/.tsv/.sdf[.gz]) or graph library (raw.zip, folder of .graph "
                        "files, or a folder with raw/ or raw.zip)")
    p.add_argument("--out", required=True, metavar="DIR", help="shard folder (shared by all shards of one embedding)")
    p.add_argument("--shard", metavar="I/N", help="embed this one shard here (default 0/1: the whole library)")
    p.add_argument("--shards", type=int, metavar="N",
                   help="embed every shard of N, scheduled on Ray (a local Ray unless --cluster or RAY_ADDRESS; "
                        "without Ray installed, a local process pool): each worker loads the model once")
    add_distribute_args(p)
    p.add_argument("--dtype", default="float16", choices=DTYPES,
                   help="stored embedding type (float16: half the disk and page cache, ~1e-3 score error)")
    p.add_argument("--batch-size", type=int, help="graph batch size (default: the model's eval batch size)")
    p.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="molecules parsed and embedded at a time")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default; with --shards: per worker, 0 meaning 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_library_args(p)
    return p


def _add_folder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="shard folder written by embed_library.py")
    add_index_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def index_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="embed_library.py index", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Build a shard folder's nearest-neighbour index once and store it there "
                                            "(reopened by `search` without rebuilding). With --cluster, --workers or "
                                            "--engine, an ivf / ivfpq index is trained once on a sample, filled per "
                                            "shard in parallel (each part saved, skipped when present) and merged "
                                            "into the index the single-process build writes.")
    _add_folder_args(p)
    add_distribute_args(p)
    return p


def search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="embed_library.py search", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Search a shard folder with text queries (its stored index, built when "
                                            "missing).")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="query text(s)")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="the checkpoint (or ensemble model file) that embedded the folder")
    p.add_argument("--queries-file", metavar="FILE", help="more queries, one per line")
    p.add_argument("-k", "--top-k", type=int, default=10, help="molecules per query")
    p.add_argument("--query-threads", type=int, default=1, help="torch threads for encoding the queries")
    _add_folder_args(p)
    return p


def run_embed(args) -> dict:
    import torch
    from molret.models.embedder import load_embedder
    from molret.library.reading import library_kind
    from molret.cli.common import reader_options
    from molret.library.shards import MAX_SHARDS, embed_shard, parse_shard_spec
    from molret.models.encoding import pick_device
    if args.shards is not None and args.shard is not None:
        raise MolretError("give --shard I/N (one shard here) or --shards N (every shard, distributed), not both")
    _positive("--shards", args.shards, 1, MAX_SHARDS)
    _positive("--batch-size", args.batch_size)
    _positive("--chunk-size", args.chunk_size, 1, 10_000_000)
    _positive("--threads", args.threads, 0, 1024)
    if args.shards is not None:
        return run_embed_distributed(args)
    index, count = parse_shard_spec(args.shard or "0/1")
    library_kind(args.library)  # a missing library fails before the model is loaded
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    embedder = load_embedder(args.model, device)
    res = embed_shard(args.library, args.out, index, count, embedder, dtype=args.dtype,
                      options=reader_options(args), batch_size=args.batch_size,
                      chunk_size=args.chunk_size, progress=not args.no_progress and sys.stderr.isatty())
    if res.skipped:
        print(f"shard {index}/{count} already finished in {res.folder}: {res.count:,} molecules "
              f"({res.invalid} invalid); nothing recomputed", file=sys.stderr)
    else:
        print(f"shard {index}/{count}: {res.count:,} molecules embedded in {res.seconds:.1f} s "
              f"({res.rate:,.0f} molecules/s), {res.invalid} invalid skipped -> {res.folder}", file=sys.stderr)
        for msg in res.invalid_examples[:5]:
            print(f"  skipped: {msg}", file=sys.stderr)
    return {"result": res}


def run_embed_distributed(args) -> dict:
    """Every shard of --shards N on the engine of the distribute flags (Ray or local processes)."""
    from molret.cli.common import reader_options
    from molret.library.reading import library_kind
    from molret.library.shard_jobs import EmbedShardsJob, embed_all_shards
    dist = distribute_options(args, max(args.threads, 1))
    library_kind(args.library)
    if not Path(args.model).is_file():
        raise MolretError(f"--model {args.model} does not exist")
    device = "cuda" if dist.gpus_per_worker > 0 else args.device
    job = EmbedShardsJob(str(Path(args.model).resolve()), str(Path(args.library).resolve()),
                         str(Path(args.out).resolve()), args.shards, args.dtype, reader_options(args),
                         args.batch_size, args.chunk_size, device, max(args.threads, 1))
    run = embed_all_shards(job, dist, progress=not args.no_progress and sys.stderr.isatty())
    done = [run.results[i] for i in range(args.shards)]
    computed = [r for r in done if not r.skipped]
    molecules = sum(r.count for r in done)
    how = ("(no worker started)" if not run.workers else f"on {run.workers} local processes"
           if run.engine != "ray" else f"on Ray ({run.workers} workers, started in {run.start_seconds:.1f} s)")
    redo = f", {run.retries} redone after a worker died" if run.retries else ""
    print(f"{args.shards} shards in {Path(args.out)}: {molecules:,} molecules, {sum(r.invalid for r in done)} invalid "
          f"skipped; {len(computed)} embedded now, {len(done) - len(computed)} already finished{redo}; "
          f"{run.seconds:.1f} s {how}", file=sys.stderr)
    return {"run": run, "results": done}


def run_index(args) -> dict:
    t0 = time.perf_counter()
    options = index_options(args)
    progress = not args.no_progress and sys.stderr.isatty()
    if args.cluster is not None or args.workers > 0 or args.engine != "auto":
        from molret.library.shard_folder import open_shard_folder
        from molret.search.ann import set_threads
        from molret.search.index_parts import build_in_parts
        dist = distribute_options(args, max(options.threads, 1))
        lib = open_shard_folder(args.out)
        set_threads(options.threads)
        ann, run = build_in_parts(lib, options.kind, options.params, dist, progress)
        if run is not None:
            ann.build_seconds, ann.load_seconds = time.perf_counter() - t0, 0.0
            print(f"{lib.folder}: {ann.kind} index filled in {len(run.results)} parts on "
                  f"{'Ray' if run.engine == 'ray' else 'local processes'} ({run.workers} workers) and merged",
                  file=sys.stderr)
    else:
        lib, ann = open_folder_index(args.out, options, progress)
    how = f"built in {ann.build_seconds:.1f} s" if not getattr(ann, "load_seconds", 0) else "already stored"
    where = f" -> {ann.stored_path}" if getattr(ann, "stored_path", None) else " (exact: nothing to store)"
    print(f"{lib.folder}: {len(lib):,} molecules, index {ann.kind} {how}{where}, "
          f"{ann.memory_bytes / max(len(lib), 1):.0f} bytes/molecule in RAM ({time.perf_counter() - t0:.1f} s)",
          file=sys.stderr)
    return {"library": lib, "index": ann}


def run_search(args) -> dict:
    from molret.api.retriever import MolRetriever
    from molret.search.engine import Hit, torch_threads
    from molret.cli.search import format_hits, read_query_lines, stereo_footnote
    queries = list(args.queries) + (read_query_lines(args.queries_file) if args.queries_file else [])
    queries = [q for q in queries if q.strip()]
    if not queries:
        raise MolretError("no query: give query text(s) or --queries-file")
    _positive("-k", args.top_k, 1, 100_000)
    _positive("--query-threads", args.query_threads, 0, 1024)
    if not Path(args.out).is_dir():
        raise MolretError(f"shard folder {args.out} does not exist")
    retriever = MolRetriever.from_checkpoint(args.model, "cpu")
    lib, ann = open_folder_index(args.out, index_options(args), not args.no_progress and sys.stderr.isatty(),
                                 retriever.model_key, args.model)
    t0 = time.perf_counter()
    with torch_threads(args.query_threads):
        q = retriever.encode_text(queries)
    scores, idx = ann.search(q, args.top_k)
    seconds = time.perf_counter() - t0
    results = []
    for n, query in enumerate(queries):
        hits = [Hit(r + 1, int(j), lib.ids[int(j)], lib.smiles[int(j)] or None, float(s),
                    bool(lib.meta.get("smiles_decoded") and lib.smiles[int(j)]))
                for r, (j, s) in enumerate(zip(idx[n], scores[n])) if j >= 0]
        results.append(hits)
        print(("\n" if n else "") + format_hits(query, hits, n + 1))
    note = stereo_footnote(results)
    if note:
        print(note)
    print(f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'} over {len(lib):,} molecules ({ann.kind}) in "
          f"{seconds * 1e3:.0f} ms (text encoding + search)", file=sys.stderr)
    return {"queries": queries, "results": results, "library": lib, "index": ann}


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "index":
        return run_index(index_parser().parse_args(argv[1:]))
    if argv and argv[0] == "search":
        return run_search(search_parser().parse_args(argv[1:]))
    return run_embed(embed_parser().parse_args(argv))
