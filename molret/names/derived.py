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

NAME_RULES = ("substituted", "replaced", "o_substituted", "derivative", "ester")
EDIT_RULES = ("condensation", "ester_edit", "site_edit")   # molret.names.edits
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
_GROUP_SYNONYMS = {"isoprenyl": "prenyl", "hydroxyl": "hydroxy", "carboxyl": "carboxy", "keto": "oxo",
                   "chlorine": "chloro", "fluorine": "fluoro", "bromine": "bromo", "iodine": "iodo"}
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
_STEREO_GROUP = re.compile(r"^(?:alpha|beta|[RSEZ]|\d+[RSEZ]|\((?:\d*[RSEZ],?)+\)|\(?all-trans\)?)-", re.I)
# a leading stereo descriptor of a parent name ("(3R,5S)-"): the graphs carry no stereo, and OPSIN
# rejects prefixes written before it
# (only R/S/alpha/beta: an E/Z prefix may be all that places the double bonds, "(5Z,8E)-docosadienoic acid")
_STEREO_PREFIX = re.compile(r"^\((?:\d+[a-z]?'*[RS]|[RS]|\d+[a-z]?'*(?:alpha|beta)|[,\s])+\)-")
CLAUSE_END = (r"(?=\s+\((?:the|an?)\s|\.\s|\.$|;(?!\s+(?:and\s+)?by\s)|\s+It\s|"
               r",\s+(?:and\s+)?(?:in which|which|that|and which)\b|$)")
_PARENT_WORDS = re.compile(r"\b(?:group|groups|derivative|position|positions|which|that|where|whose|with|of|in)\b",
                           re.I)


def sentence_before(query: str, start: int) -> str:
    return re.split(r"(?<=[a-z0-9)\]])\.\s", query[:start])[-1]


def parent_before(text: str) -> str | None:
    """The name that ends ``text`` after its last "is/are [a|an|the]" ("X is a CLASS that is Y" -> Y)."""
    text = re.sub(r"\s+(?:which|that)\s+(?:is|are)\s*$", "", text.rstrip())
    m = re.search(r".*\b(?:is|are|consists\s+of|consisting\s+of)\s+(?:(?:a|an|the)\s+)?(?P<name>.+)$", text, re.S)
    if not m:
        return None
    return clean_parent(m.group("name"))


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


_SUBSTITUTED = re.compile(r"\s+(?:(?:which|that)\s+(?:is|are)\s+)?(?:substituted|carrying|bearing)\s+"
                          rf"(?:at\s+positions?\s+(?P<locs>{_LOCS})\s+)?(?:by|with)?\s*"
                          r"(?P<list>.+?)" + CLAUSE_END, re.I | re.S)
_REPLACED = re.compile(
    rf"\s+in which\s+(?P<one>one\s+of\s+)?(?:the\s+)?(?P<h>hydrogens?|hydrogen atoms?)\s+at\s+positions?\s+"
    rf"(?P<locs>{_LOCS})\s+"
    r"(?:(?:has|have)\s+been|is|are)\s+(?:replaced|substituted)\s+by\s+(?P<list>.+?)" + CLAUSE_END, re.I | re.S)
_DERIVATIVE = re.compile(r"\b(?:is|are)\s+(?:an?\s+|the\s+)(?P<prefix>\S+)\s+derivative\s+of\s+(?:the\s+parent\s+)?"
                         r"(?:an?\s+|the\s+)?(?P<parent>.+?)" + CLAUSE_END, re.I | re.S)
ESTER_PHRASE = re.compile(r"\b(?:is|are)\s+(?:an?|the)\s+(?P<alkyl>methyl|ethyl)\s+ester\s+"
                          r"(?:of\s+|(?:obtained|resulting|"
                          r"formed)\s+(?:from|by)\s+(?:the\s+)?(?:formal\s+)?(?:condensation|esterification)\s+of\s+"
                          r"the\s+carboxy\s+group\s+of\s+)(?:an?\s+|the\s+)?(?P<parent>.+?)(?:\s+with\s+"
                          r"(?P<alcohol>methanol|ethanol))?" + CLAUSE_END, re.I | re.S)


def clean_parent(name: str) -> str | None:
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
        parent = parent_before(sentence_before(query, m.start()))
        listing = m.group("list")
        if m.group("locs"):     # "substituted at positions 2 and 5 by methyl groups"
            listing = re.sub(r",?\s+respectively$", "", listing.strip(), flags=re.I)
            listing = f"{listing} at positions {m.group('locs')}" + (", respectively" if "," in m.group("locs")
                                                                      or " and " in listing else "")
        prefixes = substituent_prefixes(listing) if parent else None
        if prefixes:
            out += _with_prefixes(prefixes, parent)
    return out


def _rule_replaced(query: str) -> list[str]:
    out = []
    for m in _REPLACED.finditer(query):
        if _more_changes(query, m.end()):
            continue
        parent = parent_before(sentence_before(query, m.start()))
        if not parent:
            continue
        locs, listing = _locants(m.group("locs")), " ".join(m.group("list").split())
        if m.group("h").lower().startswith("hydrogens") and len(locs) == 1 and not m.group("one"):
            continue        # "the hydrogens at position 4 ... by methyl groups": two or three, not said
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
    r"(?P<verb>replaced|substituted|converted)\s+(?:by|into|to)\s+(?P<list>.+?)" + CLAUSE_END, re.I | re.S)
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
        parent = parent_before(sentence_before(query, m.start()))
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
        prefix, parent = m.group("prefix"), clean_parent(m.group("parent"))
        # "the 11-hydroxy-8-O-methyl derivative", "the N-acetyl derivative": a substitutive prefix with locants
        if not parent or not re.match(rf"^{_LOC}(?:,{_LOC})*-\S+$", prefix) or prefix.endswith("-"):
            continue
        out += _with_prefixes([prefix], parent)
    return out


def _rule_ester(query: str) -> list[str]:
    out = []
    for m in ESTER_PHRASE.finditer(query):
        alkyl, parent = m.group("alkyl").lower(), clean_parent(m.group("parent"))
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
    ``molret.names.edits.derived_edits``) are ignored here."""
    query = " ".join(str(query).split())
    out, seen = [], {subject}
    for rule in (r for r in rules if r in _RULES):
        for name in _RULES[rule](query):
            if name not in seen:
                seen.add(name)
                out.append((rule, name))
    return out

