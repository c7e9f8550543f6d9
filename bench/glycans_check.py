"""How many val and test glycan subjects ``molret.names.glycans`` converts, and how many give the true graph.

Subjects: the subject name of every val and test query whose class is "glycan"
(``bench/names_coverage.py``'s ``name_class``), resolved or not by the other sources. For each split: how
many convert to a SMILES (the name, else one of its other spellings, ``molret.names.variants``); on val, how many give the true molecule's graph exactly (identity key) or as one
of its charge/tautomer forms, and how many match ChEBI-20's SMILES of the true molecule (a check only);
on test (queries and molecules are not paired), how many give the graph of some test molecule, exactly or
as one of its forms. With
``--glyles``: the same for the alternative, each name translated to IUPAC-condensed form
(``condensed_name``) and parsed by GlyLES (when installed). No model needed.

    python bench/glycans_check.py [--data-dir D] [--cache-dir C] [--chebi20 DIR] [--glyles] [--list]

A measurement, not a test.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

DATA = REPO.parent / "shared" / "data" / "altegrad"
CHEBI20 = REPO.parent / "shared" / "data" / "chebi20"


def chebi20_smiles(folder) -> dict:
    """CID -> SMILES of ChEBI-20's files in ``folder`` (empty when absent)."""
    out: dict = {}
    for name in ("validation.txt", "test_smiles.tsv"):
        path = Path(folder) / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines()[1:]:
                parts = line.split("\t")
                if len(parts) > 1:
                    out.setdefault(parts[0], parts[1])
    return out


def condensed_name(name: str) -> str | None:
    """A ChEBI glycan name in IUPAC-condensed form for GlyLES ("alpha-L-Fucp-(1->2)-beta-D-Galp" ->
    "Fuc(a1-2)Gal"), through this project's parser (residues with modifiers GlyLES may not read are
    written as they are); None when the parser rejects the name."""
    from molret.names.glycans import parse_glycan
    glycan = parse_glycan(name)
    if glycan is None:
        return None
    out = [(r.anomer or "?", re.sub(r"^([A-Z][a-z]{2})[pf]", r"\1", r.symbol)) for r in glycan.residues]
    # rebuild the tree as condensed text: children (donors) of each residue first, branches in brackets
    children: dict = {}
    for d, a, acc, b in glycan.links:
        children.setdefault(acc, []).append((d, a, b))

    def write(r: int, link: str) -> str:
        kids = sorted(children.get(r, []), key=lambda k: -k[2])
        parts = [write(d, f"({out[d][0]}{a}-{b})") for d, a, b in kids]
        text = "".join(f"[{p}]" for p in parts[1:]) if len(parts) > 1 else ""
        return (parts[0] if parts else "") + text + out[r][1] + link

    return write(len(glycan.residues) - 1, "")


def glyles_smiles(name: str) -> str | None:
    """GlyLES's SMILES of a condensed name (None when it rejects it or is not installed)."""
    try:
        from glyles import convert
    except ImportError:
        return None
    try:
        result = convert(glycan=name, returning=True, verbose=None)
    except Exception:  # noqa: BLE001 - GlyLES's own errors on odd input
        return None
    smiles = result[0][1] if result else None
    return smiles or None


def check(subjects, true_keys, pool_keys, true_smiles, convert) -> dict:
    """Counts over (split, name, index) subjects with ``convert`` (name -> SMILES | None)."""
    from molret.names.resolve import structure_forms_of, structure_from_smiles
    from molret.names.variants import name_variants
    counts = {"val": {"glycans": 0, "converted": 0, "exact": 0, "form": 0, "chebi20_match": 0},
              "test": {"glycans": 0, "converted": 0, "in_test_pool": 0, "form_in_test_pool": 0}}
    listing = []
    t0 = time.perf_counter()
    for split, name, i in subjects:
        c = counts[split]
        c["glycans"] += 1
        # as molret.names.resolve does: the name, else its other spellings ("...(2-)" without the charge)
        smiles = next((x for x in map(convert, [name, *name_variants(name)]) if x), None)
        s = structure_from_smiles(name, smiles, source="glycans") if smiles else None
        if s is None:
            listing.append(("unconverted", split, name, ""))
            continue
        c["converted"] += 1
        if split == "val":
            ok = s.key == true_keys[i]
            c["exact"] += ok
            form = not ok and any(f.key == true_keys[i] for f in structure_forms_of(s))
            c["form"] += form
            t = structure_from_smiles(name, true_smiles.get(i, "")) if true_smiles.get(i) else None
            c["chebi20_match"] += bool(t is not None and t.key == s.key)
            if not ok:
                listing.append(("form" if form else "wrong", split, name, smiles))
        else:
            ok = s.key in pool_keys
            c["in_test_pool"] += ok
            form = not ok and any(f.key in pool_keys for f in structure_forms_of(s))
            c["form_in_test_pool"] += form
            if not ok:
                listing.append(("form in pool" if form else "not in pool", split, name, smiles))
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    return counts, listing


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir")
    p.add_argument("--chebi20", default=str(CHEBI20), help="ChEBI-20 folder (its SMILES: a check only)")
    p.add_argument("--glyles", action="store_true", help="also measure the condensed-name + GlyLES alternative")
    p.add_argument("--list", action="store_true", help="print the names that fail or give another graph")
    p.add_argument("--json")
    args = p.parse_args(argv)
    from names_coverage import name_class
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.names.glycans import glycan_smiles
    from molret.names.resolve import extract_names, graph_keys
    val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs = challenge_pool_inputs(args.data_dir,
                                                                                                args.cache_dir)
    true_keys = graph_keys(val_graphs.identifiers, val_graphs.node_ptr, val_graphs.edges, val_graphs.edge_ptr)
    pool_keys = set(graph_keys(test_graphs.identifiers, test_graphs.node_ptr, test_graphs.edges,
                               test_graphs.edge_ptr))
    chebi = chebi20_smiles(args.chebi20)
    true_smiles = {i: chebi[c] for i, c in enumerate(val_cids) if c in chebi}
    subjects = []
    for split, texts in (("val", val_texts), ("test", test_texts)):
        for i, text in enumerate(texts):
            subject = extract_names(text).subject
            if subject and name_class(subject) == "glycan":
                subjects.append((split, subject, i))
    out = {}
    out["own_parser"], listing = check(subjects, true_keys, pool_keys, true_smiles, glycan_smiles)
    if args.glyles:
        out["condensed_glyles"], glyles_listing = check(
            subjects, true_keys, pool_keys, true_smiles,
            lambda n: glyles_smiles(c) if (c := condensed_name(n)) else None)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.list:
        for row in listing:
            print("\t".join(row))


if __name__ == "__main__":
    main()
