"""SMILES -> challenge graphs: RDKit molecules to the nodes, edges and Morgan identifiers of `.graph` files.

The ALTEGRAD-2023 graphs have one node per atom, both directions of every
bond, and one Morgan substructure identifier per atom (the mol2vec
vocabulary).  Measured against the 6,601 official graphs whose SMILES are in
ChEBI-20 (``bench/verify_smiles_graphs.py``), the identifiers are:

* RDKit Morgan environments of **radius 1**, unfolded (32-bit identifiers,
  ``GetMorganFingerprint(mol, 1, bitInfo=...)`` / ``GetMorganGenerator(radius=1)``),
  default options: bond types on, no chirality, no feature invariants, no
  hydrogens added (hydrogens count through the atom invariants only);
* per atom, the radius-1 identifier; when RDKit drops an atom's radius-1
  environment as a duplicate of another atom's (e.g. the second atom of a
  diatomic molecule) or the atom has no bonds, its radius-0 identifier;
* atom invariants as RDKit computed them before it changed the isotope term:
  ``[atomic number, total degree, total Hs, formal charge,
  int(mass - average atomic weight), (1 if in a ring)]``, boost-hashed.  The
  current RDKit default differs only for isotope-labelled atoms ([2H] ...),
  so we compute these invariants ourselves (see ``atom_invariants``).

Radius 0 matches 0.5 % of the molecules, radius 2 2 %, chirality 35 %,
radius 1 without the radius-0 fallback 95 %; this choice matches 99.9 %.  The
remaining differences are structures that PubChem (the source of the official
graphs) draws differently from ChEBI (charge placement / resonance forms, a
metal's implicit hydrogens), not something a SMILES option reproduces.
"""
from __future__ import annotations

import numpy as np

from molret.utils.errors import MolretError
from molret.chem.morgan_env import invariant_hash, molecule_invariants

MORGAN_RADIUS = 1
STANDARDIZE_CHOICES = ("none", "normalize", "uncharge")


class SmilesError(MolretError):
    """A SMILES string (or molecule record) that RDKit cannot turn into a molecule."""


_rdkit_quiet = False


def rdkit_chem():
    """Import RDKit lazily with its logger silenced (we report in our own words)."""
    global _rdkit_quiet
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MolretError(f"RDKit is required for SMILES conversion (pip install rdkit): {e}") from None
    if not _rdkit_quiet:
        RDLogger.DisableLog("rdApp.*")
        _rdkit_quiet = True
    return Chem


def rdkit_log_blocked():
    """A context in which RDKit logs nothing (restored after it, whatever it was): for calls that are
    expected to fail now and then and whose reasons we give in our own words."""
    from rdkit import rdBase
    return rdBase.BlockLogs()


def atom_invariants(mol) -> list[int]:
    """RDKit's Morgan connectivity invariants as used for the challenge graphs: the hash of each
    atom's invariant tuple (``molret.chem.morgan_env.molecule_invariants``, which says how it differs
    from RDKit's default)."""
    return [invariant_hash(inv) for inv in molecule_invariants(mol)]


_generators: dict = {}


def atom_identifiers(mol, radius: int = MORGAN_RADIUS) -> list[str]:
    """One Morgan identifier per atom (atom order of ``mol``), as strings.

    The identifier of the largest radius <= ``radius`` that RDKit kept for
    that atom (duplicate environments are dropped by RDKit).
    """
    from rdkit.Chem import rdFingerprintGenerator

    gen = _generators.get(radius)
    if gen is None:
        gen = _generators[radius] = rdFingerprintGenerator.GetMorganGenerator(radius=radius)
    ao = rdFingerprintGenerator.AdditionalOutput()
    ao.AllocateBitInfoMap()
    gen.GetSparseCountFingerprint(mol, customAtomInvariants=atom_invariants(mol), additionalOutput=ao)
    best: list[tuple[int, int] | None] = [None] * mol.GetNumAtoms()
    for ident, envs in ao.GetBitInfoMap().items():
        for atom_idx, r in envs:
            cur = best[atom_idx]
            if cur is None or r > cur[0]:
                best[atom_idx] = (r, ident)
    missing = [i for i, b in enumerate(best) if b is None]
    if missing:  # cannot happen for radius 0 environments; guard anyway
        raise SmilesError(f"RDKit produced no Morgan identifier for atom(s) {missing}")
    return [str(b[1]) for b in best]


def mol_to_graph(mol):
    """RDKit molecule -> ``(edge_index, identifiers)`` in the challenge convention.

    ``edge_index`` is int64 ``[2, 2*bonds]``: for each bond (RDKit order)
    ``(begin, end)`` then ``(end, begin)``; ``identifiers`` has one string per
    atom.  A molecule without bonds gives an empty ``[2, 0]`` edge_index.
    ``mol`` should be sanitised (as ``parse_smiles`` returns it); aromaticity
    and hydrogens are taken as they are in ``mol``.
    """
    if mol is None:
        raise SmilesError("no molecule (None) given to mol_to_graph")
    if mol.GetNumAtoms() == 0:
        raise SmilesError("molecule has no atoms")
    edges = []
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edges.append((a, b))
        edges.append((b, a))
    edge_index = np.array(edges, dtype=np.int64).reshape(-1, 2).T.copy()
    return edge_index, atom_identifiers(mol)


def standardize_mol(mol, standardize: str):
    if standardize == "none":
        return mol
    from rdkit.Chem.MolStandardize import rdMolStandardize
    if standardize == "normalize":
        return rdMolStandardize.Normalize(mol)
    if standardize == "uncharge":
        return rdMolStandardize.Uncharger().uncharge(mol)
    raise MolretError(f"unknown standardize option {standardize!r}; choose from {', '.join(STANDARDIZE_CHOICES)}")


def sanitize_reason(mol) -> str | None:
    """Why RDKit refuses to sanitise ``mol`` (None if it would not)."""
    Chem = rdkit_chem()
    problems = Chem.DetectChemistryProblems(mol)
    if problems:
        msgs = "; ".join(p.Message() for p in problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return f"chemically invalid: {msgs}{more}"
    try:
        Chem.SanitizeMol(Chem.Mol(mol))
    except Exception as e:  # RDKit raises several exception types
        return f"chemically invalid: {e}"
    return None


def parse_smiles(smiles: str, *, standardize: str = "none"):
    """SMILES -> sanitised RDKit molecule (hydrogens removed, isotopes kept).

    Raises SmilesError with the reason (empty, syntax error, valence/aromaticity problem).
    """
    Chem = rdkit_chem()
    if smiles is None or not str(smiles).strip():
        raise SmilesError("empty SMILES")
    smiles = str(smiles).strip()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None:
            raise SmilesError(f"invalid SMILES {smiles!r}: not valid SMILES syntax (unknown element, unclosed ring or "
                              "bracket, or a stray character)")
        raise SmilesError(f"invalid SMILES {smiles!r}: {sanitize_reason(raw) or 'RDKit cannot sanitise it'}")
    if mol.GetNumAtoms() == 0:
        raise SmilesError(f"invalid SMILES {smiles!r}: no atoms")
    return standardize_mol(mol, standardize)


def smiles_to_graph(smiles: str, *, standardize: str = "none"):
    """SMILES -> ``(edge_index, identifiers)``; raises SmilesError on invalid SMILES."""
    return mol_to_graph(parse_smiles(smiles, standardize=standardize))


def graph_to_text(edge_index, identifiers) -> str:
    """Write one graph in the challenge `.graph` format (``"\\n"`` line endings).

    The official files use CRLF line endings; ``molret.chem.graph_format.parse_graph_text``
    accepts both, so the text written here round-trips through it.
    """
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    n = len(identifiers)
    if n == 0:
        raise MolretError("graph_to_text: a graph needs at least one atom")
    if ei.size and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise MolretError(f"graph_to_text: edge_index refers to atoms outside 0..{n - 1}")
    parts = ["edgelist:\n"]
    parts.extend(f"{a} {b}\n" for a, b in zip(ei[0].tolist(), ei[1].tolist()))
    parts.append("\nidx to identifier:\n")
    for i, ident in enumerate(identifiers):
        ident = str(ident)
        if not ident or any(c.isspace() for c in ident):
            raise MolretError(f"graph_to_text: identifier {ident!r} of atom {i} is empty or contains whitespace")
        parts.append(f"{i} {ident}\n")
    return "".join(parts)


def add_smiles(table, smiles_list) -> tuple[int, int]:
    """Add the environments of SMILES strings to a ``molret.chem.morgan_env.EnvironmentTable`` (invalid
    ones skipped); (molecules read, new environments)."""
    read = new = 0
    for smi in smiles_list:
        try:
            mol = parse_smiles(smi)
        except SmilesError:
            continue
        read += 1
        new += table.add_molecule(mol)
    return read, new
