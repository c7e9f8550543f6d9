"""A batch's resolved name structures, cached on disk (``molret.utils.cache``).

Resolving the names of the 3,801 val + test queries takes tens of seconds
(OPSIN, the chemicals table, and above all the RDKit forms of every
structure), and every pool report and submission path (main.py,
predictions.py, ensemble_method.py) resolves the same batch again.
``resolve_queries_cached`` keeps the batch's ``QueryStructures`` in one
keyed, versioned ``.npz`` of the cache folder: the key covers the query
texts, the sources (their names and fingerprints: OPSIN's jar, the chemicals
table's file, the pairs dictionary's content), the forms setting, the
candidate keys, ``CODE_VERSION`` and the code of the name modules, so any
change rebuilds it (one warning line, as every molret cache). A hit starts
no Java and loads no table. Nothing is pickled: the structures are JSON
(``molret.utils.cache.json_array``) and their identifiers one uint64 array.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from molret.utils import cache
from molret.utils.errors import MolretError
from molret.names.opsin import OpsinUnavailable

log = logging.getLogger("molret")

# Bump when what resolve_queries returns changes in a way the module hashes below would not see
# (a dependency's behaviour, say); edits to the name modules themselves invalidate the cache anyway.
CODE_VERSION = 1
NAME_MODULES = ("resolve.py", "queries.py", "variants.py", "sources.py", "tables.py", "cache.py")
_STRUCTURE_FIELDS = ("name", "smiles", "key", "source", "kind", "charge", "zwitterion")


def code_hash() -> str:
    """sha1 of the name modules' source: a cached batch from other rules is stale."""
    h = hashlib.sha1()
    for name in NAME_MODULES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()


def batch_key(queries: Sequence[str], fingerprints: list, forms: str, candidate_keys: Sequence[str] | None) -> str:
    """The cache key of a batch (see the module's docstring)."""
    from molret.names.variants import PROTONATION
    h = hashlib.sha1()
    for part in ([f"v{CODE_VERSION}", code_hash(), forms, PROTONATION], fingerprints, list(queries),
                 None if candidate_keys is None else sorted(set(candidate_keys))):
        h.update(cache.json_array(part).tobytes())
        h.update(b"\0")
    return h.hexdigest()


def batch_file(cache_dir, queries: Sequence[str], candidate_keys: Sequence[str] | None) -> Path:
    """One file per batch (queries + candidates), so that different batches do not evict each other."""
    tag = hashlib.sha1(cache.json_array([list(queries), list(candidate_keys or [])]).tobytes()).hexdigest()[:12]
    return Path(cache_dir) / f"names-{tag}.npz"


# ------------------------------------------------------------------ (de)serialisation

def encode(structures: Sequence) -> dict:
    """Arrays of a list of ``QueryStructures``: the distinct Structures once (JSON fields, identifiers
    concatenated), and each query as JSON referring to them by position."""
    table: dict = {}
    fields, ids = [], []

    def ref(s) -> int:
        k = (*(getattr(s, f) for f in _STRUCTURE_FIELDS), s.identifiers.tobytes())
        if k not in table:
            table[k] = len(fields)
            fields.append([getattr(s, f) for f in _STRUCTURE_FIELDS])
            ids.append(np.asarray(s.identifiers, np.uint64))
        return table[k]

    queries = []
    for q in structures:
        n, h = q.names, q.hint
        queries.append({"names": [n.subject, list(n.enantiomers), list(n.parents), [list(r) for r in n.relatives]],
                        "subject": None if q.subject is None else ref(q.subject),
                        "enantiomers": [ref(s) for s in q.enantiomers], "parents": [ref(s) for s in q.parents],
                        "forms": [ref(s) for s in q.forms],
                        "hint": [h.charge, h.zwitterion, h.ph, h.relation], "relative_charge": q.relative_charge})
    ptr = np.cumsum([0] + [len(i) for i in ids]).astype(np.int64)
    return {"queries": cache.json_array(queries), "structures": cache.json_array(fields),
            "identifiers": np.concatenate(ids) if ids else np.zeros(0, np.uint64), "identifier_ptr": ptr}


def decode(arrays: dict, meta: dict | None = None) -> list:
    """The ``QueryStructures`` list ``encode`` wrote (a Structure shared by several queries is one object)."""
    from molret.names.resolve import ChargeHint, QueryNames, QueryStructures, Structure
    ids, ptr = np.asarray(arrays["identifiers"], np.uint64), np.asarray(arrays["identifier_ptr"], np.int64)
    structures = [Structure(**dict(zip(_STRUCTURE_FIELDS, f)), identifiers=ids[ptr[i]:ptr[i + 1]])
                  for i, f in enumerate(cache.from_json_array(arrays["structures"]))]
    out = []
    for q in cache.from_json_array(arrays["queries"]):
        subject, enantiomers, parents, relatives = q["names"]
        names = QueryNames(subject, tuple(enantiomers), tuple(parents), tuple(tuple(r) for r in relatives))
        out.append(QueryStructures(names, None if q["subject"] is None else structures[q["subject"]],
                                   [structures[i] for i in q["enantiomers"]], [structures[i] for i in q["parents"]],
                                   [structures[i] for i in q["forms"]], ChargeHint(*q["hint"]),
                                   q["relative_charge"]))
    return out


# ------------------------------------------------------------------ the cached batch

class _Watched:
    """A source that remembers whether it failed: a batch resolved without it is not cached."""

    def __init__(self, source):
        self.source, self.name, self.failed = source, source.name, False

    def lookup(self, names):
        try:
            return self.source.lookup(names)
        except OpsinUnavailable:
            self.failed = True
            raise


def resolve_queries_cached(queries: Sequence[str], opsin, pairs=None, forms: str = "all",
                           candidate_keys: Sequence[str] | None = None, cache_dir=None,
                           chemicals: bool = True) -> list | None:
    """``molret.names.resolve.resolve_queries`` of ``queries`` with the sources
    ``molret.names.sources.default_sources(opsin, pairs, chemicals)``, read from
    ``cache_dir`` when a batch with the same key was saved there, else
    resolved and saved (a read-only folder only costs time; ``cache_dir`` None:
    no cache). None when there is no source at all. A batch in which a source
    failed (OPSIN stopping) is returned but not saved."""
    from molret.names.sources import default_sources, source_fingerprints
    from molret.names.queries import resolve_queries
    queries = [str(q) for q in queries]
    fingerprints = source_fingerprints(opsin, pairs, chemicals)
    if not fingerprints:
        return None
    path = key = None
    if cache_dir is not None:
        path, key = batch_file(cache_dir, queries, candidate_keys), batch_key(queries, fingerprints, forms,
                                                                              candidate_keys)
        hit = cache.load(path, key, CODE_VERSION, decode)
        if hit is not None and len(hit) == len(queries):
            return hit
    sources = [_Watched(s) for s in default_sources(opsin, pairs, chemicals)]
    structures = resolve_queries(queries, opsin, sources=sources, forms=forms, candidate_keys=candidate_keys)
    if path is not None and not any(s.failed for s in sources):
        try:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            cache.save(path, key, CODE_VERSION, encode(structures), {"queries": len(queries)})
        except (MolretError, OSError):
            pass  # a read-only cache folder only costs time
    return structures
