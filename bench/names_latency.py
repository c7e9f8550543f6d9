"""Name resolution: latency per query (OPSIN and the chemicals dictionary
loaded; names, structures and their charge/tautomer forms), a batch of the
test queries, and a sample of the names that fail, by kind.

    python bench/names_latency.py [--forms all|charge|tautomer|none]

A measurement, not a test. Needs Java and py2opsin (and the chemicals
package for its dictionary).
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"


def kind_of_failure(name: str) -> str:
    """A rough category of a subject name OPSIN did not resolve."""
    import re
    if re.search(r"\(\d->\d\)|-[A-Z][a-z]{2}p\b|\bGlc|\bGal|\bMan", name):
        return "carbohydrate shorthand (e.g. alpha-D-Manp-(1->2)-...)"
    if re.search(r"#|\bascr\b|\bicas\b", name):
        return "project code name"
    if not re.search(r"\d|-|yl|ane|ene|ol\b|ic\b|ate\b|one\b|ide\b|ine\b", name, re.I):
        return "trivial or trade name (no systematic parts)"
    if re.search(r"[A-Z]{2,}", name):
        return "abbreviation inside the name"
    return "other systematic-looking name"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--single", type=int, default=100, help="val queries resolved one at a time")
    p.add_argument("--forms", default="all", choices=["none", "charge", "tautomer", "all"])
    p.add_argument("--cache-dir", help="graph cache for the pool's candidate keys (the batch's size shortcut)")
    args = p.parse_args(argv)
    from molret.data.challenge import read_pairs_tsv, read_queries
    from molret.names.sources import default_sources, shared_chemicals
    from molret.names.resolve import extract_names
    from molret.names.opsin import Opsin
    from molret.names.queries import resolve_queries as resolve

    def resolve_queries(queries, opsin, candidate_keys=None):
        return resolve(queries, opsin, sources=default_sources(opsin), forms=args.forms,
                       candidate_keys=candidate_keys)
    data = Path(args.data_dir)
    _, val_texts = read_pairs_tsv(data / "val.tsv")
    test_texts = read_queries(data / "test_text.txt")
    t0 = time.perf_counter()
    opsin = Opsin()
    opsin.resolve(["ethanol"])
    print(f"OPSIN start (JVM + first name): {time.perf_counter() - t0:.2f} s ({opsin.version})")
    t0 = time.perf_counter()
    chemicals = shared_chemicals()
    print(f"chemicals dictionary: {len(chemicals) if chemicals else 0} names loaded in "
          f"{time.perf_counter() - t0:.2f} s")
    times = []
    for q in val_texts[:args.single]:
        t = time.perf_counter()
        resolve_queries([q], opsin)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(f"one query at a time ({len(times)} val queries, names + structures): median {statistics.median(times):.1f} ms, "
          f"p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms, max {times[-1]:.1f} ms")
    fresh = Opsin()
    fresh.resolve(["ethanol"])
    from molret.names import resolve as N
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.ranking.name_fusion import Candidates
    pool = challenge_pool_inputs(args.data_dir, args.cache_dir)
    keys = Candidates.from_stores([pool[2], pool[5]]).keys
    n_names = len({n for q in test_texts for n in extract_names(q).all()})
    for label, candidate_keys in (("forms of every structure", None), ("forms matched to the pool's sizes", keys)):
        N.clear_forms_memo()
        t = time.perf_counter()
        structures = resolve_queries(test_texts, fresh, candidate_keys)
        print(f"batch: {len(test_texts)} test queries ({n_names} distinct names), {label}: "
              f"{time.perf_counter() - t:.1f} s; subjects resolved {sum(s.subject is not None for s in structures)}")
    failed = [s.names.subject for s in resolve_queries(val_texts, fresh) if s.names.subject and s.subject is None]
    kinds = collections.Counter(kind_of_failure(n) for n in failed)
    print(f"val subject names not resolved: {len(failed)} of {sum(1 for q in val_texts if extract_names(q).subject)}")
    for kind, count in kinds.most_common():
        sample = [n for n in failed if kind_of_failure(n) == kind][:3]
        print(f"  {count:>4}  {kind}: {' | '.join(sample)}")
    rng = np.random.default_rng(0)
    print("random sample of failures:", " | ".join(rng.choice(failed, size=min(8, len(failed)), replace=False)))


if __name__ == "__main__":
    main()
