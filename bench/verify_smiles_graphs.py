"""Measure how well molret.chem.molecule_files reproduces the official challenge graphs.

For every molecule of ChEBI-20 whose SMILES we have (validation.txt and
test_smiles.tsv: 6,601 molecules), build the graph from the SMILES and
compare it with raw/<cid>.graph from the challenge's raw.zip, as labelled
graphs up to atom renumbering:

  (a) same multiset of atom identifiers,
  (b) same number of bonds,
  (c) same multiset of bonds as unordered identifier pairs.

Differences are put in categories (first that applies: invalid SMILES, atom
count, isotopes, charged atoms, unusual element, several fragments,
aromatic, other) with a count and one example CID each.  ``--variant`` /
``--all-variants`` measure the alternatives (other radii, chirality, RDKit's
own invariants, standardisation) that were tried to pick the default.

This is a measurement, not a test: it prints a table and exits 0 unless the
data cannot be read.  Run: python bench/verify_smiles_graphs.py
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from molret.utils.errors import MolretError  # noqa: E402
from molret.chem.graph_format import parse_graph_text  # noqa: E402
from molret.chem import molecule_files as S  # noqa: E402
from molret.chem import smiles_graph  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"

VARIANTS = {
    "challenge": "molret default: radius 1, radius-0 fallback, legacy isotope invariant",
    "rdkit-invariants": "radius 1 with RDKit's current default atom invariants",
    "radius0": "radius 0 identifiers",
    "radius1-only": "radius 1 without the radius-0 fallback (atoms without one count as different)",
    "radius2": "largest radius <= 2 per atom",
    "chirality": "radius 1 with includeChirality=True",
    "normalize": "default after rdMolStandardize.Normalize",
    "uncharge": "default after rdMolStandardize.Uncharger",
}


def read_smiles_table(path: Path):
    """(cid, smiles) pairs of a ChEBI-20 file with a header line (tab separated)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise MolretError(f"cannot read {path}: {e.strerror or e}") from None
    out = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise MolretError(f"{path}:{n}: expected CID<TAB>SMILES")
        out.append((parts[0].strip(), parts[1].strip()))
    return out


def identifiers_for(mol, variant: str):
    """Per-atom identifiers under one of the VARIANTS (None entries are dropped atoms)."""
    from rdkit.Chem import rdFingerprintGenerator as G

    if variant in ("challenge", "normalize", "uncharge"):
        return smiles_graph.atom_identifiers(mol)
    radius = {"radius0": 0, "radius2": 2}.get(variant, 1)
    gen = G.GetMorganGenerator(radius=radius, includeChirality=(variant == "chirality"))
    ao = G.AdditionalOutput()
    ao.AllocateBitInfoMap()
    kwargs = {} if variant == "rdkit-invariants" else {"customAtomInvariants": smiles_graph.atom_invariants(mol)}
    gen.GetSparseCountFingerprint(mol, additionalOutput=ao, **kwargs)
    per_atom = [dict() for _ in range(mol.GetNumAtoms())]
    for ident, envs in ao.GetBitInfoMap().items():
        for a, r in envs:
            per_atom[a][r] = str(ident)
    if variant == "radius1-only":
        return [d.get(1) for d in per_atom]
    return [d[max(d)] if d else None for d in per_atom]


def bond_pairs(edge_index, identifiers):
    """Multiset of bonds as sorted identifier pairs (each bond once)."""
    c = collections.Counter()
    for a, b in zip(edge_index[0].tolist(), edge_index[1].tolist()):
        if a < b:
            ia, ib = identifiers[a], identifiers[b]
            c[(ia, ib) if str(ia) <= str(ib) else (ib, ia)] += 1
    return c


def categorize(mol) -> str:
    """Most likely reason why a molecule's identifiers differ from the official ones."""
    atoms = list(mol.GetAtoms())
    if any(a.GetIsotope() for a in atoms):
        return "isotope labels"
    if any(a.GetFormalCharge() for a in atoms):
        return "charged atoms (charge placement / resonance form)"
    organic = {1, 5, 6, 7, 8, 9, 15, 16, 17, 35, 53}
    if any(a.GetAtomicNum() not in organic for a in atoms):
        return "unusual element (valence / implicit H model)"
    if len(S.rdkit_chem().GetMolFrags(mol)) > 1:
        return "several fragments (salts / mixtures)"
    if any(a.GetIsAromatic() for a in atoms):
        return "aromaticity"
    return "other"


def run(variant, pairs, official):
    Chem = S.rdkit_chem()
    t0 = time.perf_counter()
    stats = collections.Counter()
    cats: dict[str, list] = {}
    standardize = variant if variant in ("normalize", "uncharge") else "none"
    for cid, smi in pairs:
        off_ei, off_ids = official[cid]
        stats["total"] += 1
        try:
            mol = S.parse_smiles(smi, standardize=standardize)
        except MolretError as e:
            cats.setdefault("invalid SMILES", []).append((cid, str(e)))
            continue
        ei, _ = smiles_graph.mol_to_graph(mol)
        ids = identifiers_for(mol, variant)
        same_ids = sorted(map(str, ids)) == sorted(off_ids)
        same_nb = ei.shape[1] == off_ei.shape[1]
        same_bonds = same_nb and bond_pairs(ei, ids) == bond_pairs(off_ei, off_ids)
        stats["ids"] += same_ids
        stats["nbonds"] += same_nb
        stats["bonds"] += same_bonds
        stats["order"] += [str(i) for i in ids] == off_ids
        if not same_ids:
            if len(ids) != len(off_ids):
                cat = "atom count differs"
            else:
                cat = categorize(mol)
            cats.setdefault(cat, []).append((cid, smi))
    stats["elapsed"] = time.perf_counter() - t0
    return stats, cats


def pct(n, total):
    return f"{100.0 * n / total:6.2f}%" if total else "   n/a"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Compare graphs built from ChEBI-20 SMILES by molret.chem.molecule_files with the official "
                    "challenge graphs (raw.zip) and print a match table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="shared data folder holding altegrad/raw.zip and chebi20/")
    ap.add_argument("--raw-zip", type=Path, default=None, help="official graphs (default: DATA/altegrad/raw.zip)")
    ap.add_argument("--smiles", type=Path, nargs="+", default=None,
                    help="CID<TAB>SMILES files with a header "
                         "(default: DATA/chebi20/validation.txt DATA/chebi20/test_smiles.tsv)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N molecules (0: all)")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="challenge",
                    help="identifier scheme to measure; " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    ap.add_argument("--all-variants", action="store_true", help="also print one summary line per variant")
    ap.add_argument("--show", type=int, default=1, help="example CIDs printed per difference category")
    args = ap.parse_args(argv)

    try:
        raw_zip = args.raw_zip or args.data / "altegrad" / "raw.zip"
        files = args.smiles or [args.data / "chebi20" / "validation.txt", args.data / "chebi20" / "test_smiles.tsv"]
        pairs = [p for f in files for p in read_smiles_table(f)]
        if args.limit:
            pairs = pairs[:args.limit]
        t0 = time.perf_counter()
        try:
            with zipfile.ZipFile(raw_zip) as z:
                names = set(z.namelist())
                official = {}
                missing = 0
                for cid, _ in pairs:
                    name = f"raw/{cid}.graph"
                    if name not in names:
                        missing += 1
                        continue
                    official[cid] = parse_graph_text(z.read(name).decode("utf-8"), f"{raw_zip}:{name}")
        except (OSError, zipfile.BadZipFile) as e:
            raise MolretError(f"cannot read {raw_zip}: {getattr(e, 'strerror', None) or e}") from None
        load_s = time.perf_counter() - t0
        pairs = [p for p in pairs if p[0] in official]
        if not pairs:
            raise MolretError("no molecule has both a SMILES and an official graph")

        stats, cats = run(args.variant, pairs, official)
    except MolretError as e:
        sys.exit(f"error: {e}")

    total = stats["total"]
    print(f"variant: {args.variant} ({VARIANTS[args.variant]})")
    print(f"SMILES files: {', '.join(str(f) for f in files)}; official graphs: {raw_zip}")
    if missing:
        print(f"({missing} CIDs without an official graph were left out)")
    print()
    print(f"{'measure':<44} {'count':>7} {'share':>8}")
    print("-" * 61)
    rows = [
        ("molecules compared", total),
        ("(a) identical identifier multisets", stats["ids"]),
        ("(b) identical bond counts", stats["nbonds"]),
        ("(c) identical bond multisets (id pairs)", stats["bonds"]),
        ("same atom order as the official file", stats["order"]),
    ]
    for name, n in rows:
        print(f"{name:<44} {n:>7} {pct(n, total):>8}")
    print()
    n_diff = sum(len(v) for v in cats.values())
    print(f"identifier multisets that differ: {n_diff}")
    for cat, items in sorted(cats.items(), key=lambda kv: -len(kv[1])):
        ex = "; ".join(f"CID {c} {s[:70]}" for c, s in items[:max(args.show, 0)])
        print(f"  {cat:<52} {len(items):>5}   e.g. {ex}")
    print()
    print(f"elapsed: {stats['elapsed']:.1f} s for the comparison ({total / max(stats['elapsed'], 1e-9):.0f} "
          f"molecules/s), {load_s:.1f} s to read the official graphs")

    if args.all_variants:
        print()
        print(f"{'variant':<18} {'(a) ids':>14} {'(b) #bonds':>14} {'(c) bonds':>14}  description")
        for v, desc in VARIANTS.items():
            st, _ = run(v, pairs, official)
            cells = [f"{st[k]:>5} {pct(st[k], total)}" for k in ("ids", "nbonds", "bonds")]
            print(f"{v:<18} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}  {desc}")


if __name__ == "__main__":
    main()
