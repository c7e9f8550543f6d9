"""Names built from a query's description for a subject no source resolves ("Y substituted by hydroxy groups at positions 3 and 5" -> "3,5-dihydroxy-Y").

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

RULES = ("substituted", "replaced", "derivative", "ester")
DEFAULT_RULES = RULES     # each exact on val often enough: docs/experiments.md "Names 3.0"

_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8}
_MULTIPLIER = {1: "", 2: "di", 3: "tri", 4: "tetra", 5: "penta", 6: "hexa", 7: "hepta", 8: "octa"}
_MULTIPLIER_COMPOUND = {1: "", 2: "bis", 3: "tris", 4: "tetrakis", 5: "pentakis", 6: "hexakis", 7: "heptakis",
                        8: "octakis"}
# ChEBI's substituent words -> the names OPSIN reads the same way
_GROUP_SYNONYMS = {"isoprenyl": "prenyl", "hydroxyl": "hydroxy", "carboxyl": "carboxy"}

_LOC = r"(?:[NOS]?\d+[a-z]?'*|[NOS]'*)"
_LOCS = rf"{_LOC}(?:\s*,\s*{_LOC})*(?:,?\s+and\s+{_LOC})?"
_NOUN = r"(?:groups?|moiety|moieties|substituents?|atoms?|residues?)"
# one item of a substituent list: "[count] [additional] <group> [groups] at position(s) <locants>"
_ITEM = re.compile(
    rf"^(?:(?P<count>a|an|one|two|three|four|five|six|seven|eight)\s+)?(?:(?:additional|further|geminal)\s+)*"
    rf"(?P<group>\S+?)\s+(?:{_NOUN}\s+)?at\s+(?:(?:the\s+)?positions?\s+)?(?P<locs>{_LOCS})(?:[\s-]+positions?)?$",
    re.I)
_GEMINAL = re.compile(r"\bgeminal\b", re.I)
# items end at a comma or "and" not followed by another locant ("positions 1, 3 and 7" is one item)
_ITEM_SPLIT = re.compile(rf"(?:,\s+|,?\s+and\s+)(?:and\s+)?(?:by\s+)?(?!(?:and\s+)?{_LOC}(?:[\s,]|$))", re.I)
_STEREO_GROUP = re.compile(r"^(?:alpha|beta|[RSEZ]|\d+[RSEZ])-", re.I)
# a leading stereo descriptor of a parent name ("(3R,5S)-"): the graphs carry no stereo, and OPSIN
# rejects prefixes written before it
_STEREO_PREFIX = re.compile(r"^\((?:\d+[a-z]?'*[RSEZ]|[RSEZ]|\d+[a-z]?'*(?:alpha|beta)|[,\s])+\)-")
_CLAUSE_END = r"(?=\s+\((?:the|an?)\s|\.\s|\.$|;|,\s+(?:and\s+)?(?:in which|which|that|and which)\b|$)"
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
    name = " ".join(m.group("name").split()).strip(" ,")
    if not name or len(name.split()) > 4 or _PARENT_WORDS.search(name):
        return None
    return _STEREO_PREFIX.sub("", name)


def _group_name(group: str) -> str:
    group = _STEREO_GROUP.sub("", group.strip())
    return _GROUP_SYNONYMS.get(group.lower(), group)


def _prefix(group: str, locants: list[str]) -> str:
    """"3,5-dihydroxy", "4-(2-carboxyethyl)", "2,6-bis(pyridin-3-ylmethylene)"."""
    group, n = _group_name(group), len(locants)
    compound = bool(re.search(r"[\d\s,()\[\]-]", group))
    if compound:
        body = f"{_MULTIPLIER_COMPOUND[n]}({group})" if n > 1 else f"({group})"
    else:
        body = _MULTIPLIER[n] + group
    return ",".join(locants) + "-" + body


def _locants(text: str) -> list[str]:
    return [x for x in re.split(r",?\s+and\s+|\s*,\s*", text.strip()) if x]


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
        count = im.group("count")
        if count and _COUNT_WORDS[count.lower()] != len(locs):
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
    name = " ".join(name.split()).strip(" ,")
    if not name or len(name.split()) > 4 or _PARENT_WORDS.search(name):
        return None
    return _STEREO_PREFIX.sub("", name)


def _rule_substituted(query: str) -> list[str]:
    out = []
    for m in _SUBSTITUTED.finditer(query):
        parent = _parent_before(_sentence_of(query, m.start()))
        prefixes = substituent_prefixes(m.group("list")) if parent else None
        if prefixes:
            out += _with_prefixes(prefixes, parent)
    return out


def _rule_replaced(query: str) -> list[str]:
    out = []
    for m in _REPLACED.finditer(query):
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


_RULES = {"substituted": _rule_substituted, "replaced": _rule_replaced, "derivative": _rule_derivative,
          "ester": _rule_ester}


def derived_names(query: str, subject: str | None, rules=RULES) -> list[tuple[str, str]]:
    """(rule, name) pairs to resolve for ``subject`` from its description ``query``, in confidence
    order (``rules``' order, then the order the sentence gives), each name once; [] when no rule
    parses it. The subject's own name is never repeated."""
    query = " ".join(str(query).split())
    out, seen = [], {subject}
    for rule in rules:
        for name in _RULES[rule](query):
            if name not in seen:
                seen.add(name)
                out.append((rule, name))
    return out
