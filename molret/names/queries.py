"""Every query's chemical names resolved in one batch: the structures from the name sources, and their other forms."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from molret.names.derived import DEFAULT_RULES, derived_names
from molret.names.edits import derived_edits, derived_structures
from molret.names.opsin import Opsin
from molret.names.resolve import (QueryStructures, Structure, charge_hint, extract_names, resolve_names,
                                  structure_forms_of, structure_from_smiles)
from molret.names.sources import default_sources


def key_size(key: str) -> tuple[int, int]:
    """(atoms, bond directions) of a graph key (``graph_keys``' last two columns)."""
    raw = np.frombuffer(bytes.fromhex(key), dtype=np.uint64)
    return int(raw[-2]), int(raw[-1])


def derived_structure(query: str, subject: str, edits: list, structures: dict, rules) -> Structure | None:
    """The subject's Structure from the first edit (``molret.names.edits.derived_edits``) whose
    resolved parents give a molecule; None when none does."""
    parents = {p: structures[p] for _, names, _ in edits for p in names if structures.get(p) is not None}
    for rule, smiles in derived_structures(query, subject, {p: s.smiles for p, s in parents.items()}, rules):
        source = next(parents[p].source for r, names, _ in edits if r == rule for p in names if p in parents)
        st = structure_from_smiles(subject, smiles, source=source, kind="derived")
        if st is not None:
            st.rule = rule
            return st
    return None


def resolve_queries(queries: Sequence[str], opsin: Opsin | None, sources: Sequence | None = None,
                    forms: str = "all", candidate_keys: Sequence[str] | None = None,
                    derived_rules: Sequence[str] = DEFAULT_RULES) -> list[QueryStructures]:
    """Names of every query, resolved in one batch. ``sources``: the name
    sources in order (``molret.names.sources``; default: ``opsin`` when not
    None, then the chemicals dictionary when installed); ``opsin`` None and no
    other source: names found but nothing resolved. ``forms``: which other
    forms of the resolved structures to add ("none", "charge", "tautomer",
    "all"). ``candidate_keys``: the graph keys of the molecules the forms
    will be matched against; a structure whose size (atoms, bonds: which its
    forms share) no candidate has gets no forms (a batch shortcut). A subject
    no source resolves is resolved, when one of ``derived_rules`` builds names
    from its description (``molret.names.derived``, ``molret.names.edits``), from the first of those
    names that resolves (all of them resolved in one more batch): kind
    "derived", ``rule`` the rule's name. An OPSIN
    failure is one warning line and leaves the rest to the other sources."""
    if sources is None:
        sources = default_sources(opsin)
    found = [extract_names(q) for q in queries]
    wanted = list(dict.fromkeys(n for names in found for n in names.all()))
    structures = resolve_names(wanted, sources) if sources else {}
    unresolved = [i for i, names in enumerate(found) if sources and derived_rules and names.subject and
                  structures.get(names.subject) is None]
    derived = {i: derived_names(queries[i], found[i].subject, derived_rules) for i in unresolved}
    edits = {i: derived_edits(queries[i], found[i].subject, derived_rules) for i in unresolved}
    built = [n for pairs in derived.values() for _, n in pairs if n not in structures]
    built += [p for es in edits.values() for _, parents, _ in es for p in parents if p not in structures]
    if built:
        structures.update(resolve_names(list(dict.fromkeys(built)), sources))
    sizes = None if candidate_keys is None else {key_size(k) for k in set(candidate_keys)}

    def forms_of(s: Structure) -> list[Structure]:
        return structure_forms_of(s, forms) if sizes is None or key_size(s.key) in sizes else []

    out = []
    for i, (query, names) in enumerate(zip(queries, found)):
        q = QueryStructures(names, hint=charge_hint(query, names.subject))
        q.subject = structures.get(names.subject) if names.subject else None
        if q.subject is None and derived.get(i):
            q.subject = next((structures[n].renamed(names.subject, kind="derived", rule=rule)
                              for rule, n in derived[i] if structures.get(n) is not None), None)
        if q.subject is None and edits.get(i):
            q.subject = derived_structure(query, names.subject, edits[i], structures, derived_rules)
        q.enantiomers = [s for s in map(structures.get, names.enantiomers) if s is not None]
        q.parents = [s for s in map(structures.get, names.parents) if s is not None]
        if forms != "none":
            for s in ([q.subject] if q.subject else []) + q.enantiomers:
                q.forms += forms_of(s)
            for relation, name in names.relatives:
                rel = structures.get(name)
                if rel is None:
                    continue
                if relation.startswith("conjugate") and rel.kind == "name":
                    q.relative_charge = rel.charge
                # X is the conjugate acid/base or a tautomer of Y: Y's other forms may be X (Y itself is not)
                q.forms += [f.renamed(f.name, kind="relation") for f in forms_of(rel) if f.key != rel.key]
        out.append(q)
    return out
