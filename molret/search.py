"""Text search over any molecule library (search.py, predictions.py --library).

A *library* is either

* a SMILES library (``.smi``/``.csv``/``.tsv``/``.sdf``, optionally ``.gz``),
  read with ``molret.smiles.read_library``; invalid rows are skipped and
  counted, each valid molecule becomes a challenge-style graph
  (``mol_to_graph``); or
* a challenge-style graph library: a ``raw.zip``, a folder of ``<id>.graph``
  files, or a folder holding ``raw/`` or ``raw.zip`` (the challenge data
  folder, or what ``smiles_to_graph.py`` writes: its ``cids.txt`` then sets
  the ids and their order).  Ids are the file names (CIDs); SMILES are shown
  when a ``--smiles-map`` gives them.

The library's graph embeddings are computed once per (model, library) and
cached (see ``library_cache_dir``): the key is a hash of the checkpoint's
graph-encoder weights, graph config and vocabulary (``model_key``) and a
fingerprint of the library's content and reader options
(``library_fingerprint``).  A later search costs only the text encoding of
the queries plus the nearest-neighbour search, exact in both backends:
numpy (a matrix product) or FAISS ``IndexFlatIP`` on L2-normalised vectors.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import GraphStore, GraphSource, parse_identifiers, tokenize
from .errors import MolretError
from .graphs import parse_graph_text
from .html_render import html_report, molecule_svg  # noqa: F401  (molecule_svg: re-exported)
from .io_utils import atomic_path, atomic_write_text
from .train import embed_graphs, embed_texts, pick_device

log = logging.getLogger("molret.search")

CACHE_VERSION = 1
FAISS_AUTO_THRESHOLD = 20_000      # backend "auto": FAISS above this many molecules
BACKENDS = ("auto", "numpy", "faiss")
# ModelConfig fields that only concern the text side (not part of the graph-embedding key).
TEXT_ONLY_FIELDS = frozenset({"text_model", "text_pooling", "max_length", "train_text_layers"})
GRAPH_WEIGHT_PREFIXES = ("graph_encoder.", "graph_proj.")
MAX_REPORTED_INVALID = 20
QUERY_THREADS = 1                 # torch threads to encode a few queries on the CPU (see LibrarySearch.encode)
RESCORE_MARGIN = 32              # extra candidates rescored exactly by both backends
HUBNESS_TEMPERATURE = 0.05       # inverted softmax over the query bank (see LibrarySearch.enable_hubness)


# ------------------------------------------------------------------ library

@dataclass
class Library:
    """Molecules of one library file/folder, in library order."""
    path: Path
    kind: str                              # "smiles" | "graphs"
    ids: list
    smiles: list                           # SMILES per molecule, None when unknown
    fingerprint: str
    invalid: int = 0                       # rows/files skipped
    invalid_examples: list = field(default_factory=list)
    graphs: GraphStore | None = None       # None when only embeddings were loaded from the cache

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ReaderOptions:
    """How a SMILES library is read (part of the library fingerprint)."""
    fmt: str | None = None
    smiles_column: str | None = None
    id_column: str | None = None
    id_property: str | None = None
    standardize: str = "none"


def library_kind(path) -> str:
    p = Path(path)
    if not p.exists():
        raise MolretError(f"library {p} does not exist")
    if p.is_dir() or p.suffix.lower() == ".zip":
        return "graphs"
    return "smiles"


def _graph_layout(path: Path):
    """(graph source path, ids file or None) of a graph library."""
    if path.is_file():
        return path, None
    ids_file = path / "cids.txt" if (path / "cids.txt").is_file() else None
    if (path / "raw").is_dir():
        return path / "raw", ids_file
    if (path / "raw.zip").is_file():
        return path / "raw.zip", ids_file
    try:
        has_graphs = any(e.name.endswith(".graph") for e in os.scandir(path))
    except OSError as e:
        raise MolretError(f"cannot read library folder {path}: {e.strerror or e}") from None
    if not has_graphs:
        raise MolretError(f"library folder {path} has no raw/, raw.zip or .graph files")
    return path, ids_file


def _id_sort_key(ident: str):
    return (0, int(ident), "") if ident.isdigit() else (1, 0, ident)


def _list_graph_ids(source_path: Path, ids_file: Path | None) -> list:
    if ids_file is not None:
        try:
            lines = ids_file.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise MolretError(f"cannot read {ids_file}: {e.strerror or e}") from None
        return [line.strip() for line in lines if line.strip()]
    if source_path.is_file():
        try:
            with zipfile.ZipFile(source_path) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile) as e:
            raise MolretError(f"{source_path}: not a readable zip file ({e})") from None
        ids = [Path(n).stem for n in names if n.endswith(".graph")]
    else:
        ids = [e.name[:-len(".graph")] for e in os.scandir(source_path) if e.name.endswith(".graph")]
    if not ids:
        raise MolretError(f"{source_path}: no .graph files")
    return sorted(set(ids), key=_id_sort_key)


def _sha1_file(path: Path, h=None):
    h = h or hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise MolretError(f"cannot read {path}: {e.strerror or e}") from None
    return h


def _file_content_hash(path: Path, memo_dir: Path | None) -> str:
    """sha1 of a file's bytes, memoised in ``memo_dir`` under its (size, mtime, inode)."""
    st = path.stat()
    stamp = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    memo = memo_dir / "content-hash.json" if memo_dir is not None else None
    if memo is not None and memo.is_file():
        try:
            d = json.loads(memo.read_text())
            if d.get("stamp") == stamp:
                return d["sha1"]
        except (OSError, ValueError, KeyError):
            pass
    digest = _sha1_file(path).hexdigest()
    if memo is not None:
        try:
            memo_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(memo, json.dumps({"stamp": stamp, "sha1": digest}))
        except (MolretError, OSError):
            pass
    return digest


def library_fingerprint(path, options: ReaderOptions | None = None, memo_dir: Path | None = None) -> str:
    """A key of the library's content (and of how it is read).

    Files (SMILES libraries, raw.zip, cids.txt): sha1 of their bytes
    (memoised by size/mtime/inode).  A folder of ``.graph`` files: the names,
    sizes and modification times of its graph files (reading 100k files on
    every search would cost seconds).
    """
    from .smiles import MORGAN_RADIUS
    p = Path(path)
    h = hashlib.sha1()
    kind = library_kind(p)
    desc = {"version": CACHE_VERSION, "kind": kind}
    if kind == "smiles":
        desc.update(dataclasses.asdict(options or ReaderOptions()), morgan_radius=MORGAN_RADIUS)
    h.update(json.dumps(desc, sort_keys=True).encode())
    if kind == "smiles" or p.is_file():
        h.update(_file_content_hash(p, memo_dir).encode())
        return h.hexdigest()
    source, ids_file = _graph_layout(p)
    if ids_file is not None:
        h.update(b"ids:")
        _sha1_file(ids_file, h)
    if source.is_file():
        h.update(b"zip:" + _file_content_hash(source, memo_dir).encode())
    else:
        entries = []
        for e in os.scandir(source):
            if e.name.endswith(".graph"):
                st = e.stat()
                entries.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}")
        for line in sorted(entries):
            h.update(line.encode() + b";")
    return h.hexdigest()


def _store_from_parts(ids, id_parts, edge_parts) -> GraphStore:
    ncount = np.array([len(a) for a in id_parts], dtype=np.int64)
    ecount = np.array([e.shape[1] for e in edge_parts], dtype=np.int64)
    node_ptr = np.concatenate([[0], np.cumsum(ncount)]).astype(np.int64)
    edge_ptr = np.concatenate([[0], np.cumsum(ecount)]).astype(np.int64)
    identifiers = np.concatenate(id_parts) if id_parts else np.zeros(0, np.uint64)
    edges = np.concatenate(edge_parts, axis=1) if edge_parts else np.zeros((2, 0), np.int32)
    return GraphStore(list(ids), identifiers, node_ptr, edges, edge_ptr)


def _note_invalid(examples: list, msg: str) -> None:
    if len(examples) < MAX_REPORTED_INVALID:
        examples.append(msg)


def _read_smiles_library(path: Path, options: ReaderOptions, progress: bool):
    from tqdm.auto import tqdm
    from .smiles import mol_to_graph, read_library
    records = read_library(path, fmt=options.fmt, smiles_column=options.smiles_column,
                           id_column=options.id_column, id_property=options.id_property,
                           standardize=options.standardize)
    ids, smiles, id_parts, edge_parts, examples = [], [], [], [], []
    invalid = 0
    for rec in tqdm(records, desc="reading library", unit="mol", disable=not progress, mininterval=1.0):
        if not rec.ok:
            invalid += 1
            _note_invalid(examples, rec.error or f"{rec.where}: no molecule")
            continue
        try:
            edge_index, identifiers = mol_to_graph(rec.mol)
            id_parts.append(parse_identifiers(identifiers, rec.where))
        except MolretError as e:
            invalid += 1
            _note_invalid(examples, f"{rec.where}: {e}")
            continue
        edge_parts.append(edge_index.astype(np.int32))
        ids.append(rec.id)
        smiles.append(rec.smiles)
    return ids, smiles, _store_from_parts(ids, id_parts, edge_parts), invalid, examples


def _read_graph_library(path: Path, progress: bool):
    from tqdm.auto import tqdm
    source_path, ids_file = _graph_layout(path)
    source = GraphSource(source_path)
    ids, id_parts, edge_parts, examples = [], [], [], []
    invalid = 0
    for ident in tqdm(_list_graph_ids(source_path, ids_file), desc="parsing graphs", unit="mol",
                      disable=not progress, mininterval=1.0):
        where = source.location(ident)
        try:
            edge_index, identifiers = parse_graph_text(source.read(ident), where)
            id_parts.append(parse_identifiers(identifiers, where))
        except MolretError as e:
            invalid += 1
            _note_invalid(examples, str(e))
            continue
        edge_parts.append(edge_index.astype(np.int32))
        ids.append(ident)
    return ids, [None] * len(ids), _store_from_parts(ids, id_parts, edge_parts), invalid, examples


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def _from_json_array(a) -> object:
    return json.loads(bytes(a).decode("utf-8"))


def _save_library(lib: Library, path: Path) -> None:
    g = lib.graphs
    meta = {"version": CACHE_VERSION, "fingerprint": lib.fingerprint, "kind": lib.kind,
            "invalid": lib.invalid, "invalid_examples": lib.invalid_examples}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, identifiers=g.identifiers, node_ptr=g.node_ptr, edges=g.edges, edge_ptr=g.edge_ptr,
                 ids=_json_array(lib.ids), smiles=_json_array(lib.smiles), meta=_json_array(meta))


def _load_library(path: Path, lib_path: Path, fingerprint: str) -> Library | None:
    try:
        with np.load(path) as z:
            meta = _from_json_array(z["meta"])
            if meta.get("version") != CACHE_VERSION or meta.get("fingerprint") != fingerprint:
                return None
            ids = _from_json_array(z["ids"])
            store = GraphStore(ids, z["identifiers"], z["node_ptr"], z["edges"], z["edge_ptr"])
            return Library(lib_path, meta["kind"], ids, _from_json_array(z["smiles"]), fingerprint,
                           meta["invalid"], meta["invalid_examples"], store)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def read_library_graphs(path, options: ReaderOptions | None = None, cache_dir: Path | None = None,
                        fingerprint: str | None = None, progress: bool = False) -> Library:
    """The library's molecules as graphs (``Library.graphs`` set); parsed
    once and cached in ``cache_dir/library.npz`` (model-independent)."""
    p = Path(path)
    options = options or ReaderOptions()
    fingerprint = fingerprint or library_fingerprint(p, options, cache_dir)
    cache = cache_dir / "library.npz" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        lib = _load_library(cache, p, fingerprint)
        if lib is not None:
            return lib
    kind = library_kind(p)
    if kind == "smiles":
        ids, smiles, store, invalid, examples = _read_smiles_library(p, options, progress)
    else:
        ids, smiles, store, invalid, examples = _read_graph_library(p, progress)
    if not ids:
        more = f": {examples[0]}" if examples else ""
        raise MolretError(f"library {p} has no valid molecules ({invalid} invalid){more}")
    lib = Library(p, kind, ids, smiles, fingerprint, invalid, examples, store)
    if cache is not None:
        try:
            _save_library(lib, cache)
        except (MolretError, OSError) as e:
            log.warning(f"could not cache the parsed library in {cache}: {e}")
    return lib


# -------------------------------------------------------------------- cache

def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def user_cache_base() -> Path:
    return Path(os.environ.get("MOLRET_CACHE", Path.home() / ".cache" / "molret"))


def library_cache_dir(path, cache_dir=None) -> Path:
    """Where a library's caches live.

    ``<library>.molret-cache/`` next to the library when its folder is
    writable; with ``cache_dir`` (or when the library's folder is read-only:
    ``$MOLRET_CACHE`` or ``~/.cache/molret``) ``<base>/search/<name>-<hash of
    the library's absolute path>/``.
    """
    p = Path(path).resolve()
    tag = f"{p.name}-{hashlib.sha1(str(p).encode()).hexdigest()[:12]}"
    if cache_dir:
        return Path(cache_dir) / "search" / tag
    beside = p.parent / f"{p.name}.molret-cache"
    if beside.is_dir() and os.access(beside, os.W_OK | os.X_OK):
        return beside
    if not beside.exists() and os.access(p.parent, os.W_OK | os.X_OK):
        return beside
    return user_cache_base() / "search" / tag


def model_key(model, cfg, vocab) -> str:
    """sha1 of what the graph embeddings depend on: graph-side config, the
    graph encoder + projection weights and the substructure vocabulary."""
    import torch
    h = hashlib.sha1(f"molret-graph-embeddings-v{CACHE_VERSION}".encode())
    conf = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in TEXT_ONLY_FIELDS}
    h.update(json.dumps(conf, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        if not name.startswith(GRAPH_WEIGHT_PREFIXES):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(np.asarray(vocab.ids, dtype=np.uint64).tobytes())
    return h.hexdigest()


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


def _load_embeddings(path: Path, lib_path: Path, fingerprint: str, mkey: str):
    try:
        with np.load(path) as z:
            meta = _from_json_array(z["meta"])
            if (meta.get("version") != CACHE_VERSION or meta.get("fingerprint") != fingerprint
                    or meta.get("model_key") != mkey):
                return None
            emb = z["embeddings"]
            ids = _from_json_array(z["ids"])
            if emb.shape[0] != len(ids):
                return None
            lib = Library(lib_path, meta["kind"], ids, _from_json_array(z["smiles"]), fingerprint,
                          meta["invalid"], meta["invalid_examples"], None)
            return lib, emb, meta
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def library_embeddings(path, model, cfg, vocab, *, device=None, options: ReaderOptions | None = None,
                       cache_dir=None, batch_size: int | None = None, progress: bool = False,
                       use_cache: bool = True) -> LibraryEmbeddings:
    """Graph embeddings of every valid molecule of the library at ``path``,
    from the cache when it matches (model key + library fingerprint), else
    computed (fp32) and cached atomically."""
    import torch
    p = Path(path)
    options = options or ReaderOptions()
    device = device or torch.device("cpu")
    folder = library_cache_dir(p, cache_dir) if use_cache else None
    if folder is not None and not _writable(folder):
        log.warning(f"cache folder {folder} is not writable: library embeddings will not be cached "
                    f"(give --cache-dir)")
        folder = None
    fingerprint = library_fingerprint(p, options, folder)
    mkey = model_key(model, cfg, vocab)
    cache_path = folder / f"emb-{mkey[:16]}.npz" if folder is not None else None
    if cache_path is not None and cache_path.is_file():
        hit = _load_embeddings(cache_path, p, fingerprint, mkey)
        if hit is not None:
            lib, emb, meta = hit
            return LibraryEmbeddings(lib, emb, cache_path, True, meta.get("seconds", 0.0),
                                     meta.get("parse_seconds", 0.0), meta.get("num_unknown", 0),
                                     meta.get("cpu_seconds", 0.0))
    t0 = time.perf_counter()
    lib = read_library_graphs(p, options, folder, fingerprint, progress)
    parse_seconds = time.perf_counter() - t0
    lib.graphs.attach_vocab(vocab)
    t0, c0 = time.perf_counter(), time.process_time()
    emb = embed_graphs(model, lib.graphs, device, batch_size or cfg.train.eval_batch_size, "none", progress)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    out = LibraryEmbeddings(lib, emb, cache_path, False, seconds, parse_seconds, lib.graphs.num_unknown,
                            cpu_seconds)
    if cache_path is not None:
        meta = {"version": CACHE_VERSION, "fingerprint": fingerprint, "model_key": mkey, "kind": lib.kind,
                "invalid": lib.invalid, "invalid_examples": lib.invalid_examples, "seconds": seconds,
                "parse_seconds": parse_seconds, "num_unknown": lib.graphs.num_unknown, "cpu_seconds": cpu_seconds,
                "library": str(p.resolve())}
        try:
            with atomic_path(cache_path, suffix=".npz") as tmp:
                np.savez(tmp, embeddings=emb, ids=_json_array(lib.ids), smiles=_json_array(lib.smiles),
                         meta=_json_array(meta))
        except (MolretError, OSError) as e:
            log.warning(f"could not cache the library embeddings in {cache_path}: {e}")
            out.cache_path = None
    return out


# -------------------------------------------------------------------- index

def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def choose_backend(n: int, backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise MolretError(f"unknown search backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto":
        if n <= FAISS_AUTO_THRESHOLD:
            return "numpy"
        try:
            import faiss  # noqa: F401
        except ImportError:
            log.warning("faiss is not installed (pip install faiss-cpu): exact numpy search instead")
            return "numpy"
        return "faiss"
    return backend


class SearchIndex:
    """Exact maximum-inner-product (cosine) search over L2-normalised rows."""

    def __init__(self, embeddings: np.ndarray, backend: str = "auto"):
        t0 = time.perf_counter()
        self.embeddings = _normalise(embeddings)
        self.n, self.dim = self.embeddings.shape
        self.backend = choose_backend(self.n, backend)
        self._faiss = None
        if self.backend == "faiss":
            try:
                import faiss
            except ImportError:
                raise MolretError("--backend faiss needs the faiss package (pip install faiss-cpu)") from None
            self._faiss = faiss.IndexFlatIP(self.dim)
            self._faiss.add(self.embeddings)
        self.build_seconds = time.perf_counter() - t0

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Full cosine matrix [Q, N] (float32 matrix product)."""
        return _normalise(np.atleast_2d(queries)) @ self.embeddings.T

    def exact_scores(self, query: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Cosine of one query with every molecule, computed as ``search``
        rescores its candidates (float64), so ranks agree with it exactly."""
        q64 = _normalise(np.atleast_2d(query))[0].astype(np.float64)
        return np.concatenate([(self.embeddings[i:i + chunk].astype(np.float64) * q64).sum(axis=1)
                               for i in range(0, self.n, chunk)])

    def rank(self, query: np.ndarray, index: int) -> tuple[int, float, int]:
        """(1-based rank of library row ``index`` for one query as ``search``
        orders it (exact ties: lower index first), its score, and how many
        other rows have exactly that score (e.g. stereoisomers sharing a graph))."""
        s = self.exact_scores(query)
        t = s[index]
        return int((s > t).sum() + (s[:index] == t).sum()) + 1, float(t), int((s == t).sum()) - 1

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices), each [Q, min(k, N)], best first.

        Both backends pick ``k + RESCORE_MARGIN`` candidates (numpy: from the
        full product, FAISS: IndexFlatIP), then rescore them the same way in
        float64 and sort by (-score, library index): identical molecules
        (e.g. stereoisomers, which share a graph) tie exactly and come in
        library order, and the two backends return the same top-k.
        """
        q = _normalise(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise MolretError(f"query embeddings have dimension {q.shape[1]}, the library {self.dim}")
        k = max(0, min(int(k), self.n))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        m = min(self.n, k + RESCORE_MARGIN)
        if self._faiss is not None:
            _, cand = self._faiss.search(q, m)
            cand = cand.astype(np.int64)
        elif m < self.n:
            cand = np.argpartition(-(q @ self.embeddings.T), m - 1, axis=1)[:, :m]
        else:
            cand = np.broadcast_to(np.arange(self.n, dtype=np.int64), (len(q), self.n))
        out_idx = np.empty((len(q), k), np.int64)
        out_scores = np.empty((len(q), k), np.float64)
        q64 = q.astype(np.float64)
        for i in range(len(q)):
            c = cand[i][cand[i] >= 0]  # FAISS pads with -1 when it has fewer results
            s = (self.embeddings[c].astype(np.float64) * q64[i]).sum(axis=1)  # same sum for equal rows
            order = np.lexsort((c, -s))[:k]
            out_idx[i], out_scores[i] = c[order], s[order]
        return out_scores.astype(np.float32), out_idx


# ------------------------------------------------------------------- search

@dataclass
class Hit:
    rank: int
    index: int
    id: str
    smiles: str | None
    score: float


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch CPU threads (0: unchanged), restoring the setting after."""
    import torch
    old = torch.get_num_threads()
    if n > 0 and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def encode_queries(model, tokenizer, cfg, queries: Sequence[str], device, batch_size: int = 64) -> np.ndarray:
    tokens = tokenize(list(queries), tokenizer, cfg.model.max_length)
    return embed_texts(model, tokens, device, batch_size)


class LibrarySearch:
    """A loaded model plus one library's embeddings and index."""

    def __init__(self, model, cfg, tokenizer, device, lib: LibraryEmbeddings, backend: str = "auto",
                 smiles_map: dict | None = None, query_threads: int = QUERY_THREADS):
        self.model, self.cfg, self.tokenizer, self.device = model, cfg, tokenizer, device
        self.query_threads = query_threads
        self.lib = lib
        self.ids = list(lib.library.ids)
        self.smiles = list(lib.library.smiles)
        if smiles_map:
            self.smiles = [s if s else smiles_map.get(i) for i, s in zip(self.ids, self.smiles)]
        self.index = SearchIndex(lib.embeddings, backend)
        self._position = None
        self.names = None               # (Candidates, weights) once enable_names is called
        self.hub_offsets = None         # per-molecule offsets once enable_hubness is called

    def enable_hubness(self, bank: Sequence[str], temperature: float = HUBNESS_TEMPERATURE,
                       chunk: int = 256) -> None:
        """Inverted-softmax hubness correction (query-bank normalisation): a
        molecule that is close to many queries of a bank (e.g. the training
        descriptions) is a hub; its scores drop by ``T * logsumexp_b(sim(b, m) / T)``,
        i.e. each score becomes ``T * log`` of a softmax over the bank's queries."""
        if not temperature > 0:
            raise MolretError(f"--hubness-temperature must be > 0, got {temperature}")
        bank_emb = self.encode(list(bank))
        offsets = np.full(self.index.n, -np.inf)
        for i in range(0, len(bank_emb), chunk):
            s = (self.index.scores(bank_emb[i:i + chunk]).astype(np.float64)) / temperature
            offsets = np.logaddexp(offsets, np.logaddexp.reduce(s, axis=0))
        self.hub_offsets = temperature * offsets

    @property
    def rescored(self) -> bool:
        """True when every molecule is scored exactly (names or hubness on), not through the index."""
        return self.names is not None or self.hub_offsets is not None

    def enable_names(self, weights: dict | None = None, options: ReaderOptions | None = None, cache_dir=None) -> bool:
        """Fuse the structures named in the queries (molret.name_fusion) with
        the cosine scores from now on; False (with one warning line) when
        OPSIN cannot run, and the search stays learned-only."""
        from .name_fusion import DEFAULT_WEIGHTS, Candidates
        from .names import shared_opsin
        if shared_opsin() is None:
            return False
        graphs = self.lib.library.graphs
        if graphs is None:  # embeddings came from the cache: the parsed library is cached too
            folder = library_cache_dir(self.lib.library.path, cache_dir)
            graphs = read_library_graphs(self.lib.library.path, options, folder if _writable(folder) else None,
                                         self.lib.library.fingerprint).graphs
        self.names = (Candidates.from_stores([graphs]), dict(weights or DEFAULT_WEIGHTS))
        return True

    def fused_scores(self, queries: Sequence[str], query_emb: np.ndarray) -> np.ndarray:
        """[Q, N] float64 scores: the cosine (as ``exact_scores``), minus the
        hubness offsets, plus name evidence, as enabled."""
        base = np.stack([self.index.exact_scores(q) for q in np.atleast_2d(query_emb)])
        if self.hub_offsets is not None:
            base -= self.hub_offsets[None, :]
        if self.names is None:
            return base
        from .name_fusion import fuse, name_features
        from .names import resolve_queries, shared_opsin
        candidates, weights = self.names
        return fuse(base, name_features(resolve_queries(queries, shared_opsin()), candidates), weights)

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, ident: str) -> int:
        if self._position is None:
            self._position = {}
            for i, x in enumerate(self.ids):
                self._position.setdefault(x, i)
        if ident not in self._position:
            raise MolretError(f"id {ident!r} is not in the library")
        return self._position[ident]

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        """Query embeddings. A few queries on the CPU are encoded with
        ``query_threads`` torch threads: tiny matrices gain little from more
        threads, and on a busy machine each extra thread waits for a core
        (measured: 1 thread ~30 ms, 2 threads 60-900 ms per query on 2 shared cores)."""
        few = len(queries) <= 16 and getattr(self.device, "type", "cpu") == "cpu"
        with torch_threads(self.query_threads if few else 0):
            return encode_queries(self.model, self.tokenizer, self.cfg, queries, self.device)

    def search(self, queries: Sequence[str], k: int = 10, query_emb: np.ndarray | None = None) -> list:
        q = self.encode(queries) if query_emb is None else query_emb
        if self.rescored:
            scores, idx = _top_k(self.fused_scores(queries, q), k)
        else:
            scores, idx = self.index.search(q, k)
        return [[Hit(r + 1, int(j), self.ids[j], self.smiles[j], float(s))
                 for r, (j, s) in enumerate(zip(idx[row], scores[row]))] for row in range(len(q))]

    def rank_of(self, query_emb: np.ndarray, ident: str, query: str | None = None) -> tuple[int, float, int]:
        """(rank, score, exact ties) of ``ident`` for one query, in the order of ``search``
        (with names enabled, ``query`` is the query's text)."""
        if self.rescored:
            return _rank(self.fused_scores([query or ""], query_emb)[0], self.position(ident))
        return self.index.rank(query_emb, self.position(ident))


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) [Q, k] best first, exact ties in library order (as SearchIndex.search)."""
    k = max(0, min(int(k), scores.shape[1]))
    out_s, out_i = np.empty((len(scores), k), np.float32), np.empty((len(scores), k), np.int64)
    for i, row in enumerate(scores):
        cand = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
        top = row[cand].min() if k else 0.0
        cand = np.flatnonzero(row >= top)  # every tie of the k-th score, so library order decides
        order = np.lexsort((cand, -row[cand]))[:k]
        out_i[i], out_s[i] = cand[order], row[cand[order]]
    return out_s, out_i


def _rank(scores: np.ndarray, index: int) -> tuple[int, float, int]:
    t = scores[index]
    return int((scores > t).sum() + (scores[:index] == t).sum()) + 1, float(t), int((scores == t).sum()) - 1


def read_smiles_map(path) -> dict:
    """id -> SMILES from a TSV/CSV (header naming cid/id and smiles columns,
    e.g. ChEBI-20's ``CID SMILES description``) or ``id<TAB>SMILES`` lines."""
    import csv
    from .smiles import ID_COLUMN_NAMES, SMILES_COLUMN_NAMES
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise MolretError(f"cannot read --smiles-map {p}: {e.strerror or e}") from None
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines:
        raise MolretError(f"--smiles-map {p} is empty")
    delim = "\t" if "\t" in lines[0] else ","
    rows = [r for r in csv.reader(lines, delimiter=delim, quoting=csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL)]
    head = [c.strip().lower() for c in rows[0]]
    s_col = next((head.index(n) for n in SMILES_COLUMN_NAMES if n in head), None)
    if s_col is not None:
        i_col = next((head.index(n) for n in ID_COLUMN_NAMES if n in head), 0 if s_col != 0 else 1)
        rows = rows[1:]
    else:
        i_col, s_col = 0, 1
    out = {}
    for r in rows:
        if len(r) > max(i_col, s_col) and r[i_col].strip() and r[s_col].strip():
            out.setdefault(r[i_col].strip(), r[s_col].strip())
    if not out:
        raise MolretError(f"--smiles-map {p}: no id/SMILES pairs found")
    return out


# ---------------------------------------------------------------------- cli

def add_library_args(p: argparse.ArgumentParser) -> None:
    """Flags of how a SMILES library is read (shared with predictions.py)."""
    from .smiles import FORMATS, STANDARDIZE_CHOICES
    g = p.add_argument_group("SMILES library reading")
    g.add_argument("--format", choices=FORMATS, help="library format; from the file extension when not given")
    g.add_argument("--smiles-column", help="CSV/TSV SMILES column (header name or 1-based number)")
    g.add_argument("--id-column", help="CSV/TSV id column (header name or 1-based number)")
    g.add_argument("--id-property", help="SDF data item holding the id; the title line when not given")
    g.add_argument("--standardize", default="none", choices=STANDARDIZE_CHOICES,
                   help="RDKit standardisation applied to each molecule")


def reader_options(args) -> ReaderOptions:
    return ReaderOptions(fmt=args.format, smiles_column=args.smiles_column, id_column=args.id_column,
                         id_property=args.id_property, standardize=args.standardize)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="search.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Rank the molecules of a library for text queries with a trained checkpoint. The library's "
                    "graph embeddings are computed once and cached (next to the library, or in --cache-dir).")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="query text(s)")
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint written by main.py (best.pt/last.pt)")
    p.add_argument("--library", required=True, metavar="FILE",
                   help="SMILES library (.smi/.csv/.tsv/.sdf[.gz]) or graph library (raw.zip, folder of .graph "
                        "files, or a folder with raw/ or raw.zip and optionally cids.txt)")
    p.add_argument("--queries-file", metavar="FILE", help="more queries, one per line (blank lines ignored)")
    p.add_argument("-k", "--top-k", type=int, default=10, help="molecules to show per query")
    p.add_argument("--html", metavar="FILE", help="also write an HTML report drawing the top-k structures")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help=f"exact search: numpy, or FAISS IndexFlatIP; auto = FAISS above {FAISS_AUTO_THRESHOLD:,} "
                        f"molecules")
    p.add_argument("--smiles-map", metavar="TSV", action="append",
                   help="id -> SMILES table for graph libraries (e.g. ChEBI-20 validation.txt: CID, SMILES, ...); "
                        "may be repeated")
    p.add_argument("--rank-of", metavar="ID", help="also print the rank of this library id for each query")
    p.add_argument("--cache-dir", help="cache folder; when not given: next to the library, or ~/.cache/molret when "
                                       "the library's folder is read-only ($MOLRET_CACHE overrides ~/.cache/molret)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--query-threads", type=int, default=QUERY_THREADS,
                   help="torch CPU threads for encoding the queries (0: torch's default)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads for embedding the library (0: torch's default)")
    p.add_argument("--batch-size", type=int, help="graph embedding batch size; the model's eval batch size when not given")
    p.add_argument("--names", default="none", choices=["none", "opsin"],
                   help="opsin: resolve the chemical names in each query (OPSIN, needs Java) and fuse exact-graph "
                        "and substructure evidence with the cosine scores (all molecules scored exactly)")
    p.add_argument("--names-weights", type=float, nargs=3, metavar=("EXACT", "SUBJECT", "PARENT"),
                   help="fusion weights of --names (default: those fitted on the challenge's val pool)")
    p.add_argument("--hubness", default="none", choices=["none", "isoftmax"],
                   help="isoftmax: inverted-softmax hubness correction against a bank of queries (molecules close "
                        "to many bank queries lose score)")
    p.add_argument("--hubness-bank", metavar="FILE",
                   help="the bank: cid<TAB>text lines (train.tsv) or one query per line (default: train.tsv of "
                        "the checkpoint's data folder)")
    p.add_argument("--hubness-temperature", type=float, default=HUBNESS_TEMPERATURE,
                   help="temperature of --hubness isoftmax")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_library_args(p)
    return p


def read_bank(path) -> list[str]:
    """Texts of a hubness bank: the second column of TAB-separated lines, else whole lines."""
    lines = read_query_lines(path)
    return [line.split("\t", 1)[1] if "\t" in line else line for line in lines]


def default_bank(cfg) -> Path:
    from .data import resolve_data_dir
    try:
        return resolve_data_dir(cfg.train.data_dir).need("train")
    except MolretError:
        raise MolretError("--hubness isoftmax: the checkpoint's data folder has no train.tsv; give "
                          "--hubness-bank FILE") from None


def read_query_lines(path) -> list:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise MolretError(f"cannot read --queries-file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise MolretError(f"--queries-file {path}: not UTF-8 text ({e.reason})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def open_search(args, progress: bool) -> LibrarySearch:
    from .checkpoint import load_model
    device = pick_device(args.device)
    if args.threads > 0:
        import torch
        torch.set_num_threads(args.threads)
    model, cfg, vocab, tokenizer = load_model(args.model, device)
    lib = library_embeddings(args.library, model, cfg, vocab, device=device, options=reader_options(args),
                             cache_dir=args.cache_dir, batch_size=args.batch_size, progress=progress,
                             use_cache=not args.no_cache)
    smiles_map = {}
    for path in args.smiles_map or []:
        for ident, smi in read_smiles_map(path).items():
            smiles_map.setdefault(ident, smi)
    engine = LibrarySearch(model, cfg, tokenizer, device, lib, args.backend, smiles_map, args.query_threads)
    if getattr(args, "names", "none") == "opsin":
        from .name_fusion import FEATURES
        weights = dict(zip(FEATURES, args.names_weights)) if args.names_weights else None
        engine.enable_names(weights, reader_options(args), args.cache_dir)
    if getattr(args, "hubness", "none") == "isoftmax":
        engine.enable_hubness(read_bank(args.hubness_bank or default_bank(cfg)), args.hubness_temperature)
    return engine


def _short(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def report_library(engine: LibrarySearch, out=None) -> None:
    out = out or sys.stderr
    le = engine.lib
    lib = le.library
    skipped = f", {lib.invalid} invalid {'rows' if lib.kind == 'smiles' else 'graph files'} skipped" if lib.invalid else ""
    print(f"library {lib.path}: {len(lib):,} molecules{skipped}", file=out)
    for msg in lib.invalid_examples[:5]:
        print(f"  skipped: {msg}", file=out)
    if lib.invalid > 5:
        print(f"  ... and {lib.invalid - 5} more", file=out)
    if le.cached:
        print(f"graph embeddings: from cache {le.cache_path}", file=out)
    else:
        rate = len(lib) / le.seconds if le.seconds > 0 else float("inf")
        where = f", cached in {le.cache_path}" if le.cache_path else " (not cached)"
        print(f"graph embeddings: computed in {le.seconds:.1f} s ({rate:,.0f} molecules/s; parsing "
              f"{le.parse_seconds:.1f} s){where}", file=out)
    print(f"search backend: {engine.index.backend} (index built in {engine.index.build_seconds * 1e3:.1f} ms)", file=out)


def format_hits(query: str, hits: Sequence[Hit], number: int) -> str:
    lines = [f"query {number}: {_short(query)}"]
    width = max([len("id")] + [len(h.id) for h in hits])
    lines.append(f"{'rank':>4}  {'id':<{width}}  {'score':>7}  SMILES")
    for h in hits:
        lines.append(f"{h.rank:>4}  {h.id:<{width}}  {h.score:>7.4f}  {h.smiles or '-'}")
    return "\n".join(lines)


def run(args) -> dict:
    queries = list(args.queries)
    if args.queries_file:
        queries += read_query_lines(args.queries_file)
    queries = [q for q in queries if q.strip()]
    if not queries:
        raise MolretError("no query: give query text(s) or --queries-file")
    if args.top_k < 1:
        raise MolretError("-k must be at least 1")
    if args.names_weights and min(args.names_weights) < 0:
        raise MolretError("--names-weights must be >= 0")
    library_kind(args.library)  # a missing library fails before the model is loaded
    if args.html:
        from .io_utils import check_writable_dir
        check_writable_dir(Path(args.html).resolve().parent)
    progress = not args.no_progress and sys.stderr.isatty()
    engine = open_search(args, progress)
    report_library(engine)
    t0 = time.perf_counter()
    q_emb = engine.encode(queries)
    results = engine.search(queries, args.top_k, query_emb=q_emb)
    seconds = time.perf_counter() - t0
    ranks = []
    for n, (q, hits) in enumerate(zip(queries, results), 1):
        print(("\n" if n > 1 else "") + format_hits(q, hits, n))
        if args.rank_of:
            rank, score, ties = engine.rank_of(q_emb[n - 1:n], args.rank_of, q)
            ranks.append(rank)
            tied = f"; {ties} other molecule(s) score exactly the same (same graph?)" if ties else ""
            print(f"rank of {args.rank_of}: {rank} of {len(engine):,} (score {score:.4f}{tied})")
    print(f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'} searched in {seconds * 1e3:.0f} ms "
          f"(text encoding + search)", file=sys.stderr)
    if args.html:
        atomic_write_text(args.html, html_report(queries, results, str(args.library), str(args.model)))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(args.html, 0o666 & ~mask)  # a report to share, not a private temporary file
        print(f"wrote {args.html}", file=sys.stderr)
    return {"queries": queries, "results": results, "ranks": ranks, "engine": engine}
