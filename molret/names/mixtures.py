"""Names of salts, hydrates, solvates and single atoms: one structure composed from the named parts in their amounts.

The challenge draws a salt or a hydrate as one graph of several components, as ChEBI's SMILES
write it (checked on the training pairs): "X hydrochloride" is X plus a neutral HCl ("X.Cl"),
"X dihydrate" X plus two waters, "X maleate" X plus neutral maleic acid, "X mesylate" X plus
methanesulfonic acid; "disodium X" ("X sodium") is X's anion with two sodium cations, "X bromide"
of a cation X (a quaternary ammonium) is X with bromide anions; "boron atom", "potassium-39 atom"
are single atoms (the isotope kept: the substructure identifiers see it). OPSIN parses such names
when it knows X's name; when only another source or spelling knows X, ``MixtureSource`` resolves
X with the other sources and joins the parts. A part it cannot place (an anion form that is not
unique) gives no structure rather than a wrong one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from molret.names.variants import atom_smiles

# neutral parts after the name, as the challenge draws them (one of each per multiplier)
PARTS = {"hydrochloride": "Cl", "hydrobromide": "Br", "hydroiodide": "I", "hydrate": "O",
         "mesylate": "CS(=O)(=O)O", "methanesulfonate": "CS(=O)(=O)O", "maleate": "OC(=O)C=CC(=O)O",
         "fumarate": "OC(=O)C=CC(=O)O", "tartrate": "OC(C(O)C(=O)O)C(=O)O", "succinate": "OC(=O)CCC(=O)O",
         "citrate": "OC(=O)CC(O)(CC(=O)O)C(=O)O", "besylate": "OS(=O)(=O)c1ccccc1",
         "tosylate": "Cc1ccc(cc1)S(=O)(=O)O", "oxalate": "OC(=O)C(=O)O", "sulfate": "OS(=O)(=O)O",
         "phosphate": "OP(=O)(O)O", "acetate": "CC(=O)O"}
# counter-anions of a cation X ("X bromide"): one per positive charge of X
ANIONS = {"chloride": "[Cl-]", "bromide": "[Br-]", "iodide": "[I-]"}
# counter-cations of an anion X ("disodium X", "X sodium"): X loses one proton per charge they bring
CATIONS = {"sodium": ("[Na+]", 1), "potassium": ("[K+]", 1), "lithium": ("[Li+]", 1), "calcium": ("[Ca+2]", 2),
           "magnesium": ("[Mg+2]", 2)}
MULTIPLIERS = {"": 1, "mono": 1, "di": 2, "tri": 3, "tetra": 4, "penta": 5, "hexa": 6, "hepta": 7}

_MULT = "(?:" + "|".join(sorted((m for m in MULTIPLIERS if m), key=len, reverse=True)) + ")?"
_PART = re.compile(r"^(?P<mult>" + _MULT + r")(?P<part>" + "|".join(PARTS) + r")$", re.I)
_ANION = re.compile(r"^(?P<mult>" + _MULT + r")(?P<anion>" + "|".join(ANIONS) + r")$", re.I)
_CATION = re.compile(r"^(?P<mult>" + _MULT + r")(?P<cation>" + "|".join(CATIONS) + r")$", re.I)
_ANHYDROUS = re.compile(r"\s*\(anhydrous\)$", re.I)


@dataclass(frozen=True)
class MixtureName:
    """A salt or hydrate name taken apart: ``base`` (the main component's name), ``parts`` ((SMILES,
    count) of the neutral parts and counter-anions), ``anions`` (how many counter-anions: the base's
    charge), ``cation`` (SMILES of a counter-cation), ``cation_charge``, ``cations`` (how many; None
    when the name gives no number: as many as the base's negative charge)."""
    base: str
    parts: tuple = ()
    anions: int = 0
    cation: str | None = None
    cation_charge: int = 0
    cations: int | None = None


def split_mixture(name: str) -> MixtureName | None:
    """The :class:`MixtureName` of a salt or hydrate name ("X hydrochloride dihydrate", "X bromide",
    "disodium X", "X sodium", "X-sodium"); None when ``name`` names no mixture."""
    words = _ANHYDROUS.sub("", " ".join(str(name).split())).split(" ")
    if len(words) == 1 and "-" in words[0]:
        head, _, tail = words[0].rpartition("-")      # "sulcofuron-sodium"
        words = [head, tail] if head and _CATION.match(tail) else words
    parts, anions, cation = [], 0, None

    def counted(m):
        return MULTIPLIERS[m.group("mult").lower()] if m.group("mult") else None

    while len(words) > 1:
        w = words[-1]
        m, a, c = _PART.match(w), _ANION.match(w), _CATION.match(w)
        if m:
            parts.append((PARTS[m.group("part").lower()], counted(m) or 1))
        elif a and not anions and cation is None:
            anions = counted(a) or 1
            parts.append((ANIONS[a.group("anion").lower()], anions))
        elif c and cation is None and not anions:
            cation = (*CATIONS[c.group("cation").lower()], counted(c))
        else:
            break
        words.pop()
    c = _CATION.match(words[0]) if len(words) > 1 else None
    if c and cation is None and not anions:                 # "disodium X", "potassium X"
        cation = (*CATIONS[c.group("cation").lower()], counted(c))
        words = words[1:]
    if not parts and cation is None:
        return None
    return MixtureName(" ".join(words), tuple(parts), anions, *(cation or (None, 0, None)))


class MixtureSource:
    """A name source (``molret.names.sources``) for salts, hydrates and atoms: the base of a mixture
    resolved by ``sources`` (and their spellings), the parts joined to it."""
    name = "mixtures"

    def __init__(self, sources: Sequence):
        self.sources = [s for s in sources if s is not self]

    def fingerprint(self) -> str:
        # its tables are code: the names cache's key already covers this module's source
        return "code"

    def lookup(self, names: Sequence[str]) -> list:
        from molret.names.resolve import resolve_names, structure_from_smiles
        out: list = [None] * len(names)
        mixtures = {}
        for i, n in enumerate(names):
            atom = atom_smiles(n)
            if atom:
                out[i] = structure_from_smiles(n, atom, source=self.name, kind="name")
                continue
            split = split_mixture(n)
            if split and split.base:
                mixtures[i] = split
        if not mixtures:
            return out
        bases = resolve_names([m.base for m in mixtures.values()], self.sources)
        for i, mixture in mixtures.items():
            base = bases.get(mixture.base)
            smiles = compose(base, mixture) if base is not None else None
            if smiles:
                out[i] = structure_from_smiles(names[i], smiles, source=self.name, kind="name")
        return out


def compose(base, mixture: MixtureName) -> str | None:
    """The mixture's SMILES from its resolved base Structure (None: the base has no SMILES, or no
    unique charge state fits the counter-ions)."""
    if not base.smiles:
        return None          # a pairs-dictionary graph: no SMILES to join parts to
    smiles = base.smiles
    if mixture.anions and base.charge != mixture.anions:
        return None
    extra = []
    if mixture.cation is not None:
        count = mixture.cations if mixture.cations is not None else (-base.charge if base.charge < 0 else 1)
        charge = -count * mixture.cation_charge
        if base.charge != charge:
            from molret.names.resolve import structure_forms_of
            fits = [f for f in structure_forms_of(base, "charge")
                    if f.charge == charge and f.kind == "charge" and not f.zwitterion]
            if len(fits) != 1:
                return None
            smiles = fits[0].smiles
        extra = [mixture.cation] * count
    return ".".join([smiles] + [p for p, count in mixture.parts for _ in range(count)] + extra)
