"""The names of the val + test queries (3,801 on the challenge data), resolved
cold (OPSIN start, chemicals table, forms) and from the batch cache
(``molret.names.cache``), as every pool report and submission path resolves them.

    python bench/names_cache.py --cache-dir C [--names-cache DIR]

Run it twice with the same ``--names-cache``: the first run is cold (unless
the folder already holds the batch), the second a new process that hits the
cache. Within one run the batch is also resolved a second time (in-process
hit) and checked equal to the first. A measurement, not a test.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"


def plain(structures) -> list:
    """Comparable values of a list of QueryStructures."""
    def st(s):
        return None if s is None else (s.name, s.smiles, s.key, s.source, s.kind, s.charge, s.zwitterion,
                                       s.identifiers.tolist())
    return [(q.names, q.hint, q.relative_charge, st(q.subject), [st(s) for s in q.enantiomers],
             [st(s) for s in q.parents], [st(s) for s in q.forms]) for q in structures]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir", required=True, help="graph cache (never the read-only data folder)")
    p.add_argument("--names-cache", help="folder of the names batch cache (default: a new temporary one: cold)")
    args = p.parse_args(argv)
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.names.cache import resolve_queries_cached
    from molret.ranking.name_fusion import Candidates
    from molret.names.sources import pairs_dictionary_from_dir
    from molret.names.opsin import shared_opsin
    names_cache = Path(args.names_cache or tempfile.mkdtemp(prefix="names-cache-"))
    pool = challenge_pool_inputs(args.data_dir, args.cache_dir)
    queries = list(pool[1]) + list(pool[4])
    keys = Candidates.from_stores([pool[2], pool[5]]).keys
    t = time.perf_counter()
    pairs = pairs_dictionary_from_dir(args.data_dir, args.cache_dir)
    print(f"pairs dictionary: {len(pairs) if pairs else 0} names in {time.perf_counter() - t:.2f} s")
    hit = any(names_cache.glob("names-*.npz"))
    runs = []
    for label in ("first call" + (" (a batch file was there)" if hit else " (cold)"), "second call (in-process)"):
        t = time.perf_counter()
        structures = resolve_queries_cached(queries, shared_opsin(), pairs, candidate_keys=keys,
                                            cache_dir=names_cache)
        runs.append(structures)
        print(f"{label}: {len(queries)} queries in {time.perf_counter() - t:.2f} s; subjects resolved "
              f"{sum(s.subject is not None for s in structures)}, forms {sum(len(s.forms) for s in structures)}")
    print(f"equal: {plain(runs[0]) == plain(runs[1])}; names cache {names_cache}")


if __name__ == "__main__":
    main()
