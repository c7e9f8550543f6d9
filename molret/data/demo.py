"""A small, self-contained DEMO dataset in the challenge layout, built
offline from molecules bundled with RDKit (NCI first_5K.smi).

Descriptions are composed from each molecule's formula, size, rings and
functional groups (RDKit's fragment counters); substructure embeddings are
pseudo-random vectors derived deterministically from each identifier. It
exists to exercise the whole pipeline in minutes; its scores say nothing
about the real challenge.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from molret.utils.files import atomic_write_text

DEMO_VERSION = 1
DEMO_DIM = 300

# RDKit fragment counters -> words used in the descriptions.
_GROUPS = {
    "fr_COO": "carboxylic acid", "fr_ester": "ester", "fr_ether": "ether", "fr_ketone": "ketone",
    "fr_aldehyde": "aldehyde", "fr_Ar_OH": "phenol", "fr_Al_OH": "aliphatic hydroxy", "fr_amide": "amide",
    "fr_NH2": "primary amine", "fr_NH1": "secondary amine", "fr_nitro": "nitro", "fr_nitrile": "nitrile",
    "fr_halogen": "halogen", "fr_sulfonamd": "sulfonamide", "fr_sulfide": "sulfide", "fr_benzene": "benzene ring",
    "fr_pyridine": "pyridine ring", "fr_furan": "furan ring", "fr_thiophene": "thiophene ring",
    "fr_imidazole": "imidazole ring", "fr_lactone": "lactone", "fr_azo": "azo", "fr_urea": "urea",
    "fr_phos_acid": "phosphoric acid", "fr_quatN": "quaternary nitrogen", "fr_epoxide": "epoxide",
}
_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def describe(mol) -> str:
    from rdkit.Chem import Descriptors, Fragments, rdMolDescriptors
    formula = rdMolDescriptors.CalcMolFormula(mol)
    heavy = mol.GetNumHeavyAtoms()
    rings = rdMolDescriptors.CalcNumRings(mol)
    aromatic = rdMolDescriptors.CalcNumAromaticRings(mol)
    size = "small" if heavy < 12 else "medium-sized" if heavy < 25 else "large"
    kind = "aromatic" if aromatic else ("cyclic" if rings else "acyclic")
    groups = []
    for fn, name in _GROUPS.items():
        n = getattr(Fragments, fn)(mol)
        if n:
            groups.append(f"{_NUMBER.get(n, str(n))} {name}{' groups' if n > 1 and 'ring' not in name else ''}"
                          .replace("ring", "rings" if n > 1 else "ring"))
    text = f"The molecule is a {size} {kind} compound with molecular formula {formula}."
    if groups:
        text += " It contains " + (", ".join(groups[:-1]) + " and " + groups[-1] if len(groups) > 1 else groups[0]) + "."
    else:
        text += " It has no common functional group."
    text += (f" It has {heavy} heavy atoms, {rings} ring{'s' if rings != 1 else ''} and a molecular weight of "
             f"{Descriptors.MolWt(mol):.1f}.")
    return text


def _embedding(identifier: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha1(identifier.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DEMO_DIM).astype(np.float32) * 0.5


def _nci_molecules(n_molecules: int) -> list:
    """(id, RDKit molecule) of the first ``n_molecules`` distinct single-fragment molecules of 3-50 heavy
    atoms in RDKit's bundled NCI sample."""
    from rdkit import Chem, RDConfig, RDLogger
    RDLogger.DisableLog("rdApp.*")
    source = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    records, seen = [], set()
    for line in source.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        mol = Chem.MolFromSmiles(parts[0])
        if mol is None or not (3 <= mol.GetNumHeavyAtoms() <= 50) or len(Chem.GetMolFrags(mol)) > 1:
            continue
        canonical = Chem.MolToSmiles(mol)
        if canonical in seen:
            continue
        seen.add(canonical)
        records.append((parts[1], mol))
        if len(records) == n_molecules:
            break
    return records


def _write_graphs(records: list, out: Path) -> dict:
    """``raw/<cid>.graph`` per molecule and ``token_embedding_dict.npy``; returns cid -> description."""
    from molret.chem.smiles_graph import graph_to_text, mol_to_graph
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    vocab = {}
    texts = {}
    for cid, mol in records:
        edge_index, identifiers = mol_to_graph(mol)
        atomic_write_text(raw / f"{cid}.graph", graph_to_text(edge_index, identifiers))
        for ident in identifiers:
            # Leave ~5% of identifiers out of the dict so the UNK path is exercised, as in the challenge.
            if ident not in vocab and int(ident) % 20:
                vocab[ident] = _embedding(ident)
        texts[cid] = describe(mol)
    vocab["UNK"] = np.zeros(DEMO_DIM, np.float32)
    import io
    buf = io.BytesIO()
    np.save(buf, np.array(vocab, dtype=object), allow_pickle=True)
    from molret.utils.files import atomic_write_bytes
    atomic_write_bytes(out / "token_embedding_dict.npy", buf.getvalue())
    return texts


def make_demo_data(out_dir, n_molecules: int = 600, seed: int = 0, progress: bool = True) -> Path:
    """Write the demo dataset to ``out_dir`` (skipped if already there)."""
    out = Path(out_dir)
    stamp = out / "DEMO.json"
    params = {"version": DEMO_VERSION, "n_molecules": n_molecules, "seed": seed}
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()) == params:
                return out
        except ValueError:
            pass
    records = _nci_molecules(n_molecules)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records))
    records = [records[i] for i in order]
    n_val = n_test = len(records) // 7
    splits = {"test": records[:n_test], "val": records[n_test:n_test + n_val], "train": records[n_test + n_val:]}
    texts = _write_graphs(records, out)
    for name in ("train", "val"):
        atomic_write_text(out / f"{name}.tsv", "".join(f"{cid}\t{texts[cid]}\n" for cid, _ in splits[name]))
    test = splits["test"]
    atomic_write_text(out / "test_cids.txt", "".join(f"{cid}\n" for cid, _ in test))
    shuffled = rng.permutation(len(test))  # queries shuffled against the CIDs, as in the challenge
    atomic_write_text(out / "test_text.txt", "".join(f"{texts[test[i][0]]}\n" for i in shuffled))
    atomic_write_text(out / "test_answers.txt", "".join(f"{test[i][0]}\n" for i in shuffled))
    atomic_write_text(out / "README.md", "# DEMO data (generated by molret.data.demo)\n\nA small synthetic stand-in for the "
                      "challenge data, built from RDKit's bundled NCI molecules with composed descriptions and "
                      "pseudo-random substructure embeddings. Scores on it say nothing about the real challenge.\n"
                      "test_answers.txt gives the true CID of each line of test_text.txt.\n")
    atomic_write_text(stamp, json.dumps(params))
    return out
