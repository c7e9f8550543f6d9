"""Other spellings of a chemical name that OPSIN rejects: a peptide's
systematic name, the neutral parent of a charged species or salt, the acid of
an anion (``name_variants``, tried in order by ``molret.names``)."""
from __future__ import annotations

import re

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


def _acid_name(name: str) -> str | None:
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


def name_variants(name: str) -> list[str]:
    """Names to try, in order, when OPSIN rejects ``name``: a peptide's
    systematic name; the name without its charge ("(2-)") or species word
    ("zwitterion", "hydrochloride", ...), since ChEBI names charged species
    and salts that OPSIN does not parse (the neutral parent's graph differs a
    little but shares most substructures); and the acid of an anion ("...ate"
    -> "...ic acid")."""
    out = []
    peptide = _peptide_name(name)
    if peptide:
        out.append(peptide)
    neutral = _SPECIES.sub("", _CHARGE.sub("", name)).strip()
    if neutral and neutral != name:
        out.append(neutral)
    for n in (name, neutral):
        acid = _acid_name(n) if n else None
        if acid and acid not in out:
            out.append(acid)
    return out
