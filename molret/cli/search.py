"""The command line of search.py: flags, opening the engine from a
checkpoint and a library, and the printed (and HTML) report of the results."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from molret.utils.errors import MolretError
from molret.search.render import html_report
from molret.search.index import BACKENDS, FAISS_AUTO_THRESHOLD
from molret.utils.files import atomic_write_text
from molret.library.reading import library_kind
from molret.api.retriever import MolRetriever, SearchOptions
from molret.search.engine import HUBNESS_TEMPERATURE, QUERY_THREADS, Hit, LibrarySearch
from molret.cli.flags import add_claims_arg, add_names_arg, choices_help
from molret.cli.common import (add_index_args, add_inference_args, add_library_args, index_options, inference_device,
                               reader_options)
from molret.library.shard_folder import is_shard_folder

# --hubness: each choice and what it does (the flag's choices and help are made from it)
HUBNESS = {"none": "the library's scores as they are",
           "isoftmax": "inverted-softmax correction against a bank of queries: molecules close to many bank queries "
                       "lose score"}

CLAIMS_DEFAULT = ("default: stored when the model file carries a claims scorer (on a library file: every molecule "
                  "is then scored exactly), none otherwise")

EPILOG = """\
--library may also be a shard folder written by embed_library.py (a library of millions): it is searched
through --index (built once and stored in the folder; auto: exact below 100,000 molecules), with the
checkpoint that embedded it; --backend, --names, --hubness and --claims do not apply there. On a library file,
--index auto/exact is the exact search of --backend, and ivf/ivfpq/hnsw build that index in memory for
this run (not stored: embed the library into a shard folder to keep it).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="search.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EPILOG,
        description="Rank the molecules of a library for text queries with a trained checkpoint. The library's "
                    "graph embeddings are computed once and cached (next to the library, or in --cache-dir).")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="query text(s)")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="checkpoint written by main.py (best.pt/last.pt), or an ensemble's model file (the model.pt "
                        "of recipe.py, ensemble_method.py --save-model)")
    p.add_argument("--library", required=True, metavar="FILE",
                   help="SMILES library (.smi/.csv/.tsv/.sdf[.gz]), graph library (raw.zip, folder of .graph "
                        "files, or a folder with raw/ or raw.zip and optionally cids.txt), or a shard folder "
                        "written by embed_library.py")
    p.add_argument("--queries-file", metavar="FILE", help="more queries, one per line (blank lines ignored)")
    p.add_argument("-k", "--top-k", type=int, default=10, help="molecules to show per query")
    p.add_argument("--html", metavar="FILE", help="also write an HTML report drawing the top-k structures")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help=f"exact search: numpy, or FAISS IndexFlatIP; auto = FAISS above {FAISS_AUTO_THRESHOLD:,} "
                        f"molecules")
    p.add_argument("--smiles-map", metavar="TSV", action="append",
                   help="id -> SMILES table for graph libraries (e.g. ChEBI-20 validation.txt: CID, SMILES, ...); "
                        "may be repeated")
    p.add_argument("--rank-of", metavar="ID", help="also print the rank of this library id for each query")
    p.add_argument("--cache-dir", help="cache folder; when not given: next to the library, or ~/.cache/molret when "
                                       "the library's folder is read-only ($MOLRET_CACHE overrides ~/.cache/molret)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--query-threads", type=int, default=QUERY_THREADS,
                   help="torch CPU threads for encoding the queries (0: torch's default)")
    add_inference_args(p, batch_help="graph embedding batch size; the model's eval batch size when not given")
    add_names_arg(p, None, "exact-graph and substructure evidence with the cosine scores (all molecules scored "
                           "exactly); default: opsin with the weights of a model file that carries them (a recipe's "
                           "model.pt), none for a checkpoint or a shard folder")
    p.add_argument("--names-weights", type=float, nargs="+", metavar="W",
                   help="fusion weights of --names: EXACT SUBJECT PARENT [FORM] (default: those fitted on the "
                        "challenge's val pool; FORM, the named structure in another charge state or tautomer, "
                        "keeps its default when only three are given)")
    p.add_argument("--hubness", default=None, choices=list(HUBNESS),
                   help=choices_help("hubness correction", HUBNESS) + "; default: isoftmax with the bank and "
                        "temperature of a model file that carries them (a recipe's model.pt), none otherwise")
    p.add_argument("--hubness-bank", metavar="FILE",
                   help="the bank: cid<TAB>text lines (train.tsv) or one query per line (default: the model file's "
                        "bank, else train.tsv of the checkpoint's data folder)")
    p.add_argument("--hubness-temperature", type=float, default=HUBNESS_TEMPERATURE,
                   help="temperature of --hubness isoftmax with --hubness-bank or a checkpoint (a model file's "
                        "bank keeps its own)")
    add_claims_arg(p, CLAIMS_DEFAULT)
    add_index_args(p)
    add_library_args(p)
    return p


def read_bank(path) -> list[str]:
    """Texts of a hubness bank: the second column of TAB-separated lines, else whole lines."""
    lines = read_query_lines(path)
    return [line.split("\t", 1)[1] if "\t" in line else line for line in lines]


def default_bank(data_dir) -> Path:
    from molret.data.challenge import resolve_data_dir
    try:
        return resolve_data_dir(data_dir).need("train")
    except MolretError:
        raise MolretError("--hubness isoftmax: the checkpoint's data folder has no train.tsv; give "
                          "--hubness-bank FILE") from None


def read_query_lines(path) -> list:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise MolretError(f"cannot read --queries-file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise MolretError(f"--queries-file {path}: not UTF-8 text ({e.reason})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def search_options(args, data_dir, model_bank: bool = False) -> SearchOptions:
    """The SearchOptions of search.py's (and serve.py's) flags; ``data_dir``: the model's data folder (the
    default hubness bank is its train.tsv, unless ``model_bank``: the model file carries its own)."""
    choice = getattr(args, "hubness", None)
    bank, hubness = None, (None if choice is None else choice != "none")
    if hubness and (getattr(args, "hubness_bank", None) or not model_bank):
        bank = read_bank(args.hubness_bank or default_bank(data_dir))
    return SearchOptions(backend=args.backend, index=index_options(args), reader=reader_options(args),
                         smiles_maps=args.smiles_map or (), cache_dir=args.cache_dir, use_cache=not args.no_cache,
                         batch_size=args.batch_size, query_threads=args.query_threads,
                         names={"opsin": True, "none": False}.get(getattr(args, "names", None)),
                         names_weights=getattr(args, "names_weights", None), hubness_bank=bank, hubness=hubness,
                         hubness_temperature=getattr(args, "hubness_temperature", HUBNESS_TEMPERATURE),
                         claims={"stored": True, "none": False}.get(getattr(args, "claims", None)))


def open_search(args, progress: bool) -> LibrarySearch:
    """The engine of search.py's and serve.py's flags, through the API object."""
    # --threads: for embedding the library (queries: --query-threads)
    retriever = MolRetriever.from_checkpoint(args.model, device=inference_device(args))
    options = search_options(args, retriever.embedder.data_dir, retriever.embedder.fusion.hubness_bank is not None)
    return retriever.open_search(args.library, options, progress)


def _short(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def check_folder_flags(args) -> None:
    """Refuse the flags that need a library file (parsed graphs, every molecule scored) on a shard folder."""
    for flag, value in (("--names", getattr(args, "names", None)), ("--hubness", getattr(args, "hubness", None)),
                        ("--claims", getattr(args, "claims", None))):
        if value not in (None, "none"):
            raise MolretError(f"{flag} {value} does not apply to the shard folder {args.library} (it keeps no parsed "
                              f"graphs and is searched through its index): search the library file itself")


def report_folder(engine: LibrarySearch, out) -> None:
    lib, index = engine.lib, engine.index
    invalid = lib.meta["invalid"]
    skipped = f", {invalid} invalid rows skipped" if invalid else ""
    print(f"library {lib.folder}: {len(lib):,} molecules in {lib.meta['num_shards']} shard(s){skipped}", file=out)
    stored = getattr(index, "stored_path", None)
    if stored is None:
        how = f"built in {index.build_seconds * 1e3:.1f} ms, nothing stored"
    elif getattr(index, "load_seconds", 0):
        how = f"read from {stored} in {index.load_seconds:.1f} s"
    else:
        how = f"built in {index.build_seconds:.1f} s, stored in {stored}"
    print(f"search index: {index.kind} ({how})", file=out)


def report_library(engine: LibrarySearch, out=None) -> None:
    out = out or sys.stderr
    if engine.folder:
        return report_folder(engine, out)
    le = engine.lib
    lib = le.library
    skipped = f", {lib.invalid} invalid {'rows' if lib.kind == 'smiles' else 'graph files'} skipped" if lib.invalid else ""
    print(f"library {lib.path}: {len(lib):,} molecules{skipped}", file=out)
    for msg in lib.invalid_examples[:5]:
        print(f"  skipped: {msg}", file=out)
    if lib.invalid > 5:
        print(f"  ... and {lib.invalid - 5} more", file=out)
    if le.cached:
        print(f"graph embeddings: from cache {le.cache_path}", file=out)
    else:
        rate = len(lib) / le.seconds if le.seconds > 0 else float("inf")
        where = f", cached in {le.cache_path}" if le.cache_path else " (not cached)"
        print(f"graph embeddings: computed in {le.seconds:.1f} s ({rate:,.0f} molecules/s; parsing "
              f"{le.parse_seconds:.1f} s){where}", file=out)
    print(f"search backend: {engine.index.backend} (index built in {engine.index.build_seconds * 1e3:.1f} ms)", file=out)


def format_hits(query: str, hits: Sequence[Hit], number: int) -> str:
    lines = [f"query {number}: {_short(query)}"]
    width = max([len("id")] + [len(h.id) for h in hits])
    lines.append(f"{'rank':>4}  {'id':<{width}}  {'score':>7}  SMILES")
    for h in hits:
        lines.append(f"{h.rank:>4}  {h.id:<{width}}  {h.score:>7.4f}  {h.smiles or '-'}")
    return "\n".join(lines)


def stereo_footnote(results) -> str | None:
    """One line saying which SMILES shown were decoded from the challenge graphs (no stereochemistry), or None."""
    from molret.chem.graph_decoder import NO_STEREO_NOTE
    shown = [h for hits in results for h in hits if h.smiles]
    decoded = sum(1 for h in shown if getattr(h, "decoded", False))
    if not decoded:
        return None
    which = "the SMILES above were" if decoded == len(shown) else f"{decoded} of the {len(shown)} SMILES above were"
    return f"note: {which} {NO_STEREO_NOTE}"


def run(args) -> dict:
    queries = list(args.queries)
    if args.queries_file:
        queries += read_query_lines(args.queries_file)
    queries = [q for q in queries if q.strip()]
    if not queries:
        raise MolretError("no query: give query text(s) or --queries-file")
    if args.top_k < 1:
        raise MolretError("-k must be at least 1")
    if args.names_weights and (min(args.names_weights) < 0 or len(args.names_weights) not in (3, 4)):
        raise MolretError(f"--names-weights takes 3 or 4 numbers >= 0 (EXACT SUBJECT PARENT [FORM]), "
                          f"got {' '.join(str(w) for w in args.names_weights)}")
    index_options(args)  # range-checked before the model is loaded
    if is_shard_folder(args.library):
        check_folder_flags(args)
    else:
        library_kind(args.library)  # a missing library fails before the model is loaded
    if args.html:
        from molret.utils.files import check_writable_dir
        check_writable_dir(Path(args.html).resolve().parent)
    progress = not args.no_progress and sys.stderr.isatty()
    engine = open_search(args, progress)
    report_library(engine)
    t0 = time.perf_counter()
    q_emb = engine.encode(queries)
    results = engine.search(queries, args.top_k, query_emb=q_emb)
    seconds = time.perf_counter() - t0
    ranks = []
    for n, (q, hits) in enumerate(zip(queries, results), 1):
        print(("\n" if n > 1 else "") + format_hits(q, hits, n))
        if args.rank_of:
            rank, score, ties = engine.rank_of(q_emb[n - 1:n], args.rank_of, q)
            ranks.append(rank)
            tied = f"; {ties} other molecule(s) score exactly the same (same graph?)" if ties else ""
            print(f"rank of {args.rank_of}: {rank} of {len(engine):,} (score {score:.4f}{tied})")
    note = stereo_footnote(results)
    if note:
        print(note)
    print(f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'} searched in {seconds * 1e3:.0f} ms "
          f"(text encoding + search)", file=sys.stderr)
    if args.html:
        atomic_write_text(args.html, html_report(queries, results, str(args.library), str(args.model)))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(args.html, 0o666 & ~mask)  # a report to share, not a private temporary file
        print(f"wrote {args.html}", file=sys.stderr)
    return {"queries": queries, "results": results, "ranks": ranks, "engine": engine}
