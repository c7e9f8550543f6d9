"""Measure what the graph decoder's exact acceptance (issue 33) changes on the challenge's graphs.

The decoder used to accept a decoding whose re-encoded identifiers equalled the
graph's as a multiset, even on other atoms; it now needs each atom's identifier
(up to a renumbering that keeps the bonds, ``graph_decoder.same_labelled_graph``).
This decodes the first ``--limit`` graphs of raw.zip (in id order) twice in one
run, with the old multiset rule and with the exact one, each from the shipped
environment table, and counts the graphs whose result differs.

This is a measurement, not a test.  Run:
    flock /tmp/cpu.lock nice python bench/decoder_acceptance.py --limit 10000 --out acceptance.json
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_RAW = REPO.parent / "shared" / "data" / "altegrad" / "raw.zip"


def multiset_rule(ids, new_ids, bonds, max_steps=0) -> bool:
    """The old acceptance: the same identifiers, on any atoms."""
    return list(new_ids) == list(ids) or collections.Counter(new_ids) == collections.Counter(ids)


def decode(store, workers: int, rule=None):
    from molret.chem import graph_decoder
    from molret.chem.store_decoding import decode_store
    exact_rule = graph_decoder.same_labelled_graph
    if rule is not None:   # the workers are forked: they see the module's rule as set here
        setattr(graph_decoder, "same_labelled_graph", rule)
    try:
        return decode_store(store, workers=workers, progress=True)
    finally:
        setattr(graph_decoder, "same_labelled_graph", exact_rule)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="decoder_acceptance.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw", type=Path, default=DEFAULT_RAW, help="the challenge's raw.zip")
    ap.add_argument("--limit", type=int, default=0, help="the first N graphs in id order (0: all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args(argv)
    from molret.data.graph_store import GraphSource, build_graph_store
    from molret.library.reading import id_sort_key
    with zipfile.ZipFile(args.raw) as z:
        cids = sorted({Path(n).stem for n in z.namelist() if n.endswith(".graph")}, key=id_sort_key)
    cids = cids[:args.limit] if args.limit else cids
    store = build_graph_store(cids, GraphSource(args.raw), progress=True)
    t0 = time.perf_counter()
    old = decode(store, args.workers, multiset_rule)
    t1 = time.perf_counter()
    new = decode(store, args.workers)
    t2 = time.perf_counter()
    changed = [(cid, o_smi, o_st, n_smi, n_st) for cid, o_smi, o_st, n_smi, n_st
               in zip(store.cids, old.smiles, old.status, new.smiles, new.status) if (o_smi, o_st) != (n_smi, n_st)]
    result = {"graphs": len(store), "workers": args.workers,
              "exact_old_rule": old.num_exact, "exact_new_rule": new.num_exact,
              "changed": len(changed),
              "exact_to_refused": sum(1 for c in changed if c[2] == "exact" and c[4] != "exact"),
              "refused_to_exact": sum(1 for c in changed if c[2] != "exact" and c[4] == "exact"),
              "other_smiles": sum(1 for c in changed if c[2] == c[4] == "exact"),
              "examples": [dict(zip(("cid", "old_smiles", "old_status", "new_smiles", "new_status"), c))
                           for c in changed[:10]],
              "seconds_old_rule": round(t1 - t0, 1), "seconds_new_rule": round(t2 - t1, 1)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
