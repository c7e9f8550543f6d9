"""Morgan radius-1 environments: RDKit's identifier hash reproduced, and the identifier -> environment table.

Every atom of a challenge graph carries RDKit's radius-1 Morgan identifier
(``molret.chem.smiles_graph`` documents the scheme), a 32-bit hash of

* the atom's invariant ``(Z, total degree, total Hs, formal charge, isotope
  term, in-ring)`` and
* the sorted ``(bond type, neighbour invariant)`` pairs of its bonds,

or, for an atom without bonds or the second atom of a two-atom fragment,
the hash of its invariant alone (radius 0).  ``invariant_hash`` and
``environment_hash`` reproduce RDKit's integer arithmetic exactly (tested
against RDKit); ``EnvironmentTable`` maps identifiers to the environments
known to hash to them; ``radius0_candidates`` inverts radius-0 identifiers
by enumerating invariants.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from molret.utils.errors import MolretError

_U32 = 0xFFFFFFFF
SINGLE, DOUBLE, TRIPLE, AROMATIC = 1, 2, 3, 12        # RDKit's BondType values, as the hash uses them
BOND_TYPES = (SINGLE, DOUBLE, AROMATIC, TRIPLE)        # search order: most frequent first
TABLE_PATH = Path(__file__).resolve().parent / "resources" / "morgan_env_table.tsv.gz"

# An invariant: (atomic number, total degree, total H, formal charge, isotope term, in ring 0/1).
Invariant = tuple


def _combine(seed: int, value: int) -> int:
    """boost::hash_combine on 32 bits, as RDKit's gboost does."""
    value &= _U32
    return seed ^ ((value + 0x9E3779B9 + ((seed << 6) & _U32) + (seed >> 2)) & _U32)


def invariant_hash(inv: Invariant) -> int:
    """The radius-0 identifier of an atom invariant (RDKit hashes the list, with the ring term only when set)."""
    seed = 0
    for v in inv[:5]:
        seed = _combine(seed, v)
    if inv[5]:
        seed = _combine(seed, 1)
    return seed


def environment_hash(center_hash: int, pairs) -> int:
    """The radius-1 identifier: layer 0, the centre's hash, then each sorted
    ``(bond type, neighbour hash)`` pair hashed as a pair."""
    seed = _combine(0, center_hash)
    for bond_type, nbr_hash in sorted(pairs):
        seed = _combine(seed, _combine(_combine(0, bond_type), nbr_hash))
    return seed


@dataclass(frozen=True)
class Environment:
    """A radius-1 environment: the centre's invariant and its sorted (bond type, neighbour invariant) pairs."""
    center: Invariant
    neighbours: tuple

    def identifier(self) -> int:
        return environment_hash(cached_invariant_hash(self.center), [(bt, cached_invariant_hash(n)) for bt, n in self.neighbours])


_hash_memo: dict = {}


def cached_invariant_hash(inv: Invariant) -> int:
    h = _hash_memo.get(inv)
    if h is None:
        h = _hash_memo[inv] = invariant_hash(inv)
    return h


def molecule_environments(mol) -> list[Environment]:
    """The radius-1 environment of every atom with bonds of an RDKit molecule."""
    invs = molecule_invariants(mol)
    out = []
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        if atom.GetDegree() == 0:
            continue
        nbrs = sorted((int(b.GetBondType()), invs[b.GetOtherAtomIdx(i)]) for b in atom.GetBonds())
        out.append(Environment(invs[i], tuple(nbrs)))
    return out


_weights: dict = {}   # atomic number -> average atomic weight (the periodic table lookup is slow)


def molecule_invariants(mol) -> list[Invariant]:
    """Each atom's invariant tuple (what ``invariant_hash`` hashes into its radius-0 identifier).

    RDKit's Morgan connectivity invariants, except for the isotope term, which
    current RDKit releases compute differently; the official graphs use
    ``int(atom mass - average atomic weight)`` (e.g. 1 for deuterium).
    """
    from rdkit import Chem
    if mol.NeedsUpdatePropertyCache():  # unsanitised input: compute implicit Hs
        mol.UpdatePropertyCache(strict=False)
    try:
        mol.GetRingInfo().NumAtomRings(0)
    except RuntimeError:  # ring perception not run (unsanitised molecule)
        Chem.FastFindRings(mol)
    ring_info = mol.GetRingInfo()
    out = []
    for atom in mol.GetAtoms():
        z = atom.GetAtomicNum()
        weight = _weights.get(z)
        if weight is None:
            weight = _weights[z] = Chem.GetPeriodicTable().GetAtomicWeight(z)
        out.append((z, atom.GetTotalDegree(), atom.GetTotalNumHs(), atom.GetFormalCharge(),
                    int(atom.GetMass() - weight), 1 if ring_info.NumAtomRings(atom.GetIdx()) else 0))
    return out


# ------------------------------------------------------------------ tables

def _format_inv(inv: Invariant) -> str:
    return ",".join(str(v) for v in inv)


def _parse_inv(text: str) -> Invariant:
    vals = tuple(int(v) for v in text.split(","))
    if len(vals) != 6:
        raise ValueError(f"an invariant has 6 fields, got {text!r}")
    return vals


class EnvironmentTable:
    """identifier -> the radius-1 environments known to hash to it (usually one)."""

    def __init__(self):
        self.envs: dict[int, list[Environment]] = {}
        self.invariants: set = set()    # every invariant seen, centre or neighbour: the search's first guesses

    def __len__(self) -> int:
        return len(self.envs)

    def add(self, env: Environment, ident: int | None = None) -> bool:
        """Add one environment; False when it was known already."""
        ident = env.identifier() if ident is None else ident
        known = self.envs.setdefault(ident, [])
        if env in known:
            return False
        known.append(env)
        self.invariants.add(env.center)
        self.invariants.update(n for _, n in env.neighbours)
        return True

    def add_molecule(self, mol) -> int:
        """Add every environment of an RDKit molecule; returns how many were new."""
        return sum(self.add(env) for env in molecule_environments(mol))

    def update(self, other: "EnvironmentTable") -> int:
        return sum(self.add(env, ident) for ident, envs in other.envs.items() for env in envs)

    def environments(self):
        for ident, envs in self.envs.items():
            for env in envs:
                yield ident, env

    # -- file format: one environment a line, "centre<TAB>bt:neighbour;bt:neighbour..." (the id is recomputed)
    def save(self, path, header: str = "") -> None:
        from molret.utils.files import atomic_write_bytes
        lines = [f"# {line}" for line in header.splitlines()]
        rows = sorted(f"{_format_inv(env.center)}\t" + ";".join(f"{bt}:{_format_inv(n)}" for bt, n in env.neighbours)
                      for _, env in self.environments())
        text = "\n".join(lines + rows) + "\n"
        atomic_write_bytes(Path(path), gzip.compress(text.encode(), mtime=0))

    @classmethod
    def load(cls, path) -> "EnvironmentTable":
        path = Path(path)
        try:
            text = gzip.decompress(path.read_bytes()).decode()
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise MolretError(f"cannot read the environment table {path}: {e}") from None
        table = cls()
        for n, line in enumerate(text.splitlines(), 1):
            if not line or line.startswith("#"):
                continue
            try:
                center, nbrs = line.split("\t")
                pairs = tuple(sorted((int(p.split(":")[0]), _parse_inv(p.split(":")[1])) for p in nbrs.split(";")))
                table.add(Environment(_parse_inv(center), pairs))
            except (ValueError, IndexError) as e:
                raise MolretError(f"{path}: line {n}: not an environment ({e})") from None
        return table

    @classmethod
    def shipped(cls) -> "EnvironmentTable":
        """The table shipped with molret (ChEBI structures, CC BY 4.0)."""
        return cls.load(TABLE_PATH)


# ------------------------------------------------------- radius-0 inversion

_radius0_memo: dict = {}


_isotope_memo: dict = {}


def _isotopes(z: int) -> list:
    """(mass number, isotope term int(mass - average weight)) of element z's isotopes RDKit knows, lightest first."""
    if z not in _isotope_memo:
        from rdkit import Chem
        table = Chem.GetPeriodicTable()
        avg = table.GetAtomicWeight(z)
        nominal = int(round(avg))
        found = []
        for a in range(max(1, nominal - 12), nominal + 13):
            try:
                m = table.GetMassForIsotope(z, a)
            except RuntimeError:
                continue
            if m > 0:
                found.append((a, int(m - avg)))
        _isotope_memo[z] = found
    return _isotope_memo[z]


def _isotope_terms() -> dict:
    """Z -> the isotope terms its isotopes can have (0 always first); Z 0 is a dummy atom (*)."""
    out = {0: [0]}
    for z in range(1, 119):
        terms = {0} | {t for _, t in _isotopes(z)}
        out[z] = sorted(terms, key=lambda t: (t != 0, abs(t), t))
    return out


def invariant_hashes(invariants):
    """``invariant_hash`` of every row of an int64 array [N, 6], vectorised (uint64 arithmetic masked to 32 bits)."""
    import numpy as np
    inv = np.asarray(invariants, dtype=np.int64)
    mask = np.uint64(_U32)
    seed = np.zeros(len(inv), dtype=np.uint64)

    def combine(seed, value):
        value = value.astype(np.uint64) & mask
        return seed ^ ((value + np.uint64(0x9E3779B9) + ((seed << np.uint64(6)) & mask) + (seed >> np.uint64(2)))
                       & mask)
    for col in range(5):
        seed = combine(seed, inv[:, col])
    ring = inv[:, 5] != 0
    seed[ring] = combine(seed[ring], np.ones(int(ring.sum()), dtype=np.int64))
    return seed


def radius0_candidates(heavy_degree: int, in_ring: int, ident: int) -> list:
    """The invariants with this heavy degree and ring flag whose radius-0 identifier is ``ident``."""
    import numpy as np
    key = (heavy_degree, in_ring)
    memo = _radius0_memo.get(key)
    if memo is None:
        parts = []
        for z, terms in _isotope_terms().items():
            # H 0-8 and charges -8..+8: PubChem has e.g. [AsH8+5] and [Cr+6]
            h, q, t = (a.ravel() for a in np.meshgrid(np.arange(9), np.arange(-8, 9), np.asarray(terms), indexing="ij"))
            parts.append(np.stack([np.full_like(h, z), heavy_degree + h, h, q, t, np.full_like(h, in_ring)], axis=1))
        invs = np.concatenate(parts).astype(np.int64)
        hashes = invariant_hashes(invs)
        order = np.argsort(hashes, kind="stable")
        memo = _radius0_memo[key] = (hashes[order], invs[order])
    hashes, invs = memo
    lo, hi = np.searchsorted(hashes, ident, "left"), np.searchsorted(hashes, ident, "right")
    return [tuple(int(v) for v in row) for row in invs[lo:hi]]


def plausible_invariants(heavy_degree: int, in_ring: int, known: set) -> list:
    """Invariants to try for an atom nothing constrains: those seen in known structures first."""
    seen = [inv for inv in known if inv[1] - inv[2] == heavy_degree and inv[5] == in_ring]
    seen.sort()
    return seen


def isotope_for(z: int, term: int) -> int:
    """The lightest isotope of element z whose term int(mass - average weight) is ``term`` (0: none; -1: no such)."""
    if term == 0:
        return 0
    return next((a for a, t in _isotopes(z) if t == term), -1)
