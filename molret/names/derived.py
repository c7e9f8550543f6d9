"""Names and structures built from a query's description for a subject no name source resolves.

Many ChEBI subjects are trivial names no source knows, but their description
builds the molecule from a parent Y that does resolve: "X is Y substituted by
N Z groups at positions L", "X is Y in which the hydrogen at position L has
been replaced by a Z group", "X is the L-Z derivative of Y", "X is a methyl
ester obtained by formal condensation of the carboxy group of Y with
methanol". ``derived_names`` rewrites such a description into substitutive
names ("L-(multiplier)Z-Y", "Y methyl ester") that the name sources
(``molret.names.sources``: OPSIN parses substitutive names on many parents, the
dictionaries know common derivatives) then resolve like any other name; a
rule fires only when the sentence parses completely (every group has its
positions, counts agree), so a name it builds is the described molecule or
nothing. Which rules are used, and how often each is exactly right on val:
docs/experiments.md "Names 3.0".
"""
from __future__ import annotations

import re
from typing import Sequence

NAME_RULES = ("substituted", "replaced", "o_substituted", "derivative", "ester")
EDIT_RULES = ("condensation", "ester_edit", "site_edit")
RULES = NAME_RULES + EDIT_RULES
# the rules exact often enough (>= 70% of the structures they give, on val, or on train where val has no case):
# docs/experiments.md "Names 3.0"; "ester" and "ester_edit" were not (carbamic acid parents misread)
DEFAULT_RULES = ("substituted", "replaced", "o_substituted", "derivative", "condensation", "site_edit")

_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8}
_MULTIPLIER = {1: "", 2: "di", 3: "tri", 4: "tetra", 5: "penta", 6: "hexa", 7: "hepta", 8: "octa"}
_MULTIPLIER_COMPOUND = {1: "", 2: "bis", 3: "tris", 4: "tetrakis", 5: "pentakis", 6: "hexakis", 7: "heptakis",
                        8: "octakis"}
# ChEBI's substituent words -> the names OPSIN reads the same way
_GROUP_SYNONYMS = {"isoprenyl": "prenyl", "hydroxyl": "hydroxy", "carboxyl": "carboxy"}
# substituents written without parentheses ("3,5-dihydroxy"); any other is parenthesised ("3,4-bis(hydroxymethyl)":
# "3,4-dihydroxymethyl" would read as dihydroxy-methyl)
_SIMPLE_GROUPS = frozenset(
    "hydroxy oxo methyl ethyl propyl butyl pentyl hexyl heptyl octyl methoxy ethoxy propoxy chloro bromo fluoro iodo "
    "amino nitro cyano formyl carboxy sulfo phenyl benzyl benzoyl acetyl prenyl geranyl farnesyl geranylgeranyl "
    "methylidene methylene ethylidene vinyl ethenyl allyl isopropyl isobutyl mercapto sulfanyl imino hydroxyimino "
    "phospho phosphono phosphonooxy sulfooxy acetoxy acetyloxy benzyloxy phenoxy glucosyl glucopyranosyl "
    "isopentenyl propanoyl butanoyl hydroperoxy epoxy azido methylsulfanyl methylthio trifluoromethyl".split())

_LOC = r"(?:[NOS]-?\d+'*|\d+[a-z]?'*(?:alpha|beta)?|[NOS]'*)"
_LOCS = rf"{_LOC}(?:\s*,\s*{_LOC})*(?:,?\s+and\s+{_LOC})?"
_NOUN = r"(?:groups?|moiety|moieties|substituents?|atoms?|residues?)"
# one item of a substituent list: "[count] [additional] <group> [groups] at position(s) <locants>"
_ITEM = re.compile(
    rf"^(?:(?P<count>a|an|one|two|three|four|five|six|seven|eight)\s+)?(?:(?:additional|further|geminal)\s+)*"
    rf"(?P<group>\S+?)\s+(?:(?P<noun>{_NOUN})\s+)?at\s+(?:(?:the\s+)?positions?\s+|the\s+)?(?P<locs>{_LOCS})"
    r"(?:[\s-]+positions?)?$",
    re.I)
_PLURAL_NOUNS = {"groups", "moieties", "substituents", "atoms", "residues"}
_GEMINAL = re.compile(r"\bgeminal\b", re.I)
# items end at a comma or "and" not followed by another locant ("positions 1, 3 and 7" is one item)
_ITEM_SPLIT = re.compile(rf"(?:[,;]\s+|,?\s+and\s+|\s+as\s+well\s+as\s+)(?:and\s+)?(?:by\s+)?"
                         rf"(?!(?:and\s+)?{_LOC}(?:[\s,;]|$))", re.I)
_STEREO_GROUP = re.compile(r"^(?:alpha|beta|[RSEZ]|\d+[RSEZ])-", re.I)
# a leading stereo descriptor of a parent name ("(3R,5S)-"): the graphs carry no stereo, and OPSIN
# rejects prefixes written before it
# (only R/S/alpha/beta: an E/Z prefix may be all that places the double bonds, "(5Z,8E)-docosadienoic acid")
_STEREO_PREFIX = re.compile(r"^\((?:\d+[a-z]?'*[RS]|[RS]|\d+[a-z]?'*(?:alpha|beta)|[,\s])+\)-")
_CLAUSE_END = (r"(?=\s+\((?:the|an?)\s|\.\s|\.$|;(?!\s+(?:and\s+)?by\s)|\s+It\s|"
               r",\s+(?:and\s+)?(?:in which|which|that|and which)\b|$)")
_PARENT_WORDS = re.compile(r"\b(?:group|groups|derivative|position|positions|which|that|where|whose|with|of|in)\b",
                           re.I)


def _sentence_of(query: str, start: int) -> str:
    return re.split(r"(?<=[a-z0-9)\]])\.\s", query[:start])[-1]


def _parent_before(text: str) -> str | None:
    """The name that ends ``text`` after its last "is/are [a|an|the]" ("X is a CLASS that is Y" -> Y)."""
    text = re.sub(r"\s+(?:which|that)\s+(?:is|are)\s*$", "", text.rstrip())
    m = re.search(r".*\b(?:is|are)\s+(?:(?:a|an|the)\s+)?(?P<name>.+)$", text, re.S)
    if not m:
        return None
    return _clean_parent(m.group("name"))


def _group_name(group: str) -> str:
    group = _STEREO_GROUP.sub("", group.strip())
    return _GROUP_SYNONYMS.get(group.lower(), group)


def _prefix(group: str, locants: list[str]) -> str:
    """"3,5-dihydroxy", "4-(2-carboxyethyl)", "2,6-bis(pyridin-3-ylmethylene)"."""
    group, n = _group_name(group), len(locants)
    compound = group.lower() not in _SIMPLE_GROUPS
    if compound:
        body = f"{_MULTIPLIER_COMPOUND[n]}({group})" if n > 1 else f"({group})"
    else:
        body = _MULTIPLIER[n] + group
    return ",".join(locants) + "-" + body


def _locants(text: str) -> list[str]:
    """"1, 3 and 2'" -> ["1", "3", "2'"]; "N-2" -> "N2"; "6alpha" -> "6" (the graphs carry no stereo)."""
    locs = [x for x in re.split(r",?\s+and\s+|\s*,\s*", text.strip()) if x]
    return [re.sub(r"(?:alpha|beta)$", "", x.replace("-", "")) for x in locs]


def substituent_prefixes(listing: str) -> list[str] | None:
    """The prefixes of a substituent list ("hydroxy groups at positions 3 and 5, a methyl group at
    position 2" -> ["3,5-dihydroxy", "2-methyl"]); None unless every item has its positions and
    its count agrees with them. "A, B and C groups at positions 1, 4 and 5, respectively" pairs
    them in order."""
    listing = " ".join(listing.split()).strip(" ,.")
    m = re.match(rf"^(?P<groups>.+?)\s+(?:{_NOUN}\s+)?at\s+(?:the\s+)?positions?\s+(?P<locs>{_LOCS}),?\s+"
                 r"respectively$", listing, re.I)
    if m:
        groups = [re.sub(rf"^(?:an?|one)\s+|\s+{_NOUN}$", "", g, flags=re.I)
                  for g in re.split(r",\s+(?:and\s+)?|\s+and\s+", m.group("groups"))]
        locs = _locants(m.group("locs"))
        if len(groups) == len(locs) and all(g and " " not in g for g in groups):
            return [_prefix(g, [loc]) for g, loc in zip(groups, locs)]
    listing = re.sub(r",?\s+respectively$", "", listing, flags=re.I)
    out = []
    for item in _ITEM_SPLIT.split(listing):
        im = _ITEM.match(item.strip())
        if not im:
            return None
        locs = _locants(im.group("locs"))
        if _GEMINAL.search(item) and len(locs) == 1:
            locs = locs * 2
        count = im.group("count") and _COUNT_WORDS[im.group("count").lower()]
        if not count and len(locs) == 1 and (im.group("noun") or "").lower() in _PLURAL_NOUNS:
            return None                 # "R groups at position 6": how many is not said
        if count and count > 1 and len(locs) == 1:
            locs = locs * count         # "two methyl groups at position 8": 8,8-dimethyl
        if count and count != len(locs):
            return None
        if len(locs) > 8:
            return None
        out.append(_prefix(im.group("group"), locs))
    return out or None


def _with_prefixes(prefixes: list[str], parent: str) -> list[str]:
    """The substituted parent's name, prefixes joined to it (and a hyphenated spelling some sources prefer)."""
    joined = "-".join(prefixes)
    names = [f"{joined}{parent}" if parent[:1].isalpha() and not parent[:1].isupper() else f"{joined}-{parent}"]
    names.append(f"{joined}-{parent}")
    return list(dict.fromkeys(names))


_SUBSTITUTED = re.compile(r"\s+(?:(?:which|that)\s+(?:is|are)\s+)?(?:substituted|carrying)\s+(?:by|with)?\s*"
                          r"(?P<list>.+?)" + _CLAUSE_END, re.I | re.S)
_REPLACED = re.compile(
    rf"\s+in which\s+(?:the\s+)?(?:hydrogens?|hydrogen atoms?)\s+at\s+positions?\s+(?P<locs>{_LOCS})\s+"
    r"(?:(?:has|have)\s+been|is|are)\s+(?:replaced|substituted)\s+by\s+(?P<list>.+?)" + _CLAUSE_END, re.I | re.S)
_DERIVATIVE = re.compile(r"\b(?:is|are)\s+(?:an?\s+|the\s+)(?P<prefix>\S+)\s+derivative\s+of\s+(?:the\s+parent\s+)?"
                         r"(?:an?\s+|the\s+)?(?P<parent>.+?)" + _CLAUSE_END, re.I | re.S)
_ESTER = re.compile(r"\b(?:is|are)\s+(?:an?|the)\s+(?P<alkyl>methyl|ethyl)\s+ester\s+(?:of\s+|(?:obtained|resulting|"
                    r"formed)\s+(?:from|by)\s+(?:the\s+)?(?:formal\s+)?(?:condensation|esterification)\s+of\s+the\s+"
                    r"carboxy\s+group\s+of\s+)(?:an?\s+|the\s+)?(?P<parent>.+?)(?:\s+with\s+(?P<alcohol>methanol|"
                    r"ethanol))?" + _CLAUSE_END, re.I | re.S)


def _clean_parent(name: str) -> str | None:
    """A parent's name as the sources want it, None when it is not one name."""
    name = re.sub(r"\s+\([^()]*\)$", "", " ".join(name.split()).strip(" ,"))   # "hentriacontanoic acid (a C31 acid)"
    cls = re.match(r"^(?:a\s+)?member\s+of\s+the\s+class\s+of\s+(?P<plural>[\w,\[\]()'-]+)s$", name)
    if cls:
        name = cls.group("plural")     # "a member of the class of azulenes carrying ... substituents at ..."
    if re.search(r"yl\s+\S+ate$", name):
        return None    # an ester's name ("2,3-dimethylbutyl acetate"): which part a prefix goes to is unclear
    if not name or len(name.split()) > 4 or _PARENT_WORDS.search(name):
        return None
    return _STEREO_PREFIX.sub("", name)


# the rest of the sentence changes the molecule further: a name from the first change alone would be wrong
_MORE_CHANGES = re.compile(r"\bin which\b|\bwhich\b|\bsubstituted\b|\breplaced\b|\bconverted\b|\bcondens|\bcarrying\b|"
                           r"\bbearing\b|\bacylated\b|\besterified\b|\blinked\b|\battached\b", re.I)


def _more_changes(query: str, end: int) -> bool:
    rest = re.split(r"(?<=[a-z0-9)\]])\.\s", query[end:], maxsplit=1)[0]
    return bool(_MORE_CHANGES.search(rest))


def _rule_substituted(query: str) -> list[str]:
    out = []
    for m in _SUBSTITUTED.finditer(query):
        if _more_changes(query, m.end()):
            continue
        parent = _parent_before(_sentence_of(query, m.start()))
        prefixes = substituent_prefixes(m.group("list")) if parent else None
        if prefixes:
            out += _with_prefixes(prefixes, parent)
    return out


def _rule_replaced(query: str) -> list[str]:
    out = []
    for m in _REPLACED.finditer(query):
        if _more_changes(query, m.end()):
            continue
        parent = _parent_before(_sentence_of(query, m.start()))
        if not parent:
            continue
        locs, listing = _locants(m.group("locs")), " ".join(m.group("list").split())
        respectively = re.match(r"^(?P<groups>.+?),?\s+respectively$", listing, re.I)
        if respectively:
            groups = [re.sub(rf"^(?:an?|one)\s+|\s+{_NOUN}$", "", g, flags=re.I)
                      for g in re.split(r",\s+(?:and\s+)?|\s+and\s+", respectively.group("groups"))]
            if len(groups) != len(locs) or any(not g or " " in g for g in groups):
                continue
            prefixes = [_prefix(g, [loc]) for g, loc in zip(groups, locs)]
        else:
            g = re.match(rf"^(?:(?P<count>a|an|one|two|three|four|five|six)\s+)?(?P<group>\S+?)(?:\s+{_NOUN})?$",
                         listing, re.I)
            if not g or (g.group("count") and _COUNT_WORDS[g.group("count").lower()] != len(locs)):
                continue
            prefixes = [_prefix(g.group("group"), locs)]
        out += _with_prefixes(prefixes, parent)
    return out


_O_REPLACED = re.compile(
    r"\s+in which\s+(?:the\s+|both\s+)?"
    r"(?:(?:phenolic|alcoholic)\s+(?:hydroxy\s+|hydroxyl\s+)?|(?:hydroxy|hydroxyl|OH)\s+)"
    r"(?:hydrogens?|groups?)\s+"
    rf"at\s+(?:the\s+)?positions?\s+(?P<locs>{_LOCS})(?:\s+positions?)?\s+(?:(?:has|have)\s+(?:each\s+)?been|is|are)\s+"
    r"(?P<verb>replaced|substituted|converted)\s+(?:by|into|to)\s+(?P<list>.+?)" + _CLAUSE_END, re.I | re.S)
# what a hydroxy group "has been converted into": the O-substituent it then carries
_O_PRODUCTS = {"acetate ester": "acetyl", "acetate": "acetyl", "methyl ether": "methyl", "ethyl ether": "ethyl",
               "sulfate": "sulfo", "sulfate ester": "sulfo", "phosphate": "phosphono", "benzoate ester": "benzoyl",
               "benzoate": "benzoyl"}
_O_GROUPS = {"methoxy": "methyl", "ethoxy": "ethyl", "acetoxy": "acetyl", "acetyloxy": "acetyl", "sulfooxy": "sulfo",
             "benzoyloxy": "benzoyl", "phosphonooxy": "phosphono"}


def _o_prefix(group: str, locants: list[str]) -> str:
    """"3',7-di-O-methyl", "5-O-(beta-D-glucosyl)"."""
    group, n = _group_name(group), len(locants)
    body = group if group.lower() in _SIMPLE_GROUPS else f"({group})"
    return ",".join(locants) + "-" + (f"{_MULTIPLIER[n]}-O-" if n > 1 else "O-") + body


def _rule_o_substituted(query: str) -> list[str]:
    """"Y in which the hydroxy hydrogen at position 3 has been replaced by a methyl group", "... the hydroxy
    group at position 3 is replaced by a methoxy group", "... has been converted into the corresponding
    acetate ester / beta-D-glucoside" -> "3-O-methyl-Y", "3-O-acetyl-Y", "3-O-(beta-D-glucosyl)-Y"."""
    out = []
    for m in _O_REPLACED.finditer(query):
        if _more_changes(query, m.end()):
            continue
        parent = _parent_before(_sentence_of(query, m.start()))
        if not parent:
            continue
        locs, verb = _locants(m.group("locs")), m.group("verb").lower()
        listing = re.sub(r"^(?:the\s+corresponding|its|their)\s+", "", " ".join(m.group("list").split()), flags=re.I)
        whole = re.match(rf"^(?:(?P<count>a|an|one|two|three|four)\s+)?(?P<group>\S+?)(?:\s+{_NOUN}|\s+derivatives?)?$",
                         listing, re.I)
        product = _O_PRODUCTS.get(listing.lower().rstrip("s"))
        hydrogen = re.search(r"hydrogens?\s+at", m.group(0), re.I) is not None
        if product:
            group = product
        elif (whole and whole.group("count") and len(locs) > 1
              and _COUNT_WORDS[whole.group("count").lower()] != len(locs)):
            continue
        elif whole and verb == "converted" and re.search(r"(?:oside|osides)$", whole.group("group")):
            group = re.sub(r"osides?$", "osyl", whole.group("group"))   # "beta-D-glucoside" -> "beta-D-glucosyl"
        elif whole and verb != "converted" and hydrogen:
            group = whole.group("group")
        elif whole and verb != "converted" and whole.group("group").lower() in _O_GROUPS:
            group = _O_GROUPS[whole.group("group").lower()]   # the hydroxy group replaced by a methoxy group
        else:
            continue
        out += _with_prefixes([_o_prefix(group, locs)], parent)
    return out


def _rule_derivative(query: str) -> list[str]:
    out = []
    for m in _DERIVATIVE.finditer(query):
        prefix, parent = m.group("prefix"), _clean_parent(m.group("parent"))
        # "the 11-hydroxy-8-O-methyl derivative", "the N-acetyl derivative": a substitutive prefix with locants
        if not parent or not re.match(rf"^{_LOC}(?:,{_LOC})*-\S+$", prefix) or prefix.endswith("-"):
            continue
        out += _with_prefixes([prefix], parent)
    return out


def _rule_ester(query: str) -> list[str]:
    out = []
    for m in _ESTER.finditer(query):
        alkyl, parent = m.group("alkyl").lower(), _clean_parent(m.group("parent"))
        alcohol = m.group("alcohol")
        if not parent or (alcohol and alcohol.lower() != {"methyl": "methanol", "ethyl": "ethanol"}[alkyl]):
            continue
        names = [f"{parent} {alkyl} ester"]
        acid = re.match(r"^(?P<stem>.+)ic acid$", parent)
        if acid:
            names.append(f"{alkyl} {acid.group('stem')}ate")
        out += names
    return out


_RULES = {"substituted": _rule_substituted, "replaced": _rule_replaced, "o_substituted": _rule_o_substituted,
          "derivative": _rule_derivative,
          "ester": _rule_ester}


def derived_names(query: str, subject: str | None, rules=RULES) -> list[tuple[str, str]]:
    """(rule, name) pairs to resolve for ``subject`` from its description ``query``, in confidence
    order (``rules``' order, then the order the sentence gives), each name once; [] when no rule
    parses it. The subject's own name is never repeated; ``rules`` not in NAME_RULES (the edits of
    ``derived_edits``) are ignored here."""
    query = " ".join(str(query).split())
    out, seen = [], {subject}
    for rule in (r for r in rules if r in _RULES):
        for name in _RULES[rule](query):
            if name not in seen:
                seen.add(name)
                out.append((rule, name))
    return out


# ------------------------------------------------------------------ structure edits on resolved parents
#
# Where no name can say it ("obtained by formal condensation of the carboxy group of Y with the amino group
# of Z", "the N-acetyl derivative of Y" for a Y no source knows substituted, "Y in which the phenolic
# hydrogen has been replaced by a sulfo group"), the molecule is built from the parents' structures with
# RDKit, and only when each parent has exactly one site of the named kind (else nothing).

# (SMARTS, attach atom, leaving atom or None) per site kind; a leaving atom is the acid's O-H
_SITES = {
    "carboxy": ("[CX3](=O)[OX2H1]", 0, 2),
    "sulfo": ("[SX4](=O)(=O)[OX2H1]", 0, 3),
    "hydroxy": ("[OX2H1;$(O[#6]);!$(O[#6,#16,#15]=[#8,#16])]", 0, None),
    "alcoholic hydroxy": ("[OX2H1;$(O[CX4])]", 0, None),
    "phenolic hydroxy": ("[OX2H1;$(Oc)]", 0, None),
    "amino": ("[NX3;H3,H2,H1;+0;!$(N[#6,#16,#15]=[#7,#8,#16]);!$(N-[#7,#8]);!$(N-[#6]#*)]", 0, None),
    "primary amino": ("[NX3;H3,H2;+0;!$(N[#6,#16,#15]=[#7,#8,#16]);!$(N-[#7,#8]);!$(N-[#6]#*)]", 0, None),
    "secondary amino": ("[NX3;H1;+0;!$(N[#6,#16,#15]=[#7,#8,#16]);!$(N-[#7,#8]);!$(N-[#6]#*)]", 0, None),
}
_ACID_KINDS = ("carboxy", "sulfo")
# substituents an edit attaches in place of a hydrogen (first atom attached)
_FRAGMENTS = {"methyl": "C", "ethyl": "CC", "propyl": "CCC", "acetyl": "C(C)=O", "formyl": "C=O",
              "propanoyl": "C(=O)CC", "propionyl": "C(=O)CC", "butanoyl": "C(=O)CCC", "butyryl": "C(=O)CCC",
              "benzoyl": "C(=O)c1ccccc1", "sulfo": "S(=O)(=O)O", "phosphono": "P(=O)(O)O", "benzyl": "Cc1ccccc1",
              "hydroxy": "O", "amino": "N", "carboxy": "C(=O)O", "carbamoyl": "C(N)=O"}


def _group_kind(text: str) -> str | None:
    """The site kind of "the (2-)carboxy group", "the secondary amino group", "the anomeric hydroxy group"."""
    t = text.lower()
    if re.search(r"carboxy|carboxylic acid", t):
        return "carboxy"
    if re.search(r"\bsulfo\b|sulfonic acid", t):
        return "sulfo"
    if re.search(r"hydroxy|hydroxyl", t):
        return ("phenolic hydroxy" if "phenolic" in t else "alcoholic hydroxy" if "alcoholic" in t else "hydroxy")
    if re.search(r"amino|anilino", t):
        return "primary amino" if "primary" in t else "secondary amino" if "secondary" in t else "amino"
    return None


_GROUP = r"(?:the\s+)?(?P<g{n}>[\w'(),-]*(?:\s+[\w'(),-]+)?\s+group)"
_CONDENSATION = re.compile(
    r"\bcondensation\s+(?:reaction\s+)?(?:between|of)\s+" + _GROUP.format(n=1) +
    r"\s+of\s+(?:an?\s+|the\s+)?(?P<p1>.+?)\s+(?:with|and)\s+(?:" + _GROUP.format(n=2) + r"\s+of\s+)?"
    r"(?:an?\s+|the\s+)?(?P<p2>.+?)" + _CLAUSE_END, re.I | re.S)
_ESTER_OF = re.compile(r"\b(?:is|are)\s+(?:an?|the)\s+(?P<alkyl>methyl|ethyl)\s+ester\s+of\s+(?:an?\s+|the\s+)?"
                       r"(?P<parent>.+?)" + _CLAUSE_END, re.I | re.S)
_H_REPLACED = re.compile(
    r"\s+in which\s+the\s+(?P<site>(?:(?:phenolic|alcoholic|hydroxy|hydroxyl|amino|carboxy)\s+)+)hydrogen\s+"
    r"(?:has\s+been|is)\s+(?:replaced|substituted)\s+by\s+(?:an?\s+)?(?P<group>\S+)\s+(?:group|residue|moiety)"
    + _CLAUSE_END, re.I | re.S)
_SITE_DERIVATIVE = re.compile(r"\b(?:is|are)\s+(?:an?\s+|the\s+)(?P<atom>[NO])-(?P<group>[a-z]+)\s+derivative\s+of\s+"
                              r"(?:the\s+parent\s+)?(?:an?\s+|the\s+)?(?P<parent>.+?)" + _CLAUSE_END, re.S)


def derived_edits(query: str, subject: str | None = None, rules=EDIT_RULES) -> list[tuple[str, tuple, tuple]]:
    """(rule, parent names, edit) of each structure edit the description states, in ``rules``' order:
    edit ("condense", kind1, kind2) joins parent 1's site kind1 to parent 2's kind2 (kind2 None: the
    other parent's only site that can condense with kind1); ("attach", kind, group) puts
    ``_FRAGMENTS[group]`` on the parent's only site of that kind. The parents are names to resolve;
    ``derived_structures`` builds the molecules."""
    query = " ".join(str(query).split())
    out = []
    for rule in (r for r in rules if r in EDIT_RULES):
        if rule == "condensation":
            for m in _CONDENSATION.finditer(query):
                k1, k2 = _group_kind(m.group("g1")), _group_kind(m.group("g2")) if m.group("g2") else None
                p1, p2 = _clean_parent(m.group("p1")), _clean_parent(m.group("p2"))
                if not (k1 and p1 and p2) or (m.group("g2") and not k2) or p1 == p2:
                    continue
                if k2 is not None and (k1 in _ACID_KINDS) == (k2 in _ACID_KINDS):
                    continue
                out.append((rule, (p1, p2), ("condense", k1, k2)))
        elif rule == "ester_edit":
            for m in list(_ESTER.finditer(query)) + list(_ESTER_OF.finditer(query)):
                parent = _clean_parent(m.group("parent"))
                alcohol = {"methyl": "methanol", "ethyl": "ethanol"}[m.group("alkyl").lower()]
                if parent and (m.groupdict().get("alcohol") or alcohol).lower() == alcohol:
                    out.append((rule, (parent, alcohol), ("condense", "carboxy", "hydroxy")))
        elif rule == "site_edit":
            for m in _H_REPLACED.finditer(query):
                parent, group = _parent_before(_sentence_of(query, m.start())), m.group("group").lower()
                kind = _group_kind(m.group("site")) or ("hydroxy" if "phenolic" in m.group("site").lower() else None)
                if "phenolic" in m.group("site").lower():
                    kind = "phenolic hydroxy"
                if parent and kind and group in _FRAGMENTS:
                    out.append((rule, (parent,), ("attach", kind, group)))
            for m in _SITE_DERIVATIVE.finditer(query):
                parent, group = _clean_parent(m.group("parent")), m.group("group")
                if parent and group in _FRAGMENTS:
                    out.append((rule, (parent,), ("attach", "amino" if m.group("atom") == "N" else "hydroxy", group)))
    unique = []
    for e in out:
        if e not in unique:
            unique.append(e)
    return unique


def _site_atoms(mol, kind: str) -> list[tuple[int, int | None]]:
    """(attach atom, leaving atom) of each distinct site of ``kind`` in ``mol``."""
    from rdkit import Chem
    smarts, attach, leaving = _SITES[kind]
    if kind not in _SITE_PATTERNS:
        _SITE_PATTERNS[kind] = Chem.MolFromSmarts(smarts)
    seen, out = set(), []
    for match in mol.GetSubstructMatches(_SITE_PATTERNS[kind]):
        if match[attach] not in seen:
            seen.add(match[attach])
            out.append((match[attach], None if leaving is None else match[leaving]))
    return out


_SITE_PATTERNS: dict = {}


def _join(mol1, site1: tuple, mol2, site2: tuple) -> str | None:
    """SMILES of ``mol1`` and ``mol2`` bonded at the attach atoms of their sites (each losing its leaving
    atom or one hydrogen); None when RDKit refuses the result."""
    from rdkit import Chem
    rw = Chem.RWMol(Chem.CombineMols(mol1, mol2))
    offset = mol1.GetNumAtoms()
    a, b = site1[0], site2[0] + offset
    rw.AddBond(a, b, Chem.BondType.SINGLE)
    for atom_index in (a, b):
        atom = rw.GetAtomWithIdx(atom_index)
        if atom.GetNumExplicitHs() > 0:
            atom.SetNumExplicitHs(atom.GetNumExplicitHs() - 1)
    leaving = [i for i in (site1[1], None if site2[1] is None else site2[1] + offset) if i is not None]
    for i in sorted(leaving, reverse=True):
        rw.RemoveAtom(i)
    try:
        mol = rw.GetMol()
        Chem.SanitizeMol(mol)
        return Chem.MolToSmiles(mol)
    except Exception:  # noqa: BLE001 - RDKit raises its own types
        return None


def apply_edit(edit: tuple, parent_smiles: Sequence[str]) -> str | None:
    """The SMILES ``edit`` (``derived_edits``) builds from its parents' SMILES, None unless every
    parent has exactly one site of the kind it names."""
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    mols = [Chem.MolFromSmiles(s) if s else None for s in parent_smiles]
    if any(m is None for m in mols):
        return None
    if edit[0] == "condense":
        _, k1, k2 = edit
        s1 = _site_atoms(mols[0], k1)
        if k2 is None:
            # the other parent's only site that condenses with kind1 (an acid with an alcohol or amine, or back)
            kinds = ("hydroxy", "amino") if k1 in _ACID_KINDS else _ACID_KINDS
            s2 = [s for k in kinds for s in _site_atoms(mols[1], k)]
        else:
            s2 = _site_atoms(mols[1], k2)
        if len(s1) != 1 or len(s2) != 1:
            return None
        return _join(mols[0], s1[0], mols[1], s2[0])
    if edit[0] == "attach":
        _, kind, group = edit
        sites = _site_atoms(mols[0], kind)
        if len(sites) != 1:
            return None
        return _join(mols[0], sites[0], Chem.MolFromSmiles(_FRAGMENTS[group]), (0, None))
    return None


def derived_structures(query: str, subject: str | None, parent_smiles: dict,
                       rules=EDIT_RULES) -> list[tuple[str, str]]:
    """(rule, SMILES) of each edit of ``derived_edits`` whose parents all have a SMILES in
    ``parent_smiles`` (name -> SMILES; the resolved parents) and whose sites are unambiguous, in order."""
    out = []
    for rule, parents, edit in derived_edits(query, subject, rules):
        if all(parent_smiles.get(p) for p in parents):
            smiles = apply_edit(edit, [parent_smiles[p] for p in parents])
            if smiles and (rule, smiles) not in out:
                out.append((rule, smiles))
    return out
