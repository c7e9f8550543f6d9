"""Name resolution: latency per query (OPSIN loaded), a batch of the test
queries, and a sample of the names that fail, by kind.

    python bench/names_latency.py

A measurement, not a test. Needs Java and py2opsin.
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
    args = p.parse_args(argv)
    from molret.data import read_pairs_tsv, read_queries
    from molret.names import Opsin, extract_names, resolve_queries
    data = Path(args.data_dir)
    _, val_texts = read_pairs_tsv(data / "val.tsv")
    test_texts = read_queries(data / "test_text.txt")
    t0 = time.perf_counter()
    opsin = Opsin()
    opsin.resolve(["ethanol"])
    print(f"OPSIN start (JVM + first name): {time.perf_counter() - t0:.2f} s ({opsin.version})")
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
    t = time.perf_counter()
    structures = resolve_queries(test_texts, fresh)
    n_names = len({n for q in test_texts for n in extract_names(q).all()})
    print(f"batch: {len(test_texts)} test queries ({n_names} distinct names) in {time.perf_counter() - t:.1f} s; "
          f"subjects resolved {sum(s.subject is not None for s in structures)}")
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
