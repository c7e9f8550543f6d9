"""Chemical names in a query: found, resolved to structures with OPSIN, and
turned into the challenge's graphs.

Most ChEBI-style descriptions open with the molecule's name ("2-hydroxybutanoic
acid is a ...") and cite others ("It derives from a butyric acid", "It is a
conjugate acid of ...", "... that is alpha-D-mannopyranose in which ...").
``extract_names`` finds them; ``molret.names.opsin.Opsin`` resolves names to SMILES
with OPSIN (the open name-to-structure parser, in one long-lived Java
process); ``resolve_queries`` turns each
query's names into :class:`QueryStructures` (graph identity keys and
substructure-identifier sets, built with ``molret.chem.molecule_files``). How these
structures score candidate molecules is ``molret.ranking.name_fusion``.

Nothing fails because a name is odd: a name OPSIN rejects, or whose structure
RDKit refuses, is skipped. Java or OPSIN missing: one warning line, and no
names are resolved.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from molret.names.opsin import OpsinUnavailable
from molret.names.variants import name_variants

log = logging.getLogger("molret")

MAX_NAME_CHARS = 300            # longer "names" are sentence fragments, not names

# ------------------------------------------------------------------ finding names

_ARTICLE = r"(?:(?:a|an|the)\s+)?"
# the molecule's own name: everything before the first "is a/an/the", "are"
_SUBJECT = re.compile(r"^\s*\"?(?P<name>\S.*?)\s+(?:is|are)\s+(?:a|an|the|one|two)\b", re.S)
# cited structures: "<phrase> <name>" up to the end of the clause
_CITED = re.compile(
    r"\b(?P<phrase>derives from|conjugate (?:acid|base) of|tautomer of|enantiomer of)\s+" + _ARTICLE +
    r"(?P<names>.+?)(?=\.\s|\.$|;|,\s+(?:obtained|arising|formed|resulting|with|which|in which)\b|$)", re.I | re.S)
# "... is <name> in which ..." (the name the molecule is a modification of): the words between the
# last "is"/"are" (and article) of the clause and "in which"
_IN_WHICH = re.compile(r"\bin which\b", re.I)
_LAST_IS = re.compile(r".*\b(?:is|are)\s+" + _ARTICLE + r"(?P<name>.+)$", re.I | re.S)
_SUBJECT_NO_ARTICLE = re.compile(r"^\s*\"?(?P<name>\S+(?:\s+\S+){0,5}?)\s+(?:is|are)\s+", re.S)
_FIRST_IS = re.compile(r"\s+(?:is|are)\s+")
_LIST_SPLIT = re.compile(r",\s+(?:and\s+)?" + _ARTICLE + r"|\s+and\s+" + _ARTICLE, re.I)
_LEADING = re.compile(r"^(?:(?:a|an|the)\s+)?(?:hydride of\s+)?(?:(?:a|an|the)\s+)?", re.I)
# words that start a description without naming the molecule (ChEBI-20 writes "The molecule is ...")
_NOT_A_NAME = {"it", "this", "molecule", "the molecule", "this molecule", "compound", "this compound", "the compound",
               "they", "these"}


@dataclass(frozen=True)
class QueryNames:
    """The names found in one query: its subject (the molecule itself), its
    enantiomers (same graph: the challenge graphs carry no chirality), and the
    other structures it cites (parents, conjugate acids/bases, tautomers)."""
    subject: str | None = None
    enantiomers: tuple = ()
    parents: tuple = ()
    relatives: tuple = ()     # (relation, name): "conjugate base of", "conjugate acid of", "tautomer of" (also parents)

    def all(self) -> list[str]:
        return [n for n in (self.subject, *self.enantiomers, *self.parents) if n]


@dataclass(frozen=True)
class ChargeHint:
    """What a query says about its molecule's charge state: ``charge`` a net
    charge ("(2-)", "dianion", "cation"), ``zwitterion``, ``ph`` ("major
    species at pH 7.3"), ``relation`` "base"/"acid" (it is the conjugate
    base/acid of a cited structure)."""
    charge: int | None = None
    zwitterion: bool = False
    ph: bool = False
    relation: str | None = None

    def __bool__(self) -> bool:
        return self.charge is not None or self.zwitterion or self.ph or self.relation is not None


_CHARGE_SUFFIX = re.compile(r"\((\d*)([+-])\)\s*$")
_MULTIPLIERS = {"mono": 1, "di": 2, "tri": 3, "tetra": 4, "penta": 5, "hexa": 6, "": 1}
_ION_WORD = re.compile(r"\b(mono|di|tri|tetra|penta|hexa|)(an|cat)ion\b", re.I)


def charge_hint(query: str, subject: str | None) -> ChargeHint:
    """The :class:`ChargeHint` of a query: from its subject name and its first sentence."""
    query = str(query)
    first = re.split(r"\.\s", query, maxsplit=1)[0]
    charge = None
    m = _CHARGE_SUFFIX.search(subject or "")
    if m:
        charge = (int(m.group(1)) if m.group(1) else 1) * (-1 if m.group(2) == "-" else 1)
    else:
        m = _ION_WORD.search(first)
        if m:
            charge = _MULTIPLIERS[m.group(1).lower()] * (-1 if m.group(2).lower() == "an" else 1)
    zwitterion = bool(re.search(r"zwitterion", first, re.I))
    if zwitterion:
        charge = None
    ph = bool(re.search(r"major (?:micro)?species at pH", query, re.I))
    relation = None
    m = re.search(r"\bconjugate (base|acid) of\b", query, re.I)
    if m:
        relation = m.group(1).lower()
    return ChargeHint(charge, zwitterion, ph, relation)


def _clean(name: str) -> str | None:
    name = _LEADING.sub("", " ".join(name.split())).strip(" .,;:\"'")
    if not name or len(name) > MAX_NAME_CHARS or name.lower() in _NOT_A_NAME:
        return None
    return name


def extract_names(query: str) -> QueryNames:
    """The chemical names of ``query`` (see :class:`QueryNames`); role phrases
    such as "has a role as" name no structure and are ignored."""
    query = str(query)
    subject = None
    m = _SUBJECT.match(query) or _SUBJECT_NO_ARTICLE.match(query)
    if m:
        # "X is conjugate base of Y. It is a ...": ChEBI drops the article after some "is"; the name ends at the
        # first "is"/"are" (a chemical name holds no such word)
        subject = _clean(_FIRST_IS.split(m.group("name"), maxsplit=1)[0])
    enantiomers, parents, relatives = [], [], []
    for m in _CITED.finditer(query):
        names = [_clean(n) for n in _LIST_SPLIT.split(m.group("names"))]
        phrase = m.group("phrase").lower()
        target = enantiomers if phrase == "enantiomer of" else parents
        target.extend(n for n in names if n)
        if phrase != "derives from":
            relatives.extend((" ".join(phrase.split()), n) for n in names if n and n != subject)
    for m in _IN_WHICH.finditer(query):
        clause = re.split(r"[.;,]\s", query[:m.start()])[-1]
        last = _LAST_IS.match(clause.rstrip())
        name = _clean(last.group("name")) if last else None
        if name and len(name.split()) <= 4:
            parents.append(name)
    dedup = lambda xs: tuple(dict.fromkeys(x for x in xs if x != subject))  # noqa: E731
    return QueryNames(subject, dedup(enantiomers), dedup(parents), tuple(dict.fromkeys(relatives)))


# ------------------------------------------------------------------ structures

@dataclass
class Structure:
    """A resolved name as the challenge would draw it: ``key`` identifies the
    graph (atom identifiers and bonds as identifier pairs, as multisets), and
    ``identifiers`` is its set of substructure identifiers. ``source``: where
    it came from (``molret.names.sources.SOURCE_ORDER``); ``kind``: "name" (the
    name itself), "spelling" (another spelling of it: ``name_variants``),
    "derived" (a name built from the query's description: ``molret.names.derived``,
    ``rule`` the rule that built it), or, for the forms of a structure, "neutral", "charge", "tautomer", and
    "relation" (a form of a structure the query cites as its conjugate
    acid/base, tautomer or enantiomer); ``charge``: net formal charge,
    ``zwitterion``: both charge signs present."""
    name: str
    smiles: str
    key: str
    identifiers: np.ndarray   # uint64, sorted unique
    source: str = "opsin"
    kind: str = "name"
    charge: int = 0
    zwitterion: bool = False
    rule: str = ""

    def renamed(self, name: str, **changes) -> "Structure":
        from dataclasses import replace
        return replace(self, name=name, **changes)


def _mix(x: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of uint64 values (wrapping arithmetic): a well-spread hash."""
    with np.errstate(over="ignore"):
        z = x + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _segment_sums(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Per-segment sums modulo 2**64 (order-independent: a multiset hash)."""
    with np.errstate(over="ignore"):
        cs = np.concatenate([np.zeros(1, np.uint64), np.cumsum(values, dtype=np.uint64)])
        return cs[ptr[1:]] - cs[ptr[:-1]]


def graph_keys(identifiers: np.ndarray, node_ptr: np.ndarray, edges: np.ndarray, edge_ptr: np.ndarray) -> list[str]:
    """Identity of each labelled graph of a flat store (molret.data.challenge.GraphStore
    layout) up to atom renumbering: a hash of the multiset of its atom
    identifiers and of its bonds as unordered identifier pairs (what
    ``bench/verify_smiles_graphs.py`` compares), 256 bits, vectorised."""
    ids = np.asarray(identifiers, dtype=np.uint64)
    node_ptr, edge_ptr = np.asarray(node_ptr, np.int64), np.asarray(edge_ptr, np.int64)
    n_graphs = len(node_ptr) - 1
    edge_graph = np.repeat(np.arange(n_graphs), np.diff(edge_ptr))
    ends = np.asarray(edges, np.int64).reshape(2, -1) + node_ptr[edge_graph][None, :]  # global atom rows
    a, b = ids[ends[0]], ids[ends[1]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)  # both directions of a bond give the same pair
    columns = [_segment_sums(_mix(ids, s), node_ptr) for s in (0, 1)]
    columns += [_segment_sums(_mix(_mix(lo, 2) ^ hi, s), edge_ptr) for s in (3, 4)]
    columns += [np.diff(node_ptr).astype(np.uint64), np.diff(edge_ptr).astype(np.uint64)]
    table = np.stack(columns, axis=1)
    return [row.tobytes().hex() for row in table]


def graph_key(identifiers: Sequence, edge_index: np.ndarray) -> str:
    """``graph_keys`` of one graph (identifiers as strings or ints, edge_index [2, 2 * bonds])."""
    ids = np.asarray([int(i) for i in identifiers], dtype=np.uint64)
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    return graph_keys(ids, np.array([0, len(ids)]), ei, np.array([0, ei.shape[1]]))[0]


def structure_from_smiles(name: str, smiles: str, source: str = "opsin", kind: str = "name") -> Structure | None:
    """The challenge graph of a SMILES (None when RDKit refuses it)."""
    from molret.chem.smiles_graph import mol_to_graph, parse_smiles
    try:
        mol = parse_smiles(smiles)
        edge_index, identifiers = mol_to_graph(mol)
    except Exception:  # noqa: BLE001 - MolretError, or RDKit's own types on odd input
        return None
    charges = [a.GetFormalCharge() for a in mol.GetAtoms()]
    ids = np.unique(np.asarray([int(i) for i in identifiers], dtype=np.uint64))
    return Structure(name, smiles, graph_key(identifiers, edge_index), ids, source, kind, int(sum(charges)),
                     any(c > 0 for c in charges) and any(c < 0 for c in charges))


@dataclass
class QueryStructures:
    """The resolved structures of one query, by role; ``forms``: other
    charge states and tautomers of its subject and enantiomers, and the forms
    of the structures it cites as its conjugate acid/base or tautomer (kind
    "relation"), none with an identity key; ``hint`` what the query says of
    its charge state."""
    names: QueryNames
    subject: Structure | None = None
    enantiomers: list = field(default_factory=list)
    parents: list = field(default_factory=list)
    forms: list = field(default_factory=list)
    hint: ChargeHint = field(default_factory=ChargeHint)
    relative_charge: int | None = None     # net charge of the cited conjugate acid/base, when resolved

    @property
    def identity_keys(self) -> set:
        """Graph keys the described molecule has (its own, its enantiomers')."""
        return {s.key for s in ([self.subject] if self.subject else []) + self.enantiomers}

    @property
    def form_keys(self) -> set:
        """Graph keys of the forms (never an identity key)."""
        return {s.key for s in self.forms} - self.identity_keys

    def preferred(self, form: Structure) -> bool | None:
        """Does ``form`` fit the query's charge words (None: the query says nothing)."""
        h = self.hint
        if not h:
            return None
        if h.charge is not None:
            return form.charge == h.charge
        if h.zwitterion:
            return form.zwitterion and form.charge == 0
        if h.relation is not None and self.relative_charge is not None:
            return form.charge == self.relative_charge + (-1 if h.relation == "base" else 1)
        if h.ph:
            return form.charge != 0 or form.zwitterion
        return None


_FORMS_MEMO: dict = {}


def clear_forms_memo() -> None:
    """Forget the memoised structure forms (a benchmark's cold start)."""
    _FORMS_MEMO.clear()


def structure_forms_of(structure: Structure, kinds: str = "all", protonation: str | None = None) -> list[Structure]:
    """The other forms of a resolved structure (``molret.names.variants.structure_forms``) as
    Structures, one per graph key, the structure's own key left out; [] for a structure
    without SMILES (a pairs-dictionary graph). Memoised per SMILES."""
    from molret.names.variants import PROTONATION, structure_forms
    if not structure.smiles or kinds == "none":
        return []
    protonation = protonation or PROTONATION
    memo_key = (structure.smiles, protonation)
    if memo_key not in _FORMS_MEMO:
        from molret.chem.smiles_graph import mol_to_graph
        graphs = []
        for kind, smi, mol in structure_forms(structure.smiles, protonation):
            try:
                edge_index, identifiers = mol_to_graph(mol)
            except Exception:  # noqa: BLE001 - RDKit's own types on odd input
                continue
            charges = [a.GetFormalCharge() for a in mol.GetAtoms()]
            graphs.append((kind, smi, np.asarray([int(i) for i in identifiers], dtype=np.uint64),
                           np.asarray(edge_index, np.int64).reshape(2, -1), charges))
        # one vectorised key computation for all forms
        node_ptr = np.cumsum([0] + [len(g[2]) for g in graphs])
        edge_ptr = np.cumsum([0] + [g[3].shape[1] for g in graphs])
        keys = graph_keys(np.concatenate([g[2] for g in graphs]) if graphs else np.zeros(0, np.uint64), node_ptr,
                          np.concatenate([g[3] for g in graphs], axis=1) if graphs else np.zeros((2, 0), np.int64),
                          edge_ptr) if graphs else []
        seen, out = {structure.key}, []
        for (kind, smi, ids, _, charges), key in zip(graphs, keys):
            if key not in seen:
                seen.add(key)
                out.append(Structure(structure.name, smi, key, np.unique(ids), structure.source, kind,
                                     int(sum(charges)), any(c > 0 for c in charges) and any(c < 0 for c in charges)))
        if len(_FORMS_MEMO) > 200_000:
            _FORMS_MEMO.clear()
        _FORMS_MEMO[memo_key] = out
    forms = _FORMS_MEMO[memo_key]
    if kinds == "charge":
        forms = [f for f in forms if f.kind != "tautomer"]
    elif kinds == "tautomer":
        forms = [f for f in forms if f.kind == "tautomer"]
    return forms


def resolve_names(names: Sequence[str], sources: Sequence) -> dict[str, Structure | None]:
    """Each name's Structure from the first of ``sources`` that knows it (``molret.names.sources``),
    then, for the names none knows, from their other spellings (``name_variants``) in the same order
    (kind "spelling"). A source that fails (OPSIN stopping) is one warning line and is skipped."""
    wanted = list(dict.fromkeys(names))
    found: dict[str, Structure | None] = {n: None for n in wanted}
    live = list(sources)

    def ask(todo: list[str]) -> dict:
        got: dict = {}
        for source in list(live):
            todo = [n for n in todo if got.get(n) is None]
            if not todo:
                break
            try:
                for n, st in zip(todo, source.lookup(todo)):
                    if st is not None:
                        got[n] = st
            except OpsinUnavailable as e:
                log.warning(f"--names opsin: {e}; using the learned scores only" if len(live) == 1 else
                            f"--names: {source.name} failed ({e}); using the other name sources")
                live.remove(source)
        return got

    found.update(ask(wanted))
    retry = {n: name_variants(n) for n in wanted if found[n] is None}
    spelled = ask(list(dict.fromkeys(v for vs in retry.values() for v in vs)))
    for n, variants in retry.items():
        st = next((spelled[v] for v in variants if spelled.get(v) is not None), None)
        found[n] = st.renamed(n, kind="spelling") if st is not None else None
    return found
