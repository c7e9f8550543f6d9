"""Decoding every graph of a GraphStore to SMILES: parallel passes that share what each pass solved.

A first pass decodes every graph with the environment table.  Each exact
molecule teaches the table the environments of its unknown atoms (an
identifier is the same environment wherever it occurs), so the graphs that
failed are tried again with what the other graphs taught, until a pass adds
nothing; a last *wide* pass lets atoms that no known neighbour constrains
try every plausible invariant.  Workers are forked processes (one per core
by default); each pass hands them the table as it stands.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from molret.utils import cache
from molret.utils.errors import MolretError
from molret.chem.graph_decoder import DEFAULT_MAX_STEPS, STATUS_EXACT, GraphDecoder
from molret.chem.morgan_env import TABLE_PATH, EnvironmentTable
from molret.chem.smiles_graph import add_smiles

CHUNK = 256
MAX_PASSES = 8
WIDE_MAX_STEPS = 200000

log = logging.getLogger(__name__)


@dataclass
class StoreDecoding:
    """Per graph of the store: ``smiles`` (None unless exact) and ``status`` ("exact" or the reason)."""
    smiles: list
    status: list
    seconds: float = 0.0
    passes: list = field(default_factory=list)   # graphs decoded exactly in each pass

    @property
    def num_exact(self) -> int:
        return sum(1 for s in self.status if s == STATUS_EXACT)


_worker: dict = {}


def _init_worker(store, table, max_steps, wide):
    _worker.update(store=store, decoder=GraphDecoder(table, max_steps=max_steps, learn=True), wide=wide)


def _graph(store, g):
    a, b = int(store.node_ptr[g]), int(store.node_ptr[g + 1])
    e0, e1 = int(store.edge_ptr[g]), int(store.edge_ptr[g + 1])
    return store.edges[:, e0:e1], store.identifiers[a:b].tolist()


def _decode_chunk(indices):
    store, decoder, wide = _worker["store"], _worker["decoder"], _worker["wide"]
    out, learned = [], []
    for g in indices:
        edges, ids = _graph(store, g)
        d = decoder.decode(edges, ids, wide=wide)
        out.append((g, d.smiles, d.status))
        learned.extend(d.learned)
    return out, learned


def worth_retrying(status: str) -> bool:
    """Failures that a larger table may fix (not a damaged graph, not a structure RDKit refuses)."""
    return status != STATUS_EXACT and not status.startswith("damaged")


def decode_graphs(store, table: EnvironmentTable, indices, wide: bool = False) -> tuple[list, list]:
    """One worker's share of a pass: graphs ``indices`` of ``store`` decoded in order with ``table``
    (which learns from each exact one, as a ``decode_store`` worker's does); returns
    ([(graph, SMILES or None, status)], [(identifier, environment) learned])."""
    _init_worker(store, table, WIDE_MAX_STEPS if wide else DEFAULT_MAX_STEPS, wide)
    indices = list(indices)
    out, learned = [], []
    for i in range(0, len(indices), CHUNK):
        o, le = _decode_chunk(indices[i:i + CHUNK])
        out += o
        learned += le
    return out, learned


def decode_store(store, table: EnvironmentTable | None = None, *, workers: int | None = None,
                 progress: bool = False, max_passes: int = MAX_PASSES) -> StoreDecoding:
    """Decode every graph of ``store`` (a ``GraphStore``); ``table`` is extended in place."""
    from tqdm.auto import tqdm
    t0 = time.perf_counter()
    table = table if table is not None else EnvironmentTable.shipped()
    n = len(store)
    smiles, status = [None] * n, ["not decoded"] * n
    workers = max(1, min(workers or (os.cpu_count() or 1), 64))
    todo = list(range(n))
    passes = []
    bar = tqdm(total=n, desc="decoding graphs", unit="mol", disable=not progress, mininterval=1.0)
    wide = False
    for _ in range(max_passes):
        known = len(table)
        passes.append(_run_pass(store, table, todo, workers, wide, smiles, status, bar))
        todo = [g for g in todo if worth_retrying(status[g])]
        if not todo or (wide and len(table) == known):
            break
        # nothing learned: the next pass lets unconstrained atoms search; a wide pass that learned
        # something is followed by plain passes again (its environments may unlock other graphs)
        wide = len(table) == known
    bar.close()
    return StoreDecoding(smiles, status, time.perf_counter() - t0, passes)


def _run_pass(store, table, todo, workers, wide, smiles, status, bar) -> int:
    max_steps = WIDE_MAX_STEPS if wide else None
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
    solved = 0

    def take(result):
        nonlocal solved
        out, learned = result
        for g, smi, st in out:
            smiles[g], status[g] = smi, st
            if st == STATUS_EXACT:
                solved += 1
                bar.update(1)
        for ident, env in learned:
            table.add(env, ident)

    steps = max_steps or DEFAULT_MAX_STEPS
    if workers == 1 or len(chunks) == 1:
        _init_worker(store, table, steps, wide)
        for chunk in chunks:
            take(_decode_chunk(chunk))
        return solved
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(store, table, steps, wide)) as pool:
        for result in pool.imap_unordered(_decode_chunk, chunks):
            take(result)
    return solved


# ------------------------------------------------------------------ cache

DECODER_VERSION = 2   # bump when the decoder's results can change for the same graphs


def decoding_key(store, known_smiles=()) -> str:
    """sha1 of what a store's decoding depends on: its graphs, the shipped table, the SMILES
    added to it and the decoder version."""
    h = hashlib.sha1(f"molret-decoding-v{DECODER_VERSION}".encode())
    for a in (store.identifiers, store.node_ptr, store.edges, store.edge_ptr):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(",".join(store.cids).encode())
    h.update(table_key(known_smiles).encode())
    return h.hexdigest()


def table_key(known_smiles=()) -> str:
    """sha1 of the decoder's table: the shipped file and the SMILES a caller adds to it."""
    h = hashlib.sha1()
    try:
        h.update(TABLE_PATH.read_bytes())
    except OSError:
        pass
    for smi in known_smiles:
        h.update(b"\n" + str(smi).encode())
    return h.hexdigest()


def cached_decode_store(store, cache_file, *, workers: int | None = None, progress: bool = False,
                        known_smiles=()) -> StoreDecoding:
    """``decode_store`` with the shipped table (plus the environments of ``known_smiles``, e.g. a
    SMILES library the user has), read from ``cache_file`` when it holds this store's decoding
    (molret.utils.cache), else computed and written there (None: no cache)."""
    known_smiles = list(known_smiles)
    key = decoding_key(store, known_smiles)
    if cache_file is not None:
        hit = cache.load(cache_file, key, DECODER_VERSION,
                         lambda z, meta: StoreDecoding(cache.from_json_array(z["smiles"]),
                                                       cache.from_json_array(z["status"]),
                                                       meta.get("seconds", 0.0), meta.get("passes", [])))
        if hit is not None:
            if len(hit.smiles) != len(store) or len(hit.status) != len(store):
                hit = None
            else:
                return hit
    table = EnvironmentTable.shipped()
    add_smiles(table, known_smiles)
    out = decode_store(store, table, workers=workers, progress=progress)
    if cache_file is not None:
        try:
            cache.save(cache_file, key, DECODER_VERSION,
                       {"smiles": cache.json_array(out.smiles), "status": cache.json_array(out.status)},
                       {"seconds": out.seconds, "passes": out.passes})
        except MolretError as e:
            log.warning(f"could not cache the decoded structures in {cache_file}: {e}")
    return out
