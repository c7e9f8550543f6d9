"""Caches of a molecule library: its parsed graphs (model-independent) and,
per model, its graph embeddings, in ``molret.utils.cache`` files.

They live in ``library_cache_dir``: ``library.npz`` is keyed by the library
fingerprint (``molret.library.reading.library_fingerprint``), ``emb-<model>.npz`` by
the fingerprint and ``model_key``, a hash of exactly what a graph embedding
depends on.  A later search costs only the text encoding of the queries plus
the nearest-neighbour search.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molret.utils import cache
from molret.data.graph_store import GraphStore
from molret.utils.errors import MolretError
from molret.utils.files import is_writable_dir
from molret.library.reading import (DECODING_CACHE, Library, ReaderOptions, library_cache_dir, library_fingerprint,
                                    read_library)
from molret.models.encoding import SEARCH_AMP

log = logging.getLogger(__name__)

CACHE_VERSION = 2   # 2: graph libraries carry the SMILES decoded from their graphs
# ModelConfig fields that change a graph embedding (the architecture of the graph encoder and of the
# graph projection). Every other field is listed in NON_GRAPH_FIELDS, so that a new field must be
# classified (tests/test_library_cache.py checks that every field is in one of the two).
GRAPH_FIELDS = ("conv", "num_layers", "hidden_dim", "heads", "residual", "norm", "pooling", "vocab_size",
                "substructure_dim", "embed_dim", "proj_hidden", "mol_features", "mol_features_dim")
NON_GRAPH_FIELDS = ("dropout",                          # identity at inference (model.eval())
                    "train_substructure_emb",            # training only; the table itself is hashed
                    "text_model", "text_pooling", "max_length", "train_text_layers",
                    "text_bow", "text_bow_rank", "text_bow_dropout", "text_bow_chars",  # the bag-of-words text view
                    "init_temperature", "learn_temperature")
# The modules that compute a graph embedding (MolRetModel.encode_graph): their parameters and buffers.
GRAPH_MODULES = ("graph_encoder", "graph_proj")
# Library and query embeddings are both computed with molret.models.encoding.SEARCH_AMP (float32, whatever the
# checkpoint trained with), so the AMP setting is not part of the key.


def model_key(model, cfg, vocab) -> str:
    """sha1 of what a library's graph embeddings depend on: the graph-side
    config fields (GRAPH_FIELDS), the parameters and buffers of the graph
    encoder and graph projection (GRAPH_MODULES) and the substructure
    vocabulary; nothing of the text side."""
    import torch
    h = hashlib.sha1(f"molret-graph-embeddings-v{CACHE_VERSION}".encode())
    conf = dataclasses.asdict(cfg.model)
    h.update(json.dumps({k: conf[k] for k in GRAPH_FIELDS}, sort_keys=True).encode())
    for module in GRAPH_MODULES:
        for name, t in sorted(getattr(model, module).state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{module}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(np.asarray(vocab.ids, dtype=np.uint64).tobytes())
    if cfg.model.mol_features or cfg.model.conv == "features":  # the features' code and RDKit
        from molret.chem.mol_features import FEATURES_VERSION, rdkit_version
        h.update(f"mol-features-v{FEATURES_VERSION}:rdkit-{rdkit_version()}".encode())
    return h.hexdigest()


def embedder_key(embedder) -> str:
    """The key of an ``molret.models.embedder.Embedder``'s molecule embeddings: a checkpoint's ``model_key``
    (unchanged, so its caches and shard folders stay valid); an ensemble's hashes its members' keys and weights."""
    if not embedder.ensemble:
        m = embedder.members[0]
        return model_key(m.model, m.cfg, m.vocab)
    h = hashlib.sha1(f"molret-ensemble-graph-embeddings-v{CACHE_VERSION}".encode())
    for m in embedder.members:
        h.update(f"{model_key(m.model, m.cfg, m.vocab)}:{m.weight!r};".encode())
    if embedder.projection is not None:
        h.update(b"projection:" + embedder.projection.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------ library graphs

def _library_meta(lib: Library) -> dict:
    return {"kind": lib.kind, "invalid": lib.invalid, "invalid_examples": lib.invalid_examples}


def _library_from(path: Path, fingerprint: str, ids: list, z: dict, meta: dict, graphs=None) -> Library:
    smiles = cache.from_json_array(z["smiles"])
    status = cache.from_json_array(z["smiles_status"]) if "smiles_status" in z else None
    if len(smiles) != len(ids) or (status is not None and len(status) != len(ids)):
        raise ValueError(f"{len(ids)} ids but {len(smiles)} SMILES")
    return Library(path, meta["kind"], ids, smiles, fingerprint, meta["invalid"], meta["invalid_examples"], graphs,
                   status)


def read_library_graphs(path, options: ReaderOptions | None = None, cache_dir: Path | None = None,
                        fingerprint: str | None = None, progress: bool = False) -> Library:
    """The library's molecules as graphs (``Library.graphs`` set); parsed
    once and cached in ``cache_dir/library.npz`` (model-independent), with a
    graph library's decoded SMILES (also kept apart in
    ``cache_dir/decoded.npz``, which ``graphs_to_smiles.py`` shares)."""
    p = Path(path)
    options = options or ReaderOptions()
    fingerprint = fingerprint or library_fingerprint(p, options, cache_dir)
    file = cache_dir / "library.npz" if cache_dir is not None else None
    if file is not None:
        def decode(z, meta):
            store = GraphStore.from_arrays(z)
            return _library_from(p, fingerprint, store.cids, z, meta, store)
        lib = cache.load(file, fingerprint, CACHE_VERSION, decode)
        if lib is not None:
            return lib
    lib = read_library(p, options, fingerprint, progress,
                       decode_cache=cache_dir / DECODING_CACHE if cache_dir is not None else None)
    if file is not None:
        arrays = dict(lib.graphs.to_arrays(), smiles=cache.json_array(lib.smiles))
        if lib.smiles_status is not None:
            arrays["smiles_status"] = cache.json_array(lib.smiles_status)
        try:
            cache.save(file, fingerprint, CACHE_VERSION, arrays, _library_meta(lib))
        except MolretError as e:
            log.warning(f"could not cache the parsed library in {file}: {e}")
    return lib


# -------------------------------------------------------- library embeddings

@dataclass
class LibraryEmbeddings:
    library: Library
    embeddings: np.ndarray                 # [N, D] float32, L2-normalised rows
    cache_path: Path | None
    cached: bool                           # True: loaded from the cache
    seconds: float                         # embedding time (when computed now)
    parse_seconds: float = 0.0
    num_unknown: int = 0                   # atoms whose substructure the model does not know
    cpu_seconds: float = 0.0               # process CPU time of the embedding (all threads)


def _timings(meta: dict) -> tuple:
    return (meta.get("seconds", 0.0), meta.get("parse_seconds", 0.0), meta.get("num_unknown", 0),
            meta.get("cpu_seconds", 0.0))


def _load_embeddings(file: Path, lib_path: Path, fingerprint: str, mkey: str) -> LibraryEmbeddings | None:
    def decode(z, meta):
        ids = cache.from_json_array(z["ids"])
        if z["embeddings"].shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids but {z['embeddings'].shape[0]} embeddings")
        lib = _library_from(lib_path, fingerprint, ids, z, meta)
        return LibraryEmbeddings(lib, z["embeddings"], file, True, *_timings(meta))
    return cache.load(file, f"{fingerprint}:{mkey}", CACHE_VERSION, decode)


def _save_embeddings(out: LibraryEmbeddings, mkey: str) -> None:
    lib = out.library
    meta = dict(_library_meta(lib), seconds=out.seconds, parse_seconds=out.parse_seconds,
                num_unknown=out.num_unknown, cpu_seconds=out.cpu_seconds, library=str(lib.path.resolve()))
    try:
        cache.save(out.cache_path, f"{lib.fingerprint}:{mkey}", CACHE_VERSION,
                   {"embeddings": out.embeddings, "ids": cache.json_array(lib.ids),
                    "smiles": cache.json_array(lib.smiles)}, meta)
    except MolretError as e:
        log.warning(f"could not cache the library embeddings in {out.cache_path}: {e}")
        out.cache_path = None


def library_embeddings(path, embedder, *, options: ReaderOptions | None = None, cache_dir=None,
                       batch_size: int | None = None, progress: bool = False,
                       use_cache: bool = True) -> LibraryEmbeddings:
    """Graph embeddings of every valid molecule of the library at ``path`` by ``embedder`` (a checkpoint or
    an ensemble, ``molret.models.embedder``), from the cache when it matches (model key + library
    fingerprint), else computed (fp32) and cached atomically."""
    p = Path(path)
    options = options or ReaderOptions()
    folder = library_cache_dir(p, cache_dir) if use_cache else None
    if folder is not None and not is_writable_dir(folder):
        log.warning(f"cache folder {folder} is not writable: library embeddings will not be cached "
                    f"(give --cache-dir)")
        folder = None
    fingerprint = library_fingerprint(p, options, folder)
    mkey = embedder_key(embedder)
    cache_path = folder / f"emb-{mkey[:16]}.npz" if folder is not None else None
    hit = _load_embeddings(cache_path, p, fingerprint, mkey) if cache_path is not None else None
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    lib = read_library_graphs(p, options, folder, fingerprint, progress)
    parse_seconds = time.perf_counter() - t0
    # --mol-features models: from the library's SMILES, or its graphs decoded when it has none (cached in folder)
    t0, c0 = time.perf_counter(), time.process_time()
    emb = embedder.encode_store(lib.graphs, batch_size, SEARCH_AMP, smiles=lib.smiles if any(lib.smiles) else None,
                                cache_dir=folder, progress=progress)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    out = LibraryEmbeddings(lib, np.ascontiguousarray(emb, dtype=np.float32), cache_path, False, seconds,
                            parse_seconds, lib.graphs.num_unknown, cpu_seconds)
    if cache_path is not None:
        _save_embeddings(out, mkey)
    return out
