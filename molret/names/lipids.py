"""ChEBI's lipid names respelt so that OPSIN parses them: sphingoid bases by chain length, glycerophospholipid heads.

ChEBI names sphingolipids after their sphingoid base with a chain-length root ("hexadecasphinganine",
"15-methylhexadecasphing-4-enine", "C17 sphingosine"), which OPSIN knows only at C18; the same
bases have systematic names it parses ("2-amino-15-methylhexadec-4-ene-1,3-diol"), and it parses
the N-acyl, O-glycosyl prefixes in front of them. Its glycerophospholipid names write the glycerol
head as "phospho-(1'-sn-glycerol)" and a fatty acyl's stereo inside its brackets
("(9Z,12Z-octadecadienoyl)"); OPSIN reads "phospho-sn-glycerol" and "(9Z,12Z)-octadecadienoyl".
``lipid_spellings`` gives those spellings (``molret.names.variants.name_variants`` tries them).
"""
from __future__ import annotations

import re

# chain-length roots of ChEBI's sphingoid names, by carbon count
_ROOTS = {12: "dodec", 13: "tridec", 14: "tetradec", 15: "pentadec", 16: "hexadec", 17: "heptadec",
          18: "octadec", 19: "nonadec", 20: "icos", 21: "henicos", 22: "docos", 23: "tricos", 24: "tetracos"}
_ROOT_WORDS = "|".join(sorted(_ROOTS.values(), key=len, reverse=True))
_SUBSTITUENTS = r"(?:\d+-(?:hydroxy|methyl))(?:-\d+-(?:hydroxy|methyl))*"
_SPHINGOID = re.compile(
    r"(?P<subs>" + _SUBSTITUENTS + r")?(?P<dehydro>3-dehydro-?)?"
    r"(?:C(?P<carbons>\d+) (?P<dehydro2>3-dehydro)?|(?P<root>" + _ROOT_WORDS + r")a)?"
    r"(?:\((?P<dienes>\d+[EZ]?,\d+[EZ]?)\)-)?"
    r"(?P<base>phytosphingosine|sphinganine|sphingosine|sphing-4-enine|sphingadienine)\b", re.I)
# the part of each base's systematic name after its root: (saturated chain, suffix)
_BASE = {"sphinganine": ("ane", "-1,3-diol"), "sphingosine": ("-4-ene", "-1,3-diol"),
         "sphing-4-enine": ("-4-ene", "-1,3-diol"), "phytosphingosine": ("ane", "-1,3,4-triol")}
_ACYL_STEREO = re.compile(r"\((?P<stereo>\d+[EZ](?:,\d+[EZ])*)-(?P<acyl>[a-z]+oyl)\)")
_GLYCEROL_HEAD = re.compile(r"phospho-\(?1'-sn-glycerol\)?")
# "beta-D-glucosyl-(1<->1')-N-docosanoylsphinganine": the glycosyl on the base's 1-O
_GLYCOSYL_1_O = re.compile(r"^(?P<glycosyl>\S+?yl)-\(1<->1'\)-(?P<rest>N-.+)$")


def _sphingoid(m: re.Match) -> str | None:
    carbons = int(m.group("carbons")) if m.group("carbons") else None
    root = _ROOTS.get(carbons) if carbons else (m.group("root") or "octadec").lower()
    if root is None:
        return None
    subs = m.group("subs") or ""
    base = m.group("base").lower()
    if m.group("dehydro") or m.group("dehydro2"):
        if base != "sphinganine":
            return None
        return f"2-amino-1-hydroxy-{subs + '-' if subs else ''}{root}an-3-one".replace("--", "-")
    if base == "sphingadienine":
        locants = ",".join(re.sub(r"[EZ]", "", x) for x in (m.group("dienes") or "4,14").split(","))
        chain, suffix = f"a-{locants}-diene", "-1,3-diol"
    else:
        chain, suffix = _BASE[base]
    return f"2-amino{'-' + subs if subs else ''}{root}{chain}{suffix}"


def lipid_spellings(name: str) -> list[str]:
    """Other spellings of a ChEBI lipid name that OPSIN parses (see the module docstring); [] when
    none of the rules applies."""
    out = []
    spelt = _ACYL_STEREO.sub(lambda m: f"({m.group('stereo')})-{m.group('acyl')}", name)
    spelt = _GLYCEROL_HEAD.sub("phospho-sn-glycerol", spelt)
    m = _GLYCOSYL_1_O.match(spelt)
    if m:
        glycosyl = m.group("glycosyl")
        spelt = f"1-O-{glycosyl[0].lower() + glycosyl[1:]}-{m.group('rest')}"
    m = _SPHINGOID.search(spelt)
    if m:
        systematic = _sphingoid(m)
        if systematic:
            # "N-docosanoylsphinganine": OPSIN needs a hyphen between the prefix and the systematic base
            joint = "-" if m.start() and (spelt[m.start() - 1].isalnum() or spelt[m.start() - 1] in ")]") else ""
            spelt = spelt[:m.start()] + joint + systematic + spelt[m.end():]
    if spelt != name:
        out.append(spelt)
    return out
