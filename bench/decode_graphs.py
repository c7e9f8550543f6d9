"""Measure the graph decoder (molret.chem.graph_decoder) on the challenge's graphs.

1. **All of raw.zip, cold**: parse every graph, decode them all with the
   shipped environment table (``molret.chem.store_decoding.decode_store``, both
   cores), and count the exact decodings and the reasons of the others.
2. **Known structures**: for the 6,601 molecules with SMILES in ChEBI-20,
   compare the decoded molecule with ChEBI's (canonical SMILES without
   stereochemistry).  A decoding is exact by construction (it re-encodes to
   the official graph); it can still differ from ChEBI's SMILES where PubChem,
   the source of the official graphs, draws the molecule differently (charge
   placement, resonance forms, explicit hydrogens on metals).
3. **Held out** (``--holdout``): the same comparison with a table built from
   the other half of the known structures only (two folds), so that none of
   a decoded molecule's environments came from that molecule: how the
   decoder fares on structures its table never saw, as on a user's library.

This is a measurement, not a test.  Run:
    python bench/decode_graphs.py --holdout --out decode.json
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from molret.utils.errors import MolretError  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def reason_of(status: str) -> str:
    return status.split(":")[0]


def decode_all(raw_zip: Path, workers: int):
    import zipfile

    from molret.data.graph_store import GraphSource, build_graph_store
    from molret.library.reading import id_sort_key
    from molret.chem.store_decoding import decode_store
    t0 = time.perf_counter()
    with zipfile.ZipFile(raw_zip) as z:
        cids = sorted({Path(n).stem for n in z.namelist() if n.endswith(".graph")}, key=id_sort_key)
    store = build_graph_store(cids, GraphSource(raw_zip), progress=True)
    parse_s = time.perf_counter() - t0
    out = decode_store(store, workers=workers, progress=True)
    return store, out, parse_s


def compare_known(store, out, known: dict) -> dict:
    from molret.chem.graph_decoder import canonical_smiles
    index = {cid: i for i, cid in enumerate(store.cids)}
    same = exact = 0
    differ = []
    for cid, smi in known.items():
        i = index.get(cid)
        if i is None or out.smiles[i] is None:
            continue
        exact += 1
        if canonical_smiles(out.smiles[i]) == canonical_smiles(smi):
            same += 1
        elif len(differ) < 10:
            differ.append({"cid": cid, "decoded": out.smiles[i], "chebi": smi})
    return {"known": len(known), "decoded_exactly": exact, "same_as_chebi": same, "examples_differing": differ}


def holdout(store, known: dict, workers: int) -> dict:
    """Two folds: decode each half's official graphs with a table built from the other half's SMILES."""
    import random

    from molret.chem.graph_decoder import canonical_smiles
    from molret.chem.morgan_env import EnvironmentTable
    from molret.chem.smiles_graph import add_smiles
    from molret.data.graph_store import GraphStore
    from molret.chem.store_decoding import decode_store
    cids = sorted(c for c in known if c in set(store.cids))
    random.Random(0).shuffle(cids)
    folds = [cids[::2], cids[1::2]]
    index = {cid: i for i, cid in enumerate(store.cids)}
    res = collections.Counter()
    t0 = time.perf_counter()
    for k in range(2):
        table = EnvironmentTable()
        add_smiles(table, (known[c] for c in folds[1 - k]))
        part = _subset(store, [index[c] for c in folds[k]], GraphStore)
        out = decode_store(part, table, workers=workers)
        for cid, smi, st in zip(part.cids, out.smiles, out.status):
            res["graphs"] += 1
            if st == "exact":
                res["exact"] += 1
                res["same_as_chebi"] += canonical_smiles(smi) == canonical_smiles(known[cid])
            else:
                res[f"failed: {reason_of(st)}"] += 1
    return dict(res, seconds=round(time.perf_counter() - t0, 1))


def _subset(store, rows, cls):
    import numpy as np
    ids, edges = [], []
    for g in rows:
        ids.append(store.identifiers[store.node_ptr[g]:store.node_ptr[g + 1]])
        edges.append(store.edges[:, store.edge_ptr[g]:store.edge_ptr[g + 1]].astype(np.int32))
    return cls.from_parts([store.cids[g] for g in rows], ids, edges)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="decode_graphs.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (altegrad/, chebi20/)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    ap.add_argument("--holdout", action="store_true", help="also decode the known structures with held-out tables")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    from molret.library.reading import read_smiles_map
    try:
        store, out, parse_s = decode_all(args.data / "altegrad" / "raw.zip", args.workers)
        known = {}
        for name in ("validation.txt", "test_smiles.tsv"):
            known.update(read_smiles_map(args.data / "chebi20" / name))
    except MolretError as e:
        sys.exit(f"error: {e}")
    reasons = collections.Counter(reason_of(s) for s in out.status if s != "exact")
    result = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "workers": args.workers,
        "graphs": len(store), "exact": out.num_exact, "exact_fraction": round(out.num_exact / len(store), 5),
        "parse_seconds": round(parse_s, 1), "decode_seconds": round(out.seconds, 1),
        "total_seconds": round(parse_s + out.seconds, 1), "exact_per_pass": out.passes,
        "reasons": dict(reasons.most_common()),
        "known_structures": compare_known(store, out, known),
    }
    if args.holdout:
        result["holdout"] = holdout(store, known, args.workers)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
