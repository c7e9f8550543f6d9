"""What a description states about its molecule: rules that read attributes (charge, chain lengths, double bonds,
rings, group counts, sugar and amino-acid units, elements, salt and hydrate parts, class words) from a text.

Each rule (``RULES``) names the structure attribute it is checked against (``molret.ranking.claims.structure``)
and how (``Rule.kind``): ``ge`` the structure has at least the stated value, ``eq`` exactly it, ``sign`` a net
charge of that sign. ``stated(text)`` gives {rule name: value} for the rules that fire; ``stated_matrix``
a [texts, rules] matrix with NaN where a rule does not fire. Pure functions of the text.

Where a rule reads: the *subject* (the name before " is a"/" is an"), or the *class text* (what the subject is
said to be: the first sentence's "is a ..." up to its first clause, and the later "It is a ..." sentences that
do not speak of another species: conjugate acid/base, tautomer, enantiomer).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

KINDS = ("ge", "eq", "sign")


@dataclass(frozen=True)
class Rule:
    name: str
    attribute: str      # the attribute of molret.ranking.claims.structure it is checked against
    kind: str           # one of KINDS


@dataclass(frozen=True)
class Description:
    subject: str        # as written
    class_text: str     # lower case
    text: str           # lower case, whole


MULTIPLIERS = {"mono": 1, "di": 2, "bis": 2, "tri": 3, "tris": 3, "tetra": 4, "tetrakis": 4, "penta": 5,
               "pentakis": 5, "hexa": 6, "hexakis": 6, "hepta": 7, "octa": 8, "nona": 9, "deca": 10}
_MULT = "|".join(sorted(MULTIPLIERS, key=len, reverse=True))
# IUPAC numeric roots of carbon chains (longest first, so "hexadec" wins over "hex" and "dec")
CHAIN_ROOTS = {"meth": 1, "eth": 2, "prop": 3, "but": 4, "pent": 5, "hex": 6, "hept": 7, "oct": 8, "non": 9,
               "dec": 10, "undec": 11, "dodec": 12, "tridec": 13, "tetradec": 14, "pentadec": 15, "hexadec": 16,
               "heptadec": 17, "octadec": 18, "nonadec": 19, "icos": 20, "eicos": 20, "henicos": 21, "docos": 22,
               "tricos": 23, "tetracos": 24, "pentacos": 25, "hexacos": 26, "heptacos": 27, "octacos": 28,
               "nonacos": 29, "triacont": 30, "hentriacont": 31, "dotriacont": 32, "tetratriacont": 34}
_ROOT = re.compile(r"(?<!cyclo)(" + "|".join(sorted(CHAIN_ROOTS, key=len, reverse=True)) +
                   r")(a(?:-[\d,]+-)?(" + _MULT + r")?(?:en|yn)|an|en|yn)(?=[a-z0-9-])")
TERPENOID_CARBONS = {"hemiterpenoid": 5, "monoterpenoid": 10, "sesquiterpenoid": 15, "diterpenoid": 20,
                     "sesterterpenoid": 25, "triterpenoid": 30, "tetraterpenoid": 40, "carotenoid": 40}
SUGAR_CODE = re.compile(r"(?<![A-Za-z])(?:Glc|Gal|Man|Fuc|Xyl|Rha|Ara|Fru|Rib|Neu5Ac|Neu5Gc|Kdo|Qui|"
                        r"Ido|Lyx|Api|Hep|Kdn|Tyv)[pf]?(?:NAc|NGc|A|N)?(?![a-z])")
AMINO_CODES = "Ala|Arg|Asn|Asp|Cys|Gln|Glu|Gly|His|Ile|Leu|Lys|Met|Phe|Pro|Ser|Thr|Trp|Tyr|Val|Orn|Sar|Aib|Hyp"
_PEPTIDE = re.compile(r"(?<![A-Za-z])(?:" + AMINO_CODES + r")(?:-(?:" + AMINO_CODES + r"))+(?![a-z])")

# substituent prefixes (and suffixes) counted with their multiplier: rule -> (prefix regex, suffix regex or None)
GROUPS = {
    "hydroxy": (r"hydroxy", r"(?<!thi)(?<!thiol)(" + _MULT + r")?ol(?![a-z0-9-])"),
    "amino": (r"amino(?!acid)", r"(" + _MULT + r")?amine(?![a-z])"),
    "carboxy": (r"carboxy(?!l)", r"(" + _MULT + r")?(?:oic|carboxylic) acid"),
    "phosphate": (r"phospho(?:no|ryl)?|phosphate", None),
    "sulfo": (r"sulfo(?!n)|sulfate|sulfonate|sulfonic", None),
    "methoxy": (r"methoxy", None),
    "methyl": (r"methyl", None),
    "oxo": (r"oxo(?![a-z])", r"(" + _MULT + r")?one(?![a-z])"),
    "nitro": (r"nitro(?!s|gen)", None),
    "acetyl": (r"acetyl|acetamido|acetate|acetoxy", None),
    "chloro": (r"chlor", None),
    "bromo": (r"brom", None),
    "fluoro": (r"fluor", None),
    "iodo": (r"iod", None),
}
# element words anywhere in the subject or class text: rule -> regex
ELEMENT_WORDS = {
    "sulfur": r"sulf|thio|thi[oa]|mercapto|cystein|methionin|\bcoa\b|coenzyme a|glutathion|taurin|biotin|penicillin|"
              r"cephalospor|thiazol|thiophen|thienyl",
    "phosphorus": r"phosph",
    "selenium": r"selen",
    "boron": r"boron|boronic|borate",
    "silicon": r"silyl|silicon|silan|silox",
    "arsenic": r"arsen|arsine\b|arsonic|arsono",
    "metal": r"sodium|potassium|lithium|magnesium|calcium|\biron|ferr[io]|copper|cupr|zinc|cobalt|nickel|mangan|"
             r"platin|\bgold|silver|mercur|stann|\btin\b|\blead\b|plumb|alumin|gallium|barium|strontium|chromium|"
             r"molybd|tungst|vanad|titan|cadmium|gadolin|caesium|cesium|rubidium",
    "nitrogen": r"alkaloid|nitrogen",
}
# class words of the subject or class text: rule -> regex (the structure side is a SMARTS check)
CLASS_WORDS = {
    "steroid": r"steroid|sterol|cholest|androst|pregn|\bestr[aoi]|oestr|cholan|bile acid|ergost|stigmast|spirost|"
               r"cardenolide|bufadienolide|corticoster|cortisol|testoster|\bcholic",
    "flavonoid": r"flavon|flavan|flavyl|isoflav|chalcon|anthocyan|catechin|aurone|flavonoid",
    "beta_lactam": r"beta-lactam|penicillin|cephalospor|carbapenem|cephem|penam|monobactam|azetidin-2-one",
    "fatty_acid": r"fatty acid|fatty acyl|fatty acid anion",
    "acyl_coa": r"\bcoa\b|coenzyme a|-coa",
    "nucleoside": r"nucleoside|nucleotide|adenosine|guanosine|uridine|cytidine|thymidine|inosine|xanthosine",
    "purine": r"purin|adenin|guanin|(?<![a-z])xanthin|hypoxanthin|adenosin|guanosin|inosin|caffein|theophyll|theobrom",
    "pyrimidine": r"pyrimidin|uracil|cytosin|thymin|uridin|cytidin|thymidin|barbitur",
    "indole": r"indol|tryptoph|tryptam|serotonin|melatonin|carbazol",
    "pyridine": r"pyridin|nicotin|pyridox|niacin",
    "quinoline": r"quinolin",
    "imidazole": r"imidazol|histidin|histamin",
    "furan": r"furan(?!os)|\bfuryl|furo",
    "thiophene": r"thiophen|thienyl",
    "benzene": r"benzen|benzo|benzyl|phenyl|phenol|toluen|xylen|anilin|phthal|salicyl|catechol|resorcin",
    "naphthalene": r"naphth",
    "coumarin": r"coumarin|chromen-2-one",
    "piperidine": r"piperidin",
    "pyrrolidine": r"pyrrolidin",
    "piperazine": r"piperazin",
    "morpholine": r"morpholin",
    "lactone": r"lactone|olide\b",
    "lactam": r"lactam",
    "ester": r"\bester|carboxylic ester",
    "amide": r"\bamide|carboxamide|\bamido|anilide",
    "ether": r"\bether\b",
    "ketone": r"\bketone|ketone\b",
    "aldehyde": r"aldehyde",
    "primary_alcohol": r"primary alcohol",
    "secondary_alcohol": r"secondary alcohol",
    "tertiary_alcohol": r"tertiary alcohol",
    "phenols": r"\bphenols\b|polyphenol|\bphenol\b",
    "carboxylic_acid": r"(?:carboxylic|oic) acid(?! (?:amide|ester|anion|monoanion|dianion|trianion|tetraanion))",
    "carboxylate": r"carboxylic acid (?:di|tri|tetra)?anion|carboxylate",
    "primary_amine": r"primary amin|primary amino compound",
    "secondary_amine": r"secondary amin|secondary amino compound",
    "tertiary_amine": r"tertiary amin|tertiary amino compound",
    "quaternary_ammonium": r"quaternary ammonium",
    "nitrile": r"nitrile|cyano",
    "thiol": r"\bthiol|sulfanyl|mercapto",
    "epoxide": r"epoxide|epoxy|oxiran",
    "guanidine": r"guanidin|arginin",
    "urea": r"\burea|ureido",
    "glycerophospholipid": r"glycerophospho|phosphatidyl|phospholipid",
    "glycerolipid": r"acylglycerol|glyceride",
    "quinone": r"quinone",
    "azo": r"\bazo\b|azobenzene|diazen",
    "sulfonamide": r"sulfonamide",
    "hydroperoxide": r"hydroperox",
    "aromatic": r"aromatic|\barene",
    "heterocycle": r"heterocycl|hetero(?:mono|bi|tri|tetra|penta|poly)cyclic",
    "macrocycle": r"macrocycl|macrolide",
}
RING_WORDS = {"monocyclic": 1, "bicyclic": 2, "tricyclic": 3, "tetracyclic": 4, "pentacyclic": 5, "hexacyclic": 6,
              "heptacyclic": 7, "octacyclic": 8}

RULES = (
    (Rule("charge", "net_charge", "eq"), Rule("charge_sign", "net_charge", "sign"),
     Rule("zwitterion", "zwitterion", "ge"), Rule("chain_carbons", "chain", "ge"),
     Rule("terpenoid_carbons", "carbons", "ge"), Rule("cc_double", "cc_double", "ge"),
     Rule("saturated", "cc_double", "eq"), Rule("rings", "ring_system_rings", "eq"),
     Rule("sugar_units", "sugar_rings", "eq"), Rule("glycoside", "sugar_rings", "ge"),
     Rule("amino_acid_units", "amino_acid_units", "eq"), Rule("amino_acid", "amino_acid_units", "ge"),
     Rule("hydrate", "waters", "ge"), Rule("salt", "fragments", "ge"))
    + tuple(Rule(g, g, "ge") for g in GROUPS)
    + tuple(Rule(e, e, "ge") for e in ELEMENT_WORDS)
    + tuple(Rule(c, f"class:{c}", "ge") for c in CLASS_WORDS)
)
RULE_NAMES = tuple(r.name for r in RULES)

_SUBJECT_END = re.compile(r"\s(?:is|are)\s(?:an?|the|one)\s|\sis\s")
_CLAUSE_END = re.compile(r"\s(?:that|which|in which|obtained|consisting|resulting|arising|formed|derived|"
                         r"composed|where|having|with|from)\s|[.;]\s|[.;]$|\.$")
_OTHER_SPECIES = re.compile(r"conjugate (?:acid|base)|tautomer|enantiomer|isomer of|derives from|role")


def describe(text: str) -> Description:
    """The subject, class text and lower-cased text of a description."""
    m = _SUBJECT_END.search(text)
    subject = text[:m.start()].strip() if m else ""
    rest = text[m.end():] if m else text
    end = _CLAUSE_END.search(rest)
    parts = [rest[:end.start()] if end else rest]
    for sentence in re.split(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z])", text)[1:]:
        if sentence.startswith("It is") and not _OTHER_SPECIES.search(sentence):
            parts.append(sentence[5:])
    return Description(subject, " ; ".join(parts).lower(), text.lower())


def _count_prefix(word: str, prefix: str) -> int:
    """The substituents ``prefix`` names in ``word`` (a lower-cased name), each times its multiplier."""
    return sum(MULTIPLIERS.get(m.group(1) or "", 1)
               for m in re.finditer(r"(" + _MULT + r")?(?:" + prefix + ")", word))


def group_count(subject: str, prefix: str, suffix: str | None) -> int:
    n = _count_prefix(subject, prefix)
    if suffix:
        n += sum(MULTIPLIERS.get(m.group(1) or "", 1) for m in re.finditer(suffix, subject))
    return n


def charge_of(d: Description) -> float | None:
    """The net charge the subject's "(2-)"/"(1+)" or the class text's "dianion"/"dication" states."""
    found = re.findall(r"\((\d+)([+-])\)", d.subject)
    if found:
        n, sign = found[-1]
        return float(int(n) * (1 if sign == "+" else -1))
    m = re.search(r"\b(mono|di|tri|tetra|penta|hexa|hepta|octa)(anion|cation)\b", d.class_text)
    if m:
        return float(MULTIPLIERS[m.group(1)] * (-1 if m.group(2) == "anion" else 1))
    return None


def charge_sign_of(d: Description) -> float | None:
    c = charge_of(d)
    if c is not None:
        return float(np.sign(c))
    if re.search(r"zwitterion", d.class_text):
        return 0.0
    anion, cation = re.search(r"anion\b", d.class_text), re.search(r"cation\b", d.class_text)
    if anion and not cation:
        return -1.0
    if cation and not anion:
        return 1.0
    return None


def chain_of(subject: str) -> float | None:
    found = [CHAIN_ROOTS[m.group(1)] for m in _ROOT.finditer(subject.lower())]
    return float(max(found)) if found else None


def double_bonds_of(d: Description) -> float | None:
    """C=C bonds: the subject's E/Z descriptors, its locant-counted "-4-ene"/"-9,12-dien", or "unsaturated"."""
    s = d.subject
    ez = len(re.findall(r"(?<![A-Za-z])\d+[EZ](?![a-z])", s))
    low = s.lower()
    located = [MULTIPLIERS.get(m.group(1) or "", 1)
               for m in re.finditer(r"\d+(?:\(\d+\))?(?:,\d+(?:\(\d+\))?)*-(" + _MULT + r")?en(?=[eoyai-]|\b)", low)]
    rooted = [MULTIPLIERS.get(m.group(3) or "", 1) for m in _ROOT.finditer(low) if m.group(2).endswith("en")]
    n = max([ez, sum(located)] + rooted)
    if re.search(r"polyunsaturated", d.class_text):
        n = max(n, 2)
    elif re.search(r"(?<!poly)unsaturated|olefinic", d.class_text):
        n = max(n, 1)
    return float(n) if n else None


def sugar_units_of(d: Description) -> float | None:
    m = re.search(r"\b(mono|di|tri|tetra|penta|hexa|hepta|octa|nona|deca)saccharide", d.class_text)
    if m:
        return float(MULTIPLIERS[m.group(1)])
    codes = len(SUGAR_CODE.findall(d.subject))
    if codes:
        return float(codes)
    m = re.search(r"[a-z]o(bi|tri|tetra)ose\b", d.subject.lower())
    return float({"bi": 2, "tri": 3, "tetra": 4}[m.group(1)]) if m else None


def amino_acid_units_of(d: Description) -> float | None:
    m = re.search(r"\b(di|tri|tetra|penta|hexa|hepta|octa|nona|deca)peptide", d.class_text)
    if m:
        return float(MULTIPLIERS[m.group(1)])
    chains = [len(c.split("-")) for c in _PEPTIDE.findall(d.subject)]
    return float(max(chains)) if chains else None


def stated(text: str) -> dict:
    """{rule name: stated value} of the rules that fire on ``text``."""
    d = describe(text)
    return dict(_stated(d.subject, d.class_text))


@lru_cache(maxsize=None)
def _compiled(pattern: str):
    return re.compile(pattern)


def _stated(subject: str, class_text: str):
    d = Description(subject, class_text, "")
    low = subject.lower()
    both = low + " ; " + class_text
    values = {"charge": charge_of(d), "charge_sign": charge_sign_of(d),
              "zwitterion": 1.0 if "zwitterion" in class_text else None,
              "chain_carbons": chain_of(subject), "cc_double": double_bonds_of(d),
              "saturated": 0.0 if re.search(r"(?<!un)saturated fatty", class_text) else None,
              "sugar_units": sugar_units_of(d), "amino_acid_units": amino_acid_units_of(d)}
    terp = [c for w, c in TERPENOID_CARBONS.items() if w in class_text]
    values["terpenoid_carbons"] = float(max(terp)) if terp else None
    rings = [n for w, n in RING_WORDS.items() if w in class_text]
    values["rings"] = float(max(rings)) if rings else None
    values["glycoside"] = 1.0 if re.search(r"glycosid|glucosid|galactosid|oside\b|pyranos|furanos|saccharide|"
                                           r"glycosyl", both) else None
    values["amino_acid"] = 1.0 if re.search(r"amino acid|peptide", class_text) else None
    m = re.search(r"(?<![a-z])(" + _MULT + r")?hydrate\b", both)
    values["hydrate"] = float(MULTIPLIERS.get(m.group(1) or "", 1)) if m else None
    salt = r"\bsalt\b|hydrochloride|hydrobromide|\bcompound with\b|(?<![a-z])(?:" + _MULT + r")?hydrate\b"
    values["salt"] = 2.0 if re.search(salt, both) else None
    for g, (prefix, suffix) in GROUPS.items():
        n = group_count(low, prefix, suffix)
        if g in ("chloro", "bromo", "fluoro", "iodo") and not n and _compiled(prefix).search(class_text):
            n = 1
        values[g] = float(n) if n else None
    for e, pattern in ELEMENT_WORDS.items():
        values[e] = 1.0 if _compiled(pattern).search(both) else None
    for c, pattern in CLASS_WORDS.items():
        values[c] = 1.0 if _compiled(pattern).search(both) else None
    return [(r, values[r]) for r in RULE_NAMES if values.get(r) is not None]


def stated_matrix(texts) -> np.ndarray:
    """[len(texts), len(RULES)] stated values, NaN where a rule does not fire."""
    out = np.full((len(texts), len(RULES)), np.nan, np.float32)
    col = {r: i for i, r in enumerate(RULE_NAMES)}
    for i, t in enumerate(texts):
        for r, v in stated(t).items():
            out[i, col[r]] = v
    return out
