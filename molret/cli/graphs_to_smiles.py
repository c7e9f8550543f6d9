"""The command line of graphs_to_smiles.py: every graph of a graph library decoded to SMILES, as a TSV.

``decode_graph_library`` lists the library's ids (``molret.library.reading``),
parses its graphs, decodes them (``molret.chem.store_decoding``: every core, one
progress bar) and gives one row per id: the SMILES and ``exact``, or no
SMILES and the reason (a damaged graph file included).  Two caches in the
library's cache folder (``molret.library.reading.library_cache_dir``, shared with
search.py and serve.py): ``decoded.npz``, the decoding of the parsed graphs,
which reading the library for a search reuses, and ``smiles-rows.npz``, the
rows themselves, keyed by the library's fingerprint, so that a rerun reads
one small file and imports neither torch nor RDKit.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from molret.cli.common import add_distribute_args, distribute_options
from molret.utils.errors import GraphFormatError, MolretError

ROWS_CACHE = "smiles-rows.npz"
ROWS_VERSION = 1
HEADER = "id\tsmiles\tstatus"
DAMAGED = "damaged graph file"
UNREADABLE = "unreadable graph file"

log = logging.getLogger("molret")

EPILOG = """\
The SMILES carry no stereochemistry: the challenge graphs hold none (no chirality, no double-bond
geometry; isotope labels only as far as the identifiers tell them apart). A molecule is written only
when re-encoding it gives its graph back identically (every atom identifier, every bond), so a SMILES
here is exact up to stereochemistry; the others get an empty SMILES and the reason, for example
"no structure fits: 2 atom identifier(s) not in the environment table" or "damaged graph file: ...".

How many of the challenge's graphs decode: docs/experiments.md "Decoding the graphs back to
molecules". The environment table shipped with molret was built by tools/build_env_table.py from ChEBI structures
(ChEBI-20 SMILES; ChEBI is CC BY 4.0). The results are cached in the library's cache folder (the one
search.py and serve.py use), so a rerun takes about a second and a later search of the same library
does not decode again.
"""


@dataclass
class GraphLibraryDecoding:
    """One row per id of a graph library, in library order."""
    ids: list
    smiles: list        # str, or None when not decoded
    status: list        # "exact" or the reason
    seconds: float = 0.0
    cached: bool = False
    cache_file: Path | None = None

    @property
    def num_exact(self) -> int:
        from molret.chem.graph_decoder import STATUS_EXACT
        return sum(1 for s in self.status if s == STATUS_EXACT)


def _rows_key(fingerprint: str, known_smiles=()) -> str:
    """What the rows depend on: the library's content, the decoder's version and its table."""
    from molret.chem.store_decoding import DECODER_VERSION, table_key
    h = hashlib.sha1(f"molret-smiles-rows-v{ROWS_VERSION}:decoder-v{DECODER_VERSION}:{fingerprint}".encode())
    h.update(table_key(known_smiles).encode())
    return h.hexdigest()


def _file_error(source, cid: str) -> str:
    """The status of a graph file that did not parse: what is wrong with it, without its location."""
    from molret.data.graph_store import parse_identifiers
    from molret.chem.graph_format import parse_graph_text
    where = source.location(cid)
    try:
        _, identifiers = parse_graph_text(source.read(cid), where)
        parse_identifiers(identifiers, where)
    except GraphFormatError as e:
        return f"{DAMAGED}: {_strip(str(e), where)}"
    except MolretError as e:
        return f"{UNREADABLE}: {_strip(str(e), where)}"
    return f"{DAMAGED}: not parsed"   # it parses now: the file changed while it was read


def _strip(message: str, where: str) -> str:
    message = " ".join(message.split())
    return message[len(where) + 2:] if message.startswith(where + ": ") else message


def decode_graph_library(path, cache_dir=None, *, workers: int | None = None, progress: bool = False,
                         use_cache: bool = True, known_smiles=()) -> GraphLibraryDecoding:
    """Every graph of the graph library at ``path`` (raw.zip, a folder of .graph files, or a folder holding
    raw/ or raw.zip), decoded; cached in the library's cache folder (``cache_dir`` as search.py's).
    ``known_smiles``: structures whose environments join the shipped table."""
    known_smiles = list(known_smiles)
    from molret.utils import cache
    from molret.utils.files import is_writable_dir
    from molret.library.reading import (DECODING_CACHE, graph_layout, library_cache_dir, library_fingerprint,
                                        library_kind)
    from molret.library.reading import list_graph_ids
    p = Path(path)
    if library_kind(p) != "graphs":
        raise MolretError(f"{p} is not a graph library: give a raw.zip, a folder of .graph files, or a folder "
                          f"holding raw/ or raw.zip")
    source_path, ids_file = graph_layout(p)
    folder = library_cache_dir(p, cache_dir) if use_cache else None
    if folder is not None and not is_writable_dir(folder):
        log.warning(f"cache folder {folder} is not writable: the decoded SMILES will not be cached (give --cache-dir)")
        folder = None
    rows_file = folder / ROWS_CACHE if folder is not None else None
    key = None
    if rows_file is not None:
        key = _rows_key(library_fingerprint(p, None, folder), known_smiles)
        hit = cache.load(rows_file, key, ROWS_VERSION, lambda z, meta: GraphLibraryDecoding(
            cache.from_json_array(z["ids"]), cache.from_json_array(z["smiles"]), cache.from_json_array(z["status"]),
            meta.get("seconds", 0.0), True, rows_file))
        if hit is not None and len(hit.ids) == len(hit.smiles) == len(hit.status):
            return hit
    t0 = time.perf_counter()
    ids = list_graph_ids(source_path, ids_file)
    from molret.data.graph_store import GraphSource, build_graph_store
    from molret.chem.store_decoding import cached_decode_store
    source = GraphSource(source_path)
    store = build_graph_store(ids, source, progress, on_error=lambda e: None)
    decode_file = folder / (DECODING_CACHE if not known_smiles else "decoded-known.npz") if folder else None
    decoding = (cached_decode_store(store, decode_file, workers=workers, progress=progress,
                                    known_smiles=known_smiles) if len(store) else None)
    found = {cid: g for g, cid in enumerate(store.cids)}
    smiles, status = [], []
    for cid in ids:
        g = found.get(cid)
        if g is None:
            smiles.append(None)
            status.append(_file_error(source, cid))
        else:
            smiles.append(decoding.smiles[g])
            status.append(decoding.status[g])
    out = GraphLibraryDecoding(ids, smiles, status, time.perf_counter() - t0, False, rows_file)
    if rows_file is not None:
        try:
            cache.save(rows_file, key, ROWS_VERSION, {"ids": cache.json_array(ids), "smiles": cache.json_array(smiles),
                                                      "status": cache.json_array(status)},
                       {"seconds": out.seconds, "library": str(p.resolve())})
        except MolretError as e:
            log.warning(f"could not cache the decoded SMILES in {rows_file}: {e}")
            out.cache_file = None
    return out


def decode_graph_library_in_shards(args, known_smiles=()) -> GraphLibraryDecoding:
    """``decode_graph_library``'s rows, decoded in ``args.shards`` shards per pass on Ray or local processes
    (``molret.library.decode_shards``; not cached: the distributed run is for libraries too large to redo
    in one process, and its shards are not kept)."""
    from molret.library.decode_shards import decode_in_shards
    from molret.library.reading import graph_layout, library_kind
    from molret.data.graph_store import GraphSource
    p = Path(args.library)
    if library_kind(p) != "graphs":
        raise MolretError(f"{p} is not a graph library: give a raw.zip, a folder of .graph files, or a folder "
                          f"holding raw/ or raw.zip")
    t0 = time.perf_counter()
    progress = not args.no_progress and sys.stderr.isatty()
    on_pass = (lambda n, solved: print(f"pass {n}: {solved:,} graphs decoded exactly", file=sys.stderr)) \
        if progress else None
    dec = decode_in_shards(p.resolve(), args.shards, distribute_options(args), known_smiles, on_pass=on_pass)
    source = GraphSource(graph_layout(p)[0])
    for r in dec.unparsed:
        dec.status[r] = _file_error(source, dec.ids[r])
    return GraphLibraryDecoding(dec.ids, dec.smiles, dec.status, time.perf_counter() - t0, False, None)


def _clean(text) -> str:
    return "" if text is None else " ".join(str(text).split())


def tsv_text(dec: GraphLibraryDecoding) -> str:
    """``id<TAB>smiles<TAB>status`` lines under one header line (empty SMILES where not decoded)."""
    lines = [HEADER] + [f"{_clean(i)}\t{_clean(s)}\t{_clean(st)}" for i, s, st in zip(dec.ids, dec.smiles, dec.status)]
    return "\n".join(lines) + "\n"


def reason_counts(status) -> Counter:
    """Failures counted by kind: the part of each reason before its first ':'."""
    from molret.chem.graph_decoder import STATUS_EXACT
    return Counter(s.split(":", 1)[0] for s in status if s != STATUS_EXACT)


def summary_line(dec: GraphLibraryDecoding) -> str:
    n, exact = len(dec.ids), dec.num_exact
    pct = 100.0 * exact / n if n else 0.0
    line = f"{exact:,} of {n:,} graphs decoded exactly ({pct:.2f}%)"
    reasons = reason_counts(dec.status)
    if reasons:
        line += "; not decoded: " + ", ".join(f"{c:,} {r}" for r, c in reasons.most_common())
    return line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graphs_to_smiles.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Decode every challenge-style graph of a library (the hashed Morgan identifiers and bonds of "
                    "each .graph file) back to an exact molecule, and write id<TAB>smiles<TAB>status: status is "
                    "'exact', or why the graph could not be decoded (then the SMILES is empty). The SMILES have "
                    "no stereochemistry (the graphs carry none).")
    p.add_argument("library", metavar="LIBRARY",
                   help="a raw.zip, a folder of <id>.graph files (raw/), or a challenge data folder holding raw/ or "
                        "raw.zip (a cids.txt there sets the ids and their order, as smiles_to_graph.py writes it)")
    p.add_argument("--out", required=True, metavar="FILE", help="TSV to write (written atomically)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="decoding processes (default: every core, %(default)s here)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder, as search.py's: when not given, <library>.molret-cache next to the library, "
                        "or ~/.cache/molret ($MOLRET_CACHE) when the library's folder is read-only")
    p.add_argument("--known-smiles", action="append", metavar="FILE", default=[],
                   help="a SMILES file (CSV/TSV with a SMILES column, or id<TAB>SMILES lines) whose structures' "
                        "Morgan environments join the shipped table before decoding (repeatable): molecules "
                        "you know help decode the graphs of their relatives")
    p.add_argument("--shards", type=int, metavar="N",
                   help="decode in N shards per pass, scheduled on Ray (a local Ray unless --cluster or RAY_ADDRESS; "
                        "without Ray installed, local processes); --workers is then the number of workers. The "
                        "same rows as one process")
    add_distribute_args(p, workers=False)
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> dict:
    from molret.utils.files import atomic_write_text, check_writable_dir
    if args.workers < 1:
        raise MolretError(f"--workers must be at least 1, got {args.workers}")
    if args.shards is not None and not 1 <= args.shards <= 100_000:
        raise MolretError(f"--shards must be between 1 and 100,000, got {args.shards}")
    if args.shards is not None:
        distribute_options(args)   # range-checked before anything is read
    out = Path(args.out)
    if out.is_dir():
        raise MolretError(f"--out {out} is a folder: give a file name")
    check_writable_dir(out.resolve().parent, out.parent)
    progress = not args.no_progress and sys.stderr.isatty()
    from molret.library.reading import read_smiles_map
    known = [smi for path in args.known_smiles for smi in read_smiles_map(path).values()]
    if args.shards is not None:
        dec = decode_graph_library_in_shards(args, known)
    else:
        dec = decode_graph_library(args.library, args.cache_dir, workers=args.workers, progress=progress,
                                   use_cache=not args.no_cache, known_smiles=known)
    atomic_write_text(out, tsv_text(dec))
    how = (f"from the cache {dec.cache_file}" if dec.cached else
           f"in {dec.seconds:.1f} s" + (f", cached in {dec.cache_file.parent}" if dec.cache_file else ""))
    print(f"wrote {out}: {summary_line(dec)} ({how})")
    return {"decoding": dec, "out": out}
