"""Glycan names in ChEBI's residue notation turned into SMILES and structures (the ``glycans`` name source).

ChEBI names oligosaccharides by their residues and linkages, non-reducing end first:
"beta-D-Galp-(1->4)-beta-D-GlcpNAc", "alpha-L-Fucp-(1->2)-[alpha-D-GalpNAc-(1->3)]-beta-D-Galp-(1->4)-D-Glcp",
"Alpha-Neup5Ac-(2->3)-beta-D-Galp-(1->4)-beta-D-Glc-(1<->1')-Cer(d18:1/18:0)". A bracketed chain ("[...]" or
"{...}") is a branch on the residue that follows it; each "-(a->b)-" bonds the anomeric carbon ``a`` of the
residue before it to the oxygen at position ``b`` of the residue it leads to (its own anomeric oxygen leaves).
The last residue is the reducing end: a free sugar, or bonded to an aglycon ("OMe", "O[CH2]5NH2", "1P",
"-1-diphospho-...-undecaprenol", "(1<->1')-Cer(d18:1/...)", an alditol such as "D-ribitol").

Stereo descriptors (alpha/beta, D/L, "L-alpha-D-Hepp") are read and dropped: the challenge graphs carry no
stereo, so Glc, Gal and Man give the same graph; what matters is the carbon count, the ring (p/f), deoxy,
amino and acid positions and the substituents. ``glycan_smiles`` gives a SMILES (no stereo) or None for
anything it does not fully understand (unknown residue, polymer repeat, a linkage to a taken position);
nothing raises. Its own parser, no dependency: measured against a ChEBI-to-condensed translation fed to
GlyLES in docs/experiments.md "Names 3.0: glycans".
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

MAX_GLYCAN_CHARS = 1500
MAX_RESIDUES = 40

# ------------------------------------------------------------------ monosaccharides
#
# A residue: carbons 1..n in a chain, the anomeric carbon ``anomeric``, and at each carbon one of
# "O" (hydroxy), "H" (deoxy), "N" (amino), "A" (carboxylic acid carbon). The ring oxygen replaces the
# hydroxy of carbon anomeric + 4 (pyranose) or + 3 (furanose).


@dataclass(frozen=True)
class Monosaccharide:
    carbons: int
    anomeric: int | None          # None: an alditol or inositol (no anomeric carbon)
    groups: str                   # one letter per carbon, from carbon 1
    ring: str = "p"               # default ring when the name gives none ("" for none)
    amino_position: int = 2       # where "N", "NAc" of the name go
    cyclitol: bool = False        # inositol: carbons 1 and 6 bonded


_HEXOSE = Monosaccharide(6, 1, "OOOOOO")
_DEOXY6 = Monosaccharide(6, 1, "OOOOOH")
_DIDEOXY36 = Monosaccharide(6, 1, "OOHOOH")
_DIDEOXY26 = Monosaccharide(6, 1, "OHOOOH")
_PENTOSE = Monosaccharide(5, 1, "OOOOO")
_KETOHEXOSE = Monosaccharide(6, 2, "OOOOOO", ring="f")
MONOSACCHARIDES = {
    **{b: _HEXOSE for b in ("Glc", "Gal", "Man", "All", "Alt", "Gul", "Ido", "Tal", "Hex")},
    **{b: _DEOXY6 for b in ("Fuc", "Rha", "Qui", "dHex")},
    **{b: _DIDEOXY36 for b in ("Abe", "Tyv", "Par", "Col")},
    **{b: _DIDEOXY26 for b in ("Oli", "Dig", "Boi")},
    **{b: _PENTOSE for b in ("Xyl", "Ara", "Rib", "Lyx", "Pen")},
    **{b: _KETOHEXOSE for b in ("Fru", "Tag", "Sor", "Psi")},
    "Hep": Monosaccharide(7, 1, "OOOOOOO"),
    "Kdo": Monosaccharide(8, 2, "AOHOOOOO"),
    "Ko": Monosaccharide(8, 2, "AOOOOOOO"),
    "Neu": Monosaccharide(9, 2, "AOHONOOOO", amino_position=5),
    "Kdn": Monosaccharide(9, 2, "AOHOOOOOO"),
    "ribitol": Monosaccharide(5, None, "OOOOO", ring=""),
    "Gro": Monosaccharide(3, None, "OOO", ring=""),
    "Ins": Monosaccharide(6, None, "OOOOOO", ring="", cyclitol=True),
}
# other spellings ChEBI uses (one typo included: "Gclp" for "Glcp")
_BASE_ALIASES = {"KDN": "Kdn", "KDO": "Kdo", "Gcl": "Glc", "Rib-ol": "ribitol", "ribitol": "ribitol",
                 "glycerol": "Gro"}
_BASES = sorted(set(MONOSACCHARIDES) | set(_BASE_ALIASES), key=len, reverse=True)

# substituents on a residue's heteroatom, as SMILES whose first atom bonds to it
GROUPS = {"Ac": "C(C)=O", "Gc": "C(=O)CO", "Fo": "C=O", "Me": "C", "Et": "CC", "All": "CC=C",
          "S": "S(=O)(=O)O", "P": "P(=O)(O)O", "PEtn": "P(=O)(O)OCCN", "PEA": "P(=O)(O)OCCN",
          "PP": "P(=O)(O)OP(=O)(O)O",
          # lipid A's acyl chains: (R)-3-hydroxytetradecanoyl, and its 3-O-dodecanoyl and 3-O-tetradecanoyl esters
          "Hmy": "C(=O)CC(O)CCCCCCCCCCC", "Lmy": "C(=O)CC(OC(=O)CCCCCCCCCCC)CCCCCCCCCCC",
          "Mmy": "C(=O)CC(OC(=O)CCCCCCCCCCCCC)CCCCCCCCCCC"}
# lipid A (Escherichia coli's, as ChEBI draws it) and its relatives, as residues of this notation; a linkage
# "(2->6)-lipid A" reaches the 6-oxygen of its non-reducing glucosamine (the first residue written)
LIPIDS = {"lipid A": "beta-D-GlcpN3Mmy2Lmy4P-(1->6)-alpha-D-GlcpN3Hmy2Hmy1P",
          "lipid IVA": "beta-D-GlcpN3Hmy2Hmy4P-(1->6)-alpha-D-GlcpN3Hmy2Hmy1P",
          "(de-O-acylated lipid A)": "beta-D-GlcpN2Hmy4P-(1->6)-alpha-D-GlcpN2Hmy1P"}

_RESIDUE = re.compile(
    r"^(?P<base>" + "|".join(map(re.escape, _BASES)) + r")(?P<ring>[pf])?"
    r"(?P<amino>5Ac|5Gc|NAc|NGc|NS|NFo|N|Ac|Gc)?(?P<acid>A)?"
    r"(?P<mods>(?:\d(?:PEtn|PEA|NAc|NFo|NS|SMe|Me|Ac|S|P|N|deoxy|Hmy|Lmy|Mmy))*)(?P<ring2>[pf])?$")
_MOD = re.compile(r"(\d)(PEtn|PEA|NAc|NFo|NS|SMe|Me|Ac|S|P|N|deoxy|Hmy|Lmy|Mmy)")
# stereo words before the residue symbol: anomer, configuration ("L-alpha-D-", "alpha-LD-", "BetaD-")
_STEREO = re.compile(r"^(?:(?:alpha|beta|[αβab](?=-))-?|(?:[DL]{1,2}|[DL]-glycero-[DL]-\w+?)(?:-|(?=[A-Z])))*", re.I)
_PREFIX_MOD = re.compile(r"^(\d)-(PEtn|PEA|deoxy|O-methyl|O-acetyl|O-sulfo|P)-")
_PREFIX_WORDS = {"O-methyl": "Me", "O-acetyl": "Ac", "O-sulfo": "S"}
_PETN_WORDS = re.compile(r"(?<![\w)\]])(\d)-O-\[\(2-aminoethyl\)phosphoryl\]-")
# a repeating unit "[8)-alpha-Neu5Ac-(2->]5": that many units in a chain ("n": one unit), ends free
_REPEAT = re.compile(r"^\[(\d)\)-(?P<unit>.+)-\((\d)->\](\d{1,2}|n)$")

# ------------------------------------------------------------------ aglycons at the reducing end

_O_CH2 = re.compile(r"O\[CH2\](\d{1,2})(NH2|N3|SH|OH|CH=CH2|CO2Me|CO2H|NHAc)?$")
_O_CH2_ENDS = {None: "", "NH2": "N", "N3": "N=[N+]=[N-]", "SH": "S", "OH": "O", "CH=CH2": "C=C",
               "CO2Me": "C(=O)OC", "CO2H": "C(=O)O", "NHAc": "NC(C)=O"}
_SIMPLE_AGLYCONS = {"OMe": "C", "OEt": "CC", "OAll": "CC=C", "OPr": "CCC", "OBn": "Cc1ccccc1",
                    "OCH2CH2NH2": "CCN", "OC6H4-4-OMe": "c1ccc(OC)cc1", "OPh": "c1ccccc1",
                    "OC6H4-4-NO2": "c1ccc([N+](=O)[O-])cc1", "OpNP": "c1ccc([N+](=O)[O-])cc1"}
_PRENOLS = {"penta": 5, "hexa": 6, "hepta": 7, "octa": 8, "nona": 9, "deca": 10, "undeca": 11, "dodeca": 12}
_PRENYL_PHOSPHATE = re.compile(r"-?(?:1-)?(?P<p>di|mono|)phospho-(?:[\w,]+-)?(?P<n>" + "|".join(_PRENOLS) +
                               r")prenol$")
_CERAMIDE = re.compile(r"-?\(1<?->1'\)-Cer\((?P<base>[dt])(?P<n>\d\d):(?P<k>[01])/(?P<m>\d\d?):(?P<j>\d)"
                       r"(?:\((?P<db>\d{1,2}[EZ]?(?:,\d{1,2}[EZ]?)*)\))?\)$")


def prenyl_smiles(units: int) -> str:
    """A polyprenyl chain of ``units`` isoprene units, its CH2-O end first (no double-bond geometry)."""
    return "CC=C(C)C" + "CC=C(C)C" * (units - 1)


def ceramide_smiles(base: str, n: int, k: int, m: int, j: int, db: str | None) -> str | None:
    """A ceramide "Cer(d18:1/24:1(15Z))", its C1 first: the sphingoid base (d: 1,3-diol, a 4-double bond
    when k is 1; t: 1,3,4-triol) N-acylated by an m-carbon acid with j double bonds at the positions
    ``db`` gives (None when they are not given)."""
    if base == "t" and k or n < 6 or m < 2:
        return None
    positions = {int(re.match(r"\d+", p).group()) for p in db.split(",")} if db else set()
    if len(positions) != j or any(not 2 <= p < m for p in positions):
        return None
    acyl = "C(=O)" + "".join("C" + ("=" if i in positions else "") for i in range(2, m + 1))
    if base == "t":
        tail = "C(O)" + "C" * (n - 4)
    elif k:
        tail = "C=C" + "C" * (n - 5)
    else:
        tail = "C" * (n - 3)
    return f"CC(N{acyl})C(O){tail}"


def split_aglycon(name: str) -> tuple[str, str | None]:
    """(the name without its reducing-end aglycon, the aglycon's SMILES, first atom bonded to the
    anomeric oxygen; "" for none). An aglycon it does not know: (name, None) when one is obvious."""
    m = _CERAMIDE.search(name)
    if m:
        smiles = ceramide_smiles(m["base"], int(m["n"]), int(m["k"]), int(m["m"]), int(m["j"]), m["db"])
        return name[:m.start()], smiles
    m = _PRENYL_PHOSPHATE.search(name)
    if m:
        phosphate = GROUPS["PP"] if m["p"] == "di" else GROUPS["P"]
        return name[:m.start()], phosphate + prenyl_smiles(_PRENOLS[m["n"]])
    m = _O_CH2.search(name)
    if m:
        return name[:m.start()].rstrip("-"), "C" * int(m[1]) + _O_CH2_ENDS[m[2]]
    for tail, smiles in sorted(_SIMPLE_AGLYCONS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(tail) and len(name) > len(tail) and not name[-len(tail) - 1].isdigit():
            return name[:-len(tail)].rstrip("-"), smiles
    return name, ""


# ------------------------------------------------------------------ parsing


@dataclass
class Residue:
    symbol: str                    # the residue as written (for messages)
    sugar: Monosaccharide
    ring: str                      # "p", "f", "" (none), "?" (not written: chosen from the linkages)
    groups: list                   # per carbon 1..n: "O", "H", "N", "A", "S" (thio)
    decorations: list = field(default_factory=list)   # (position, group key of GROUPS)
    unsaturated: int = 0           # Delta(4): a 4,5-double bond (4-deoxy-hex-4-enopyranuronic acid)
    anomer: str = ""               # "a", "b" or "" as written (not drawn: the graphs have no stereo)


_LINK = r"\((\d)->(\d)\)"
_TOKEN = re.compile(_LINK + r"|([\[\]{}])|([^\[\]{}()]+(?:\(\d\)[^\[\]{}()]*)?)")


def parse_residue(text: str) -> Residue | None:
    """One residue symbol with its stereo words, prefixes and position modifiers ("alpha-D-GlcpNAc6S",
    "3-PEA-L-alpha-D-Hepp", "Delta(4)-beta-D-GlcpA"); None when it is not one."""
    text = text.strip("- ")
    unsaturated = 0
    if text.startswith(("Delta(4)", "Delta4", "delta4", "\u03944")):
        unsaturated = 4
        text = re.sub(r"^(?:Delta\(4\)|[Dd]elta4|\u03944)-?", "", text)
    prefixes = []
    while True:
        m = _PREFIX_MOD.match(text)
        if not m:
            break
        prefixes.append((int(m[1]), _PREFIX_WORDS.get(m[2], m[2])))
        text = text[m.end():]
    stereo = _STEREO.match(text).group(0)
    anomer = "a" if re.search("alpha|\u03b1", stereo, re.I) else "b" if re.search("beta|\u03b2", stereo, re.I) else ""
    text = re.sub(r"-(\d)-phosphate$", r"\1P", text[len(stereo):]).replace("-", "")
    m = _RESIDUE.match(text)
    if not m:
        return None
    base = _BASE_ALIASES.get(m["base"], m["base"])
    sugar = MONOSACCHARIDES[base]
    if m["ring"] and m["ring2"]:
        return None
    ring = m["ring"] or m["ring2"] or ("?" if sugar.ring else "")
    if ring and not sugar.ring:
        return None
    groups = list(sugar.groups)
    decorations = []
    amino = m["amino"]
    if amino:
        if base == "Neu":
            if amino not in ("5Ac", "5Gc", "NAc", "NGc", "Ac", "Gc"):
                return None
            decorations.append((5, "Gc" if "Gc" in amino else "Ac"))
        elif amino in ("5Ac", "5Gc", "Ac", "Gc") or sugar.anomeric is None:
            return None
        else:
            p = sugar.amino_position
            groups[p - 1] = "N"
            if amino != "N":
                decorations.append((p, {"NAc": "Ac", "NGc": "Gc", "NS": "S", "NFo": "Fo"}[amino]))
    if m["acid"]:
        if groups[-1] != "O" or sugar.anomeric is None:
            return None
        groups[-1] = "A"
    for position, mod in [*prefixes, *((int(p), x) for p, x in _MOD.findall(m["mods"]))]:
        if not 1 <= position <= sugar.carbons:
            return None
        if mod == "deoxy":
            groups[position - 1] = "H"
        elif mod in ("N", "NAc", "NFo", "NS"):
            groups[position - 1] = "N"
            if mod != "N":
                decorations.append((position, {"NAc": "Ac", "NFo": "Fo", "NS": "S"}[mod]))
        elif mod == "SMe":
            groups[position - 1] = "S"
            decorations.append((position, "Me"))
        else:
            decorations.append((position, mod))
    return Residue(text, sugar, ring, groups, decorations, unsaturated, anomer)


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
    m = _REPEAT.match(name)
    if m:
        copies = 1 if m[4] == "n" else int(m[4])
        if not 1 <= copies <= MAX_RESIDUES:
            return None
        name = f"-({m[3]}->{m[1]})-".join([m["unit"]] * copies)
    name = _PETN_WORDS.sub(r"\1-PEtn-", name)
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
        pending, last = _parse_sequence(tokens, 0, residues, links, top=True)
    except _Unparsable:
        return None
    if not residues or len(residues) > MAX_RESIDUES:
        return None
    if alditol:
        root = residues[-1]
        if root.sugar.anomeric is None or "A" in root.groups:
            return None
        residues[-1] = replace(root, sugar=replace(root.sugar, anomeric=None, ring=""), ring="")
    if not links and (aglycon == "" or residues[-1].sugar.anomeric is None):
        # one residue: only when written as a glycan residue ("beta-D-GlcpNAc", "alpha-D-ManpOMe")
        if not re.search(r"[a-z][pf](?:N|A|\d|$)", residues[-1].symbol) and not aglycon:
            return None
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


def build_smiles(glycan: Glycan) -> str | None:
    """The SMILES of a parsed glycan (no stereo), None when its linkages do not fit its residues."""
    from molret.chem.smiles_graph import rdkit_chem
    Chem = rdkit_chem()
    rw = Chem.RWMol()

    def add(symbol: str) -> int:
        return rw.AddAtom(Chem.Atom(symbol))

    def attach(at: int, smiles: str) -> None:
        fragment = _fragment(smiles)
        if fragment is None:
            raise _Unparsable
        offset = rw.GetNumAtoms()
        rw.InsertMol(fragment)
        rw.AddBond(at, offset, Chem.BondType.SINGLE)

    acceptor_positions: dict = {}
    for d, a, acc, b in glycan.links:
        acceptor_positions.setdefault(acc, set()).add(b)
    heteroatoms = []       # per residue: position -> its O/N/S atom (None: the ring oxygen or no heteroatom)
    carbons_of = []
    try:
        for r, residue in enumerate(glycan.residues):
            sugar = residue.sugar
            wanted = acceptor_positions.get(r, set()) | {p for p, _ in residue.decorations}
            ring = _ring_position(residue, wanted)
            if sugar.anomeric is not None and ring is None:
                raise _Unparsable
            carbons = [add("C") for _ in range(sugar.carbons)]
            for x, y in zip(carbons, carbons[1:]):
                rw.AddBond(x, y, Chem.BondType.SINGLE)
            if sugar.cyclitol:
                rw.AddBond(carbons[0], carbons[-1], Chem.BondType.SINGLE)
            atoms: dict = {}
            for position, group in enumerate(residue.groups, start=1):
                c = carbons[position - 1]
                if position == ring:
                    o = add("O")
                    rw.AddBond(c, o, Chem.BondType.SINGLE)
                    rw.AddBond(carbons[sugar.anomeric - 1], o, Chem.BondType.SINGLE)
                    atoms[position] = None
                elif group == "A":
                    o = add("O")
                    rw.AddBond(c, o, Chem.BondType.DOUBLE)
                    atoms[position] = add("O")
                    rw.AddBond(c, atoms[position], Chem.BondType.SINGLE)
                elif group in "ONS":
                    atoms[position] = add(group)
                    rw.AddBond(c, atoms[position], Chem.BondType.SINGLE)
                else:
                    atoms[position] = None
            if residue.unsaturated:
                p = residue.unsaturated
                if atoms.get(p) is None or p + 1 > sugar.carbons:
                    raise _Unparsable
                rw.GetAtomWithIdx(atoms[p]).SetAtomicNum(0)    # removed below (marked as a dummy)
                atoms[p] = None
                rw.GetBondBetweenAtoms(carbons[p - 1], carbons[p]).SetBondType(Chem.BondType.DOUBLE)
            for position, key in residue.decorations:
                at = atoms.get(position)
                if at is None:
                    raise _Unparsable
                attach(at, GROUPS[key])
            heteroatoms.append(atoms)
            carbons_of.append(carbons)
        taken: set = set()
        for d, a, acc, b in glycan.links:
            donor = glycan.residues[d].sugar
            if donor.anomeric != a or (acc, b) in taken or (d, a) in taken:
                raise _Unparsable
            o = heteroatoms[acc].get(b)
            leaving = heteroatoms[d].get(a)
            if o is None or leaving is None:
                raise _Unparsable
            rw.GetAtomWithIdx(leaving).SetAtomicNum(0)
            rw.AddBond(carbons_of[d][a - 1], o, Chem.BondType.SINGLE)
            taken |= {(acc, b), (d, a)}
        root = len(glycan.residues) - 1
        if glycan.aglycon:
            anomeric = glycan.residues[root].sugar.anomeric
            o = heteroatoms[root].get(anomeric) if anomeric else None
            if o is None or (root, anomeric) in taken:
                raise _Unparsable
            attach(o, glycan.aglycon)
        if any(residue.sugar.anomeric is None for residue in glycan.residues[:-1]):
            raise _Unparsable          # an alditol can only be the reducing end
    except (_Unparsable, RuntimeError, ValueError):
        return None
    for atom in sorted((a.GetIdx() for a in rw.GetAtoms() if a.GetAtomicNum() == 0), reverse=True):
        rw.RemoveAtom(atom)
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # noqa: BLE001 - RDKit's own error types
        return None
    if len(Chem.GetMolFrags(mol)) != 1:
        return None
    return Chem.MolToSmiles(mol)


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
        """This module's source text: any change to the parser changes the cached resolutions' key."""
        return hashlib.sha1(Path(__file__).read_bytes()).hexdigest()

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
