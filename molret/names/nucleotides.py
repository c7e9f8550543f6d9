"""Nucleotide abbreviations and nucleotide sugars ("XTP", "UDP-alpha-D-glucose") spelt out so that OPSIN parses them.

OPSIN reads neither the one-letter nucleotide codes ("ATP", "dTDP") nor ChEBI's nucleotide-sugar
names ("UDP-N-acetyl-alpha-D-glucosamine", "dTDP-beta-L-rhamnose"), but it reads their systematic
forms: "adenosine 5'-triphosphate", "uridine 5'-(N-acetyl-alpha-D-glucosaminyl dihydrogen
diphosphate)". ``nucleotide_spellings`` gives those (``molret.names.variants.name_variants`` tries
them); a sugar is turned into its glycosyl group by its ending ("-ose" -> "-osyl", "-osamine" ->
"-osaminyl"), other partners are left alone.
"""
from __future__ import annotations

import re

NUCLEOSIDES = {"A": "adenosine", "G": "guanosine", "C": "cytidine", "U": "uridine", "I": "inosine",
               "X": "xanthosine", "dA": "2'-deoxyadenosine", "dG": "2'-deoxyguanosine", "dC": "2'-deoxycytidine",
               "dU": "2'-deoxyuridine", "dT": "thymidine", "T": "thymidine", "dI": "2'-deoxyinosine"}
PHOSPHATES = {"MP": "5'-monophosphate", "DP": "5'-diphosphate", "TP": "5'-triphosphate"}
_CODE = re.compile(r"^(?P<base>d?[AGCUIXT])(?P<phosphate>MP|DP|TP)$")
_SUGAR_NUCLEOTIDE = re.compile(r"^(?P<base>d?[AGCUT])(?P<phosphate>DP|MP)-(?P<sugar>.+)$")
_GLYCOSYL = ((re.compile(r"osamine$"), "osaminyl"), (re.compile(r"ose$"), "osyl"))


def nucleotide_name(code: str) -> str | None:
    """The systematic name of a nucleotide code ("ATP", "dTDP", "XMP"), None for anything else."""
    m = _CODE.match(code)
    if not m:
        return None
    return f"{NUCLEOSIDES[m.group('base')]} {PHOSPHATES[m.group('phosphate')]}"


def glycosyl(sugar: str) -> str | None:
    """The glycosyl group of a sugar name ("alpha-D-glucose" -> "alpha-D-glucosyl"), None when its
    ending is not a sugar's."""
    for pattern, ending in _GLYCOSYL:
        if pattern.search(sugar):
            return pattern.sub(ending, sugar)
    return None


def nucleotide_spellings(name: str) -> list[str]:
    """Systematic spellings of a nucleotide code or a nucleotide sugar (see the module docstring); []
    when ``name`` is neither. A sentence-initial capital ("DTDP-...", "Udp-...") is read as the code."""
    code = name[0].lower() + name[1:] if name[:2] in ("DT", "DA", "DG", "DC", "DU", "DI") else name
    whole = nucleotide_name(code)
    if whole:
        return [whole]
    m = _SUGAR_NUCLEOTIDE.match(code)
    if not m:
        return []
    group = glycosyl(m.group("sugar"))
    if group is None:
        return []
    ester = "dihydrogen diphosphate" if m.group("phosphate") == "DP" else "hydrogen phosphate"
    return [f"{NUCLEOSIDES[m.group('base')]} 5'-({group} {ester})"]
