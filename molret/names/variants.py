"""Other spellings of a chemical name that OPSIN rejects: a peptide's
systematic name, the neutral parent of a charged species or salt, the acid of
an anion (``name_variants``, tried in order by ``molret.names.resolve``)."""
from __future__ import annotations

import re

from molret.names.lipids import lipid_spellings
from molret.names.nucleotides import nucleotide_spellings

_ANION = re.compile(r"^(?P<stem>.+?)ate(?:\(\d?[+-]\))?$")
_CHARGE = re.compile(r"\s*\(\d*[+-]\)$")                     # "TMP(2-)", "strychnine(1+)"
_SPECIES = re.compile(r"\s+(?:zwitterion|(?:mono|di|tri|tetra)?(?:anion|cation)|hydrochloride|hydrobromide|"
                      r"maleate|mesylate|dihydrate|monohydrate|hydrate|\(anhydrous\)|free acid)$", re.I)
_AMINO_ACYL = {"Ala": "L-alanyl", "Arg": "L-arginyl", "Asn": "L-asparaginyl", "Asp": "L-alpha-aspartyl",
               "Cys": "L-cysteinyl", "Gln": "L-glutaminyl", "Glu": "L-alpha-glutamyl", "Gly": "glycyl",
               "His": "L-histidyl", "Ile": "L-isoleucyl", "Leu": "L-leucyl", "Lys": "L-lysyl", "Met": "L-methionyl",
               "Phe": "L-phenylalanyl", "Pro": "L-prolyl", "Ser": "L-seryl", "Thr": "L-threonyl",
               "Trp": "L-tryptophyl", "Tyr": "L-tyrosyl", "Val": "L-valyl"}
_AMINO_ACID = {"Ala": "L-alanine", "Arg": "L-arginine", "Asn": "L-asparagine", "Asp": "L-aspartic acid",
               "Cys": "L-cysteine", "Gln": "L-glutamine", "Glu": "L-glutamic acid", "Gly": "glycine",
               "His": "L-histidine", "Ile": "L-isoleucine", "Leu": "L-leucine", "Lys": "L-lysine",
               "Met": "L-methionine", "Phe": "L-phenylalanine", "Pro": "L-proline", "Ser": "L-serine",
               "Thr": "L-threonine", "Trp": "L-tryptophan", "Tyr": "L-tyrosine", "Val": "L-valine"}


def acid_name(name: str) -> str | None:
    """The acid of an anion name ("...ate" or "...ate(2-)" -> "...ic acid"), None otherwise."""
    m = _ANION.match(name)
    return f"{m.group('stem')}ic acid" if m else None


def _peptide_name(name: str) -> str | None:
    """The systematic name of a peptide in three-letter codes ("Leu-Cys" ->
    "L-leucyl-L-cysteine"), None for anything else."""
    codes = name.split("-")
    if len(codes) < 2 or any(c not in _AMINO_ACID for c in codes):
        return None
    return "".join(_AMINO_ACYL[c] + "-" for c in codes[:-1]) + _AMINO_ACID[codes[-1]]


_CATION = re.compile(r"(?<=[a-z])(in|an|amin|az)ium\b")          # "sperminium", "tropinium", "cysteaminium"
_CATION_STEM = {"in": "ine", "an": "ane", "amin": "amine", "az": "azane"}
# stereo descriptors a chemical name may carry where OPSIN rejects them: "(2S)-", "(R,R)-", "(+)-", "(9Z,12Z)-",
# "rac-", "ent-", "cis-", "D-"; the challenge's graphs carry no stereo, so a name without them names the same graph
_STEREO = re.compile(r"(?:(?<=^)|(?<=[-\s\[(]))(?:\((?:(?:[0-9]*'*[RSrs]|[EZ]|[+-]|\+/-|\xb1)(?:,\s*)?)+\)-|"
                     r"(?:[DL]-)?(?:erythro|threo|xylo|ribo|arabino|lyxo)-(?=[A-Za-z(0-9])|"
                     r"(?:rac|ent|cis|trans|meso|D|L|DL)-(?=[A-Za-z(0-9]))")
# (E/Z with locants stay: "(9Z,12Z)-octadecadienoyl" would lose where its double bonds are)
_ATOM = re.compile(r"^(?P<element>[A-Za-z]+)(?:-(?P<mass>\d+))?\s+atom$", re.I)


def cation_name(name: str) -> str | None:
    """The neutral base of an "-ium" cation name ("sperminium" -> "spermine"), None otherwise."""
    base = _CATION.sub(lambda m: _CATION_STEM[m.group(1)], name)
    return base if base != name else None


def without_stereo(name: str) -> str | None:
    """``name`` without its stereo descriptors (None when it has none)."""
    # a sentence-initial capital ("Threo-3-methyl-L-aspartic acid", "Ent-kaurene") hides the descriptor
    lowered = name[0].lower() + name[1:] if len(name) > 1 and name[0].isupper() and name[1].islower() else name
    bare = _STEREO.sub("", lowered)
    return bare if bare != lowered and bare.strip("-") else None


def atom_smiles(name: str) -> str | None:
    """The SMILES of an "X atom" or "X-39 atom" name (an element, an isotope), None for anything else."""
    m = _ATOM.match(name.strip())
    if not m:
        return None
    from rdkit import Chem
    try:
        symbol = Chem.GetPeriodicTable().GetElementSymbol(_element_number(m.group("element")))
    except (KeyError, RuntimeError):
        return None
    return f"[{m.group('mass') or ''}{symbol}]"


_ELEMENTS: dict = {}


def _element_number(word: str) -> int:
    if not _ELEMENTS:
        from rdkit import Chem
        table = Chem.GetPeriodicTable()
        for z in range(1, 119):
            try:
                _ELEMENTS[table.GetElementName(z).lower()] = z
            except RuntimeError:
                continue
        _ELEMENTS.update({"aluminium": 13, "caesium": 55, "sulphur": 16})
    return _ELEMENTS[word.lower()]


def name_variants(name: str) -> list[str]:
    """Names to try, in order, when OPSIN rejects ``name`` (``spellings``, without their rules)."""
    return [variant for _, variant in spellings(name)]


def spellings(name: str) -> list[tuple[str, str]]:
    """(rule, name) of the other spellings of ``name``, in the order they are tried: a peptide's
    systematic name ("peptide"); the name without its charge ("(2-)") or species word
    ("zwitterion", "hydrochloride", ...: "neutral"), since ChEBI names charged species and salts
    that OPSIN does not parse (the neutral parent's graph differs a little but shares most
    substructures), and that name as a peptide; the acid of an anion ("...ate" -> "...ic acid":
    "acid") and the base of an "-ium" cation ("cation"); and each of these without stereo
    descriptors ("stereo"), or respelt as a lipid ("lipid") or nucleotide ("nucleotide") name
    OPSIN parses (``molret.names.lipids``, ``molret.names.nucleotides``)."""
    out: list = []

    def add(rule: str, variant: str | None) -> None:
        if variant and variant != name and variant not in (v for _, v in out):
            out.append((rule, variant))

    neutral = _SPECIES.sub("", _CHARGE.sub("", name)).strip()
    peptide = next((p for p in (_peptide_name(n) for n in (name, neutral) if n) if p), None)
    add("peptide", peptide)
    add("neutral", neutral)
    for n in (name, neutral):
        if n:
            add("acid", acid_name(n))
            add("cation", cation_name(n))
    for n in list(dict.fromkeys([name, neutral] + [v for _, v in out if v != peptide])):
        if n:
            add("stereo", without_stereo(n))
            for variant in lipid_spellings(n):
                add("lipid", variant)
            for variant in nucleotide_spellings(n):
                add("nucleotide", variant)
    return out


# ------------------------------------------------------------------ other forms of a resolved structure
#
# A name gives one structure, but ChEBI describes the major species at pH 7.3 ("L-aspartate(1-)",
# "glycine zwitterion", "ATP(4-)") and cites tautomers; the challenge's graphs carry charges and
# hydrogens (their substructure identifiers do). ``structure_forms`` gives the other forms of a
# structure, each (kind, SMILES): the neutralised form, its protonation states around pH 7.3 (RDKit
# transformations of acids and bases, or dimorphite-dl: PROTONATION), and its tautomers (RDKit's
# TautomerEnumerator, bounded). Nothing raises: a structure RDKit refuses has no forms.

PROTONATION = "rdkit"        # measured on val (docs/experiments.md "Names 2.0")
MAX_TAUTOMERS = 8
MAX_TAUTOMER_ATOMS = 80     # larger molecules: no tautomers (enumerating them is slow)
MAX_ACID_BASE_SITES = 4      # all protonation subsets up to this many sites, else none/all per kind

# acidic X-H that lose their proton at pH 7.3: carboxylic, phosph(on)ic, sulf(on)ic acids and their esters,
# vinylogous acids (ascorbic, tetronic acids), and the acid of a hydrochloride/hydrobromide salt
_ACIDS = ("[CX3](=O)[OX2H1]", "[PX4](=O)[OX2H1]", "[PX4]([OX2H1])", "[SX4](=O)(=O)[OX2H1]", "[SX3](=O)[OX2H1]",
          "[OX2H1][CX3]=[CX3][CX3]=O", "[Cl,Br,I;H1;X1]")
# basic nitrogens that take a proton: aliphatic amines (not amides, anilines, sulfonamides, N-O, N-N,
# enamines, imides) and the imine nitrogen of amidines/guanidines (C=[NH+], as ChEBI draws them)
_BASES = ("[NX3;!$(N-[#6,#16,#15]=[#7,#8,#16]);!$(N-a);!$(N-[#7,#8]);!$(N-C=[#6]);!$(N-[#6]#*);"
          "!$([N]-[Si,B,P,S]);!$(N-C(F)(F)F)]", "[NX2;!a;!$(N-[#8]);!$(N=C-[#8])]=[CX3;!a]-[NX3;!$(N-C=O);!a]")


def _patterns(smarts):
    from rdkit import Chem
    return [Chem.MolFromSmarts(s) for s in smarts]


_PATTERNS: dict = {}


def _sites(mol, which: str) -> list[int]:
    if which not in _PATTERNS:
        _PATTERNS[which] = _patterns(_ACIDS if which == "acid" else _BASES)
    atoms = []
    for pattern in _PATTERNS[which]:
        for match in mol.GetSubstructMatches(pattern):
            # the acidic O (or halogen) is the one with an H; the basic N is the match's first atom
            idx = next((i for i in match if mol.GetAtomWithIdx(i).GetSymbol() in ("O", "Cl", "Br", "I") and
                        mol.GetAtomWithIdx(i).GetTotalNumHs() > 0), None) if which == "acid" else match[0]
            if idx is not None and idx not in atoms and mol.GetAtomWithIdx(idx).GetFormalCharge() == 0:
                atoms.append(idx)
    return atoms


def _with_charges(mol, acids, bases):
    """A copy of ``mol`` with the O-H of ``acids`` deprotonated and the N of ``bases`` protonated (None
    when RDKit refuses the result)."""
    from rdkit import Chem
    m = Chem.RWMol(mol)
    for i in acids:
        a = m.GetAtomWithIdx(i)
        a.SetFormalCharge(-1)
        a.SetNumExplicitHs(max(0, a.GetTotalNumHs() - 1))
        a.SetNoImplicit(True)
    for i in bases:
        a = m.GetAtomWithIdx(i)
        a.SetFormalCharge(1)
        a.SetNumExplicitHs(a.GetTotalNumHs() + 1)
        a.SetNoImplicit(True)
    try:
        Chem.SanitizeMol(m)
        return m.GetMol()
    except Exception:  # noqa: BLE001 - RDKit raises its own types
        return None


def _subsets(sites: list[int]) -> list[tuple]:
    import itertools
    if len(sites) <= MAX_ACID_BASE_SITES:
        return [c for k in range(len(sites) + 1) for c in itertools.combinations(sites, k)]
    return [(), tuple(sites)]


def rdkit_protonation_states(mol, every_subset: bool = True) -> list:
    """RDKit molecules of the protonation states of a neutral ``mol``: every subset of its acidic O-H
    deprotonated times every subset of its basic N protonated (up to MAX_ACID_BASE_SITES sites
    each, else none or all; ``every_subset`` False: only all acids deprotonated and all bases
    protonated, the major species at pH 7.3), the neutral form itself left out."""
    acids, bases = _sites(mol, "acid"), _sites(mol, "base")
    out = []
    subsets = _subsets if every_subset else (lambda sites: [tuple(sites)])
    for a in subsets(acids):
        for b in subsets(bases):
            if a or b:
                s = _with_charges(mol, a, b)
                if s is not None:
                    out.append(s)
    return out


def dimorphite_protonation_states(smiles: str) -> list[str]:
    """dimorphite-dl's states of ``smiles`` at pH 6.4-8.4 ([] when it is not installed)."""
    try:
        from dimorphite_dl import protonate_smiles
    except ImportError:
        return []
    try:
        return list(protonate_smiles(smiles, ph_min=6.4, ph_max=8.4, precision=1.0, max_variants=32))
    except Exception:  # noqa: BLE001 - its own errors on odd input
        return []


_UNCHARGER = []


def neutralised(mol):
    """``mol`` with its acids protonated and its bases deprotonated where possible (RDKit Uncharger)."""
    from rdkit.Chem.MolStandardize import rdMolStandardize
    if not _UNCHARGER:
        _UNCHARGER.append(rdMolStandardize.Uncharger())
    try:
        return _UNCHARGER[0].uncharge(mol)
    except Exception:  # noqa: BLE001
        return None


def tautomers(mol, limit: int = MAX_TAUTOMERS) -> list:
    """Up to ``limit`` tautomers of ``mol`` (RDKit's enumerator, bounded), as RDKit molecules."""
    from rdkit.Chem.MolStandardize import rdMolStandardize
    try:
        enumerator = rdMolStandardize.TautomerEnumerator()
        enumerator.SetMaxTautomers(limit)
        enumerator.SetMaxTransforms(limit * 8)
        enumerator.SetRemoveBondStereo(True)
        enumerator.SetRemoveSp3Stereo(True)
        return list(enumerator.Enumerate(mol))[:limit]
    except Exception:  # noqa: BLE001
        return []


def structure_forms(smiles: str, protonation: str = PROTONATION, max_tautomers: int = MAX_TAUTOMERS,
                    max_atoms: int = MAX_TAUTOMER_ATOMS) -> list[tuple]:
    """Other forms of the structure ``smiles``, as (kind, SMILES, RDKit molecule), kinds "neutral",
    "charge" and "tautomer" (a tautomer's pH 7.3 state too: "tautomer"), each SMILES once; may
    repeat the input's graph (callers compare graph keys). Molecules over ``max_atoms`` heavy atoms
    get the neutral and charge forms only (enumerating tautomers of a large molecule is slow)."""
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return []
    out = []
    neutral = neutralised(mol)
    if neutral is None:
        neutral = mol
    out.append(("neutral", neutral))
    if protonation in ("rdkit", "both"):
        out += [("charge", m) for m in rdkit_protonation_states(neutral)]
    if protonation in ("dimorphite", "both"):
        out += [("charge", m) for m in map(Chem.MolFromSmiles, dimorphite_protonation_states(Chem.MolToSmiles(neutral)))
                if m is not None]
    if max_tautomers and neutral.GetNumAtoms() <= max_atoms:
        for t in tautomers(neutral, max_tautomers):
            out.append(("tautomer", t))
            if protonation in ("rdkit", "both"):
                out += [("tautomer", m) for m in rdkit_protonation_states(t, every_subset=False)]
    seen: set = set()
    result = []
    for kind, m in out:
        try:
            s = Chem.MolToSmiles(m)
        except Exception:  # noqa: BLE001
            continue
        if s not in seen:
            seen.add(s)
            result.append((kind, s, m))
    return result
