"""Glycan names in ChEBI's residue notation turned into SMILES and structures (the ``glycans`` name source).

ChEBI names oligosaccharides by their residues and linkages, non-reducing end first:
"beta-D-Galp-(1->4)-beta-D-GlcpNAc", "alpha-L-Fucp-(1->2)-[alpha-D-GalpNAc-(1->3)]-beta-D-Galp-(1->4)-D-Glcp",
"Alpha-Neup5Ac-(2->3)-beta-D-Galp-(1->4)-beta-D-Glc-(1<->1')-Cer(d18:1/18:0)". A bracketed chain ("[...]" or
"{...}") is a branch on the residue that follows it; each "-(a->b)-" bonds the anomeric carbon ``a`` of the
residue before it to the oxygen at position ``b`` of the residue it leads to (its own anomeric oxygen leaves).
The last residue is the reducing end: a free sugar, its alditol ("-D-Glc-OH"), or bonded to an aglycon
("OMe", "O[CH2]5NH2", "1P", "-1-diphospho-...-undecaprenol", "(1<->1')-Cer(d18:1/...)", "lipid A", an
alditol such as "D-ribitol"). A repeating unit "[8)-alpha-Neu5Ac-(2->]5" is that many units in a chain.

Stereo descriptors (alpha/beta, D/L, "L-alpha-D-Hepp") are read and dropped: the challenge graphs carry no
stereo, so Glc, Gal and Man give the same graph; what matters is the carbon count, the ring (p/f), deoxy,
amino and acid positions and the substituents. ``glycan_smiles`` gives a SMILES (no stereo) or None for
anything it does not fully understand (an unknown residue or modifier, a linkage to a taken or missing
position, ChEBI's word forms such as "beta-D-galactosyl-(1->4)-..." which are OPSIN's); nothing raises. Its own parser, no dependency: measured against a ChEBI-to-condensed translation fed to
GlyLES in docs/experiments.md "Names 3.0: glycans".
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from molret.names import glycan_residues
from molret.names.glycan_residues import GROUPS, LIPIDS, PETN_WORDS, REPEAT_UNIT, Residue, parse_residue, split_aglycon

MAX_GLYCAN_CHARS = 1500
MAX_RESIDUES = 40
_LINK = r"\((\d)->(\d)\)"
_TOKEN = re.compile(_LINK + r"|([\[\]{}])|([^\[\]{}()]+(?:\(\d\)[^\[\]{}()]*)?)")


@dataclass
class Glycan:
    residues: list                 # Residue, the reducing end last
    links: list                    # (donor index, donor carbon, acceptor index, acceptor position)
    aglycon: str                   # SMILES bonded to the reducing end's anomeric oxygen ("": none)


class _Unparsable(Exception):
    pass


def parse_glycan(name: str) -> Glycan | None:
    """The residues and linkages of a ChEBI glycan name (module docstring); None when it is not one."""
    name = " ".join(str(name).split())
    if not name or len(name) > MAX_GLYCAN_CHARS:
        return None
    m = REPEAT_UNIT.match(name)
    if m:
        copies = 1 if m[4] == "n" else int(m[4])
        if not 1 <= copies <= MAX_RESIDUES:
            return None
        name = f"-({m[3]}->{m[1]})-".join([m["unit"]] * copies)
    name = PETN_WORDS.sub(r"\1-PEtn-", name)
    for lipid, residues in LIPIDS.items():
        if name.endswith("-" + lipid):
            name = name[:-len(lipid)] + residues
    if " " in name:
        return None    # prose or a salt ("... sodium salt")
    # "...-D-Glc-OH": the reducing end reduced to its alditol (glucitol), as ChEBI writes it
    alditol = name.endswith("-OH") and not name.endswith("p-OH") and not name.endswith("f-OH")
    core, aglycon = (name[:-3], "") if alditol else split_aglycon(name)
    if aglycon is None:
        return None
    residues, links = [], []
    tokens = [t for t in _TOKEN.finditer(core)]
    if "".join(t.group(0) for t in tokens) != core:
        return None
    try:
        _parse_sequence(tokens, 0, residues, links, top=True)
    except _Unparsable:
        return None
    if not residues or len(residues) > MAX_RESIDUES:
        return None
    if alditol:
        root = residues[-1]
        if root.sugar.anomeric is None or "A" in root.groups:
            return None
        residues[-1] = replace(root, sugar=replace(root.sugar, anomeric=None, ring=""), ring="")
    if not links and not aglycon and not re.search(r"[a-z][pf](?:N|A|\d|$)", residues[-1].symbol):
        return None     # one bare residue ("Gal", "Man": words too) only with its ring letter ("beta-D-GlcpNAc")
    return Glycan(residues, links, aglycon)


def _parse_sequence(tokens, start: int, residues: list, links: list, top: bool):
    """Parse tokens from ``start`` to the matching close bracket (or the end at ``top``); returns (the
    donors left waiting for the next residue: (index, donor carbon, acceptor position), next token)."""
    pending: list = []
    last = None            # index of the last residue read at this level, until a linkage takes it
    i = start
    while i < len(tokens):
        t = tokens[i]
        if t.group(1):                                   # a linkage (a->b)
            if last is None:
                raise _Unparsable
            pending.append((last, int(t.group(1)), int(t.group(2))))
            last = None
            i += 1
        elif t.group(3) in ("[", "{"):
            sub_pending, i = _parse_sequence(tokens, i + 1, residues, links, top=False)
            if not sub_pending or last is not None:
                raise _Unparsable
            pending += sub_pending
        elif t.group(3) in ("]", "}"):
            if top or last is not None:
                raise _Unparsable
            return pending, i + 1
        else:
            text = t.group(4).strip("-")
            if not text:
                i += 1
                continue
            if last is not None:
                raise _Unparsable                         # two residues without a linkage
            residue = parse_residue(text)
            if residue is None:
                raise _Unparsable
            residues.append(residue)
            last = len(residues) - 1
            links += [(d, a, last, b) for d, a, b in pending]
            pending = []
            i += 1
    if not top or pending or last is None:
        raise _Unparsable
    return pending, i


# ------------------------------------------------------------------ building the molecule

def _ring_position(residue: Residue, wanted: set) -> int | None:
    """The carbon whose oxygen closes the ring (None: no ring); an unwritten ring is a pyranose unless
    a linkage or substituent needs that oxygen (then a furanose)."""
    sugar = residue.sugar
    if sugar.anomeric is None:
        return None
    ring = residue.ring
    if ring == "?":
        ring = "f" if sugar.anomeric + 4 in wanted or sugar.anomeric + 4 > sugar.carbons else sugar.ring
    position = sugar.anomeric + (4 if ring == "p" else 3)
    return position if position <= sugar.carbons else None


@lru_cache(maxsize=64)
def _fragment(smiles: str):
    from molret.chem.smiles_graph import rdkit_chem
    return rdkit_chem().MolFromSmiles(smiles)


class _Builder:
    """An RDKit molecule built residue by residue; atoms that leave are marked (atomic number 0) and
    removed at the end, so that indices stay valid."""

    def __init__(self):
        from molret.chem.smiles_graph import rdkit_chem
        self.Chem = rdkit_chem()
        self.rw = self.Chem.RWMol()

    def atom(self, symbol: str, bonded_to: int | None = None, double: bool = False) -> int:
        i = self.rw.AddAtom(self.Chem.Atom(symbol))
        if bonded_to is not None:
            self.bond(bonded_to, i, double)
        return i

    def bond(self, a: int, b: int, double: bool = False) -> None:
        self.rw.AddBond(a, b, self.Chem.BondType.DOUBLE if double else self.Chem.BondType.SINGLE)

    def attach(self, at: int, smiles: str) -> None:
        """Bond the first atom of a SMILES fragment to atom ``at``."""
        fragment = _fragment(smiles)
        if fragment is None:
            raise _Unparsable
        offset = self.rw.GetNumAtoms()
        self.rw.InsertMol(fragment)
        self.bond(at, offset)

    def leave(self, atom: int) -> None:
        self.rw.GetAtomWithIdx(atom).SetAtomicNum(0)

    def residue(self, residue: Residue, wanted: set) -> tuple[list, dict]:
        """(carbons, position -> heteroatom or None) of one residue; ``wanted``: the positions whose
        oxygen a linkage or substituent needs."""
        sugar = residue.sugar
        ring = _ring_position(residue, wanted)
        if sugar.anomeric is not None and ring is None:
            raise _Unparsable
        carbons = [self.atom("C")]
        for _ in range(sugar.carbons - 1):
            carbons.append(self.atom("C", carbons[-1]))
        if sugar.cyclitol:
            self.bond(carbons[0], carbons[-1])
        atoms: dict = {}
        for position, (c, group) in enumerate(zip(carbons, residue.groups), start=1):
            atoms[position] = None
            if position == ring:
                self.bond(carbons[sugar.anomeric - 1], self.atom("O", c))
            elif group == "A":
                self.atom("O", c, double=True)
                atoms[position] = self.atom("O", c)
            elif group in "ONS":
                atoms[position] = self.atom(group, c)
        if residue.unsaturated:
            p = residue.unsaturated
            if atoms.get(p) is None or p + 1 > sugar.carbons:
                raise _Unparsable
            self.leave(atoms[p])
            atoms[p] = None
            self.rw.GetBondBetweenAtoms(carbons[p - 1], carbons[p]).SetBondType(self.Chem.BondType.DOUBLE)
        for position, group in residue.decorations:
            if atoms.get(position) is None:
                raise _Unparsable
            self.attach(atoms[position], GROUPS[group])
        return carbons, atoms

    def smiles(self) -> str | None:
        for atom in sorted((a.GetIdx() for a in self.rw.GetAtoms() if a.GetAtomicNum() == 0), reverse=True):
            self.rw.RemoveAtom(atom)
        mol = self.rw.GetMol()
        try:
            self.Chem.SanitizeMol(mol)
        except Exception:  # noqa: BLE001 - RDKit's own error types
            return None
        return self.Chem.MolToSmiles(mol) if len(self.Chem.GetMolFrags(mol)) == 1 else None


def build_smiles(glycan: Glycan) -> str | None:
    """The SMILES of a parsed glycan (no stereo), None when its linkages do not fit its residues."""
    build = _Builder()
    wanted: dict = {}
    for d, a, acc, b in glycan.links:
        wanted.setdefault(acc, set()).add(b)
    try:
        built = [build.residue(r, wanted.get(i, set()) | {p for p, _ in r.decorations})
                 for i, r in enumerate(glycan.residues)]
        taken: set = set()
        for d, a, acc, b in glycan.links:
            oxygen, leaving = built[acc][1].get(b), built[d][1].get(a)
            if glycan.residues[d].sugar.anomeric != a or {(acc, b), (d, a)} & taken or None in (oxygen, leaving):
                raise _Unparsable
            build.leave(leaving)
            build.bond(built[d][0][a - 1], oxygen)
            taken |= {(acc, b), (d, a)}
        root = len(glycan.residues) - 1
        if glycan.aglycon:
            anomeric = glycan.residues[root].sugar.anomeric
            oxygen = built[root][1].get(anomeric) if anomeric else None
            if oxygen is None or (root, anomeric) in taken:
                raise _Unparsable
            build.attach(oxygen, glycan.aglycon)
        if any(r.sugar.anomeric is None for r in glycan.residues[:-1]):
            raise _Unparsable          # an alditol can only be the reducing end
    except (_Unparsable, RuntimeError, ValueError):
        return None
    return build.smiles()


def glycan_smiles(name: str) -> str | None:
    """The SMILES (no stereo) of a glycan named in ChEBI's residue notation, None when the name is not
    one this parser fully understands. Never raises."""
    try:
        glycan = parse_glycan(name)
        return build_smiles(glycan) if glycan is not None else None
    except Exception:  # noqa: BLE001 - odd input must not stop a batch
        return None


# ------------------------------------------------------------------ the name source

class GlycanSource:
    """Glycan names -> structures (``molret.names.sources`` order: after OPSIN)."""
    name = "glycans"

    def fingerprint(self) -> str:
        """The parser's source text (both modules): any change to it changes the cached resolutions' key."""
        return hashlib.sha1(b"".join(Path(m).read_bytes() for m in (__file__, glycan_residues.__file__))).hexdigest()

    def lookup(self, names: Sequence[str]) -> list:
        from molret.names.resolve import structure_from_smiles
        out = []
        for n in names:
            smiles = glycan_smiles(n) if _looks_glycan(n) else None
            out.append(structure_from_smiles(n, smiles, source=self.name) if smiles else None)
        return out


_HINT = re.compile(r"\(\d->\d\)|\b(?:alpha|beta)-|[a-z]p\b|[a-z]p(?:NAc|N|A|\d)|(?:Glc|Gal|Man|Neu|Kdo|Fuc|Rha|Xyl)",
                   re.I)


def _looks_glycan(name: str) -> bool:
    """A cheap filter before parsing (most names in a batch are not glycans)."""
    return bool(name) and len(name) <= MAX_GLYCAN_CHARS and bool(_HINT.search(name))
