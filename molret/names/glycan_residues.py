"""The residues of ChEBI's glycan notation: monosaccharides, their modifiers, and reducing-end aglycons.

One residue symbol ("alpha-D-GlcpNAc6S", "3-PEA-L-alpha-D-Hepp", "Delta(4)-beta-D-GlcpA",
"Alpha-Neup5Ac") becomes a :class:`Residue`: its carbons with what each carries (hydroxy, deoxy,
amino, acid), its ring (p/f) and the substituents on its heteroatoms; stereo words are read and dropped
(the challenge graphs carry no stereo). ``split_aglycon`` takes the reducing end's aglycon ("OMe",
"O[CH2]5NH2", "(1<->1')-Cer(d18:1/16:0)", "-1-diphospho-...-undecaprenol") off a name as SMILES.
How residues link: ``molret.names.glycans``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

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
PETN_WORDS = re.compile(r"(?<![\w)\]])(\d)-O-\[\(2-aminoethyl\)phosphoryl\]-")
# a repeating unit "[8)-alpha-Neu5Ac-(2->]5": that many units in a chain ("n": one unit), ends free
REPEAT_UNIT = re.compile(r"^\[(\d)\)-(?P<unit>.+)-\((\d)->\](\d{1,2}|n)$")

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
    modified = residue_modifiers(base, sugar, m["amino"], bool(m["acid"]),
                                 [*prefixes, *((int(p), x) for p, x in _MOD.findall(m["mods"]))])
    if modified is None:
        return None
    groups, decorations = modified
    return Residue(text, sugar, ring, groups, decorations, unsaturated, anomer)


def residue_modifiers(base: str, sugar: Monosaccharide, amino: str | None, acid: bool, mods: list):
    """(groups per carbon, decorations) of a residue with its amino ("NAc", "5Ac" ...), acid ("A") and
    position modifiers [(position, "6S" kind)], None when they do not fit it."""
    groups = list(sugar.groups)
    decorations = []
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
    if acid:
        if groups[-1] != "O" or sugar.anomeric is None:
            return None
        groups[-1] = "A"
    for position, mod in mods:
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
    return groups, decorations
