"""Nearest-neighbour indexes over L2-normalised molecule embeddings (FAISS inner product): exact, IVF, IVF-PQ and HNSW, built once and stored.

Kinds (``--index``):

* ``exact``: every molecule scored.  A FAISS ``IndexFlatIP`` over a float32
  copy when that copy is at most ``EXACT_IN_MEMORY_BYTES``, else a chunked
  scan of the (memory-mapped) embeddings; nothing is stored.
* ``ivf``: ``IndexIVFFlat`` / ``IndexIVFScalarQuantizer`` (``codec`` flat,
  fp16 or sq8): k-means into ``nlist`` lists, ``nprobe`` lists scanned per query.
* ``ivfpq``: ``IndexIVFPQ`` (``pq_m`` bytes per molecule; 8-bit codes, fewer below 10,000 molecules) for
  memory: the ``k * rerank`` best PQ candidates are rescored exactly from
  the embeddings (a memmap, read only at those rows).
* ``hnsw``: ``IndexHNSWFlat`` / ``IndexHNSWSQ`` graph, ``hnsw_m`` links,
  ``ef_search`` candidates explored per query.
* ``auto`` (``choose_kind``): exact below ``AUTO_EXACT_BELOW`` (100,000)
  molecules, HNSW below ``AUTO_HNSW_BELOW`` (1,000,000), IVF-PQ above.
  Measured on this project's 2-core CPU, shared with other jobs
  (bench/README.md): an exact flat scan costs ~0.09 us per molecule per
  query on one thread (9 ms at 102,980) and needs no build; HNSW was the
  fastest at recall@10 >= 0.95 on the real 102,980 molecules (0.4-0.7 ms)
  but holds the vectors plus the links in RAM (1.3 kB per molecule), builds
  at 4-16 thousand molecules/s here (10^6: 4.5 minutes; 10^7: over 30
  minutes) and at 10^6 simulated molecules needed ef_search 512 for 0.945;
  IVF-PQ (64-byte codes, 72 B per molecule with its ids) built in 13 minutes
  at 10^7 and reached recall@10 0.957 at a median 10 ms per query with
  ``nprobe`` 32 and ``rerank`` 32 (the defaults).

Every kind returns exact cosine scores: the index proposes candidates, which
are rescored in float64 from the stored embeddings and sorted by (-score,
library order), as ``molret.search.engine.SearchIndex`` does, so ``exact`` over a
shard folder gives the same top-k as the library searched whole.

Built indexes are written atomically next to the shards
(``index-<kind>-<hash>.faiss`` + ``.json``; the hash covers the build
parameters and the shards' signature) and reopened with ``faiss.read_index``.
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

from molret.utils.errors import MolretError
from molret.utils.files import atomic_path, atomic_write_text

log = logging.getLogger("molret.search.ann")

KINDS = ("auto", "exact", "ivf", "ivfpq", "hnsw")
CODECS = ("auto", "flat", "fp16", "sq8")
AUTO_EXACT_BELOW = 100_000
AUTO_HNSW_BELOW = 1_000_000
EXACT_IN_MEMORY_BYTES = 1 << 30    # exact: a float32 FAISS copy up to 1 GiB, else a chunked memmap scan
CODEC_FLAT_BYTES = 1 << 30         # codec auto: float32 vectors up to 1 GiB, fp16 above
RESCORE_MARGIN = 32                # as molret.search.engine: extra candidates rescored exactly
ADD_CHUNK = 65536                  # rows converted to float32 at a time while building


@dataclass
class IndexParams:
    """Build parameters (part of the stored index's key) and search parameters (not)."""
    nlist: int = 0                  # IVF lists; 0: sqrt(n) rounded down to a power of two (default_nlist)
    pq_m: int = 0                   # IVF-PQ bytes per molecule; 0: dim / 4
    codec: str = "auto"             # ivf/hnsw vector storage: flat (float32), fp16, sq8; auto: by size
    hnsw_m: int = 32                # HNSW links per node
    ef_construction: int = 80       # HNSW build beam
    train_size: int = 0             # k-means / PQ training rows; 0: min(n, max(64 nlist, 200k))
    seed: int = 0
    # search-time
    nprobe: int = 32                # IVF lists scanned per query
    ef_search: int = 256            # HNSW beam per query (real 102,980: 0.991; 10^6 simulated: 0.92)
    rerank: int = 32                # IVF-PQ: k * rerank candidates rescored exactly (10^7: 8 -> recall 0.82, 32 -> 0.96)

    BUILD_FIELDS = ("nlist", "pq_m", "codec", "hnsw_m", "ef_construction", "train_size", "seed")

    def check(self) -> "IndexParams":
        for name, low in (("nlist", 0), ("pq_m", 0), ("hnsw_m", 2), ("ef_construction", 1), ("train_size", 0),
                          ("seed", 0), ("nprobe", 1), ("ef_search", 1), ("rerank", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < low:
                raise MolretError(f"index parameter {name.replace('_', '-')} must be an integer >= {low}, got {v!r}")
        if self.nlist > 1 << 20:
            raise MolretError(f"index parameter nlist must be at most {1 << 20:,}, got {self.nlist:,}")
        if self.codec not in CODECS:
            raise MolretError(f"index codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        return self


def choose_kind(n: int, kind: str = "auto") -> str:
    if kind not in KINDS:
        raise MolretError(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    if n < AUTO_EXACT_BELOW:
        return "exact"
    return "hnsw" if n < AUTO_HNSW_BELOW else "ivfpq"


def default_nlist(n: int) -> int:
    """sqrt(n) rounded down to a power of two (10^7 molecules: 2,048 lists, as measured in
    bench/index_bench.py), at most n / 39 (FAISS wants >= 39 training rows per list)."""
    target = max(1.0, min(np.sqrt(max(n, 1)), n / 39))
    return int(2 ** int(np.floor(np.log2(target))))


def _faiss():
    try:
        import faiss
    except ImportError:
        raise MolretError("approximate indexes need the faiss package (pip install faiss-cpu)") from None
    return faiss


def _as_rows(emb):
    """A (ShardedArray-like) object with take/chunks/shape from an array or memmap."""
    if hasattr(emb, "take") and hasattr(emb, "chunks"):
        return emb
    from molret.library.shard_folder import ShardedArray
    a = np.asarray(emb)  # a memmap stays mapped (no copy)
    if a.ndim != 2:
        raise MolretError(f"embeddings must be a 2-d array, got shape {a.shape}")
    return ShardedArray([a])


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def set_threads(n: int) -> None:
    """FAISS (OpenMP) threads; 0 leaves the default."""
    if n > 0:
        _faiss().omp_set_num_threads(int(n))


def _codec(params: IndexParams, n: int, dim: int) -> str:
    if params.codec != "auto":
        return params.codec
    return "flat" if n * dim * 4 <= CODEC_FLAT_BYTES else "fp16"


def _training_rows(rows, n_train: int, seed: int) -> np.ndarray:
    n = len(rows)
    if n_train >= n:
        return np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
    pick = np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))
    return rows.take(pick)


def _new_faiss_index(kind: str, dim: int, n: int, params: IndexParams):
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    codec = _codec(params, n, dim)
    sq = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
    if kind == "hnsw":
        if codec == "flat":
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, ip)
        else:
            index = faiss.IndexHNSWSQ(dim, sq[codec], params.hnsw_m, ip)
        index.hnsw.efConstruction = params.ef_construction
        return index, None
    nlist = min(params.nlist or default_nlist(n), n)
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf":
        index = (faiss.IndexIVFFlat(quantizer, dim, nlist, ip) if codec == "flat"
                 else faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, sq[codec], ip))
    else:
        m = params.pq_m or max(1, dim // 4)
        if dim % m:
            raise MolretError(f"--pq-m {m} must divide the embedding dimension {dim}")
        nbits = int(min(8, max(1, np.floor(np.log2(max(n, 2) / 39)))))  # 2^nbits centroids, >= 39 rows each
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, ip)
    index.cp.seed = params.seed
    return index, quantizer


def train_faiss_index(rows, kind: str, params: IndexParams):
    """A trained, empty FAISS index of ``kind`` for ``rows``: trained once, on the sample of rows that
    ``params.seed`` picks (``build_faiss_index`` and the distributed build share it)."""
    n, dim = rows.shape
    if n == 0:
        raise MolretError("cannot build an index over an empty library")
    index, quantizer = _new_faiss_index(kind, dim, n, params)
    if quantizer is not None:
        index.own_fields = True  # the index frees its quantizer (and keeps it alive as long as it lives)
        quantizer.this.disown()
    if kind in ("ivf", "ivfpq"):
        n_train = params.train_size or min(n, max(64 * index.nlist, 200_000))
        n_train = max(n_train, index.nlist)
        if kind == "ivfpq":
            n_train = max(n_train, min(n, (1 << index.pq.nbits) * 39))  # PQ centroids per sub-quantizer
        index.train(normalise_rows(_training_rows(rows, n_train, params.seed)))
    elif not index.is_trained:  # HNSW-SQ trains its scalar quantizer
        index.train(normalise_rows(_training_rows(rows, min(n, params.train_size or 100_000), params.seed)))
    return index


def build_faiss_index(emb, kind: str, params: IndexParams | None = None, progress: bool = False):
    """A trained and filled FAISS index of ``kind`` (ivf, ivfpq, hnsw) over ``emb`` rows."""
    from tqdm.auto import tqdm
    params = (params or IndexParams()).check()
    rows = _as_rows(emb)
    n = len(rows)
    index = train_faiss_index(rows, kind, params)
    with tqdm(total=n, desc=f"building {kind} index", unit="mol", disable=not progress, mininterval=1.0) as bar:
        for _, block in rows.chunks(ADD_CHUNK):
            index.add(normalise_rows(block))
            bar.update(len(block))
    return index


class AnnIndex:
    """Top-k cosine search over a library's embeddings through one index kind."""

    def __init__(self, emb, kind: str = "auto", params: IndexParams | None = None, order=None, faiss_index=None,
                 progress: bool = False):
        self.rows = _as_rows(emb)
        self.n, self.dim = self.rows.shape
        self.kind = choose_kind(self.n, kind)
        self.params = (params or IndexParams()).check()
        # a shard folder's record numbers stay memory-mapped (a ShardedVector, with take)
        self.order = order if order is None or hasattr(order, "parts") else np.asarray(order, dtype=np.int64)
        if self.order is not None and len(self.order) != self.n:
            raise MolretError(f"order has {len(self.order)} entries for {self.n} embeddings")
        t0 = time.perf_counter()
        self._flat = None
        self.index = faiss_index
        if self.kind == "exact":
            if self.n * self.dim * 4 <= EXACT_IN_MEMORY_BYTES:
                self._flat = _faiss().IndexFlatIP(self.dim)
                for _, block in self.rows.chunks(ADD_CHUNK):
                    self._flat.add(normalise_rows(block))
        elif self.index is None:
            self.index = build_faiss_index(self.rows, self.kind, self.params, progress)
        self.build_seconds = time.perf_counter() - t0
        self.apply_search_params()

    def apply_search_params(self) -> None:
        if self.index is None:
            return
        faiss = _faiss()
        if self.kind in ("ivf", "ivfpq"):
            faiss.extract_index_ivf(self.index).nprobe = self.params.nprobe
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = self.params.ef_search

    @property
    def backend(self) -> str:
        """The kind, under the name ``molret.search.index.SearchIndex`` reports (search.py, the web page)."""
        return self.kind

    @property
    def memory_bytes(self) -> int:
        """RAM the index itself holds: the stored file's size (FAISS reads it whole),
        the exact kind's float32 copy, or 0 for the exact memmap scan."""
        if self.kind == "exact":
            return self.n * self.dim * 4 if self._flat is not None else 0
        path = getattr(self, "stored_path", None)
        if path is not None and Path(path).is_file():
            return Path(path).stat().st_size
        return int(_faiss().serialize_index(self.index).size)

    # ---------------------------------------------------------------- search
    def _candidates(self, q: np.ndarray, k: int) -> np.ndarray:
        m = min(self.n, k + RESCORE_MARGIN)
        if self.kind == "ivfpq":
            m = min(self.n, max(m, k * self.params.rerank))
        if self._flat is not None:
            return self._flat.search(q, m)[1]
        if self.index is not None:
            if self.kind in ("ivf", "ivfpq"):
                _faiss().extract_index_ivf(self.index).parallel_mode = 1 if len(q) == 1 else 0
            return self.index.search(q, m)[1]
        return self._scan(q, m)

    def _scan(self, q: np.ndarray, m: int, chunk: int = 262144) -> np.ndarray:
        """Exact top-m by a chunked scan of the embeddings (no float32 copy of the library)."""
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for start, block in self.rows.chunks(chunk):
            s = q @ block.T
            if s.shape[1] > m:
                part = np.argpartition(-s, m - 1, axis=1)[:, :m]
                s = np.take_along_axis(s, part, axis=1)
            else:
                part = np.broadcast_to(np.arange(s.shape[1]), s.shape)
            best_s = np.concatenate([best_s, s], axis=1)
            best_i = np.concatenate([best_i, part + start], axis=1)
            if best_s.shape[1] > m:
                keep = np.argpartition(-best_s, m - 1, axis=1)[:, :m]
                best_s, best_i = np.take_along_axis(best_s, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
        return best_i

    def exact_scores(self, query: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Cosine of one query with every molecule in float64, as ``search`` rescores."""
        q64 = normalise_rows(query)[0].astype(np.float64)
        return np.concatenate([(block.astype(np.float64) * q64).sum(axis=1) for _, block in self.rows.chunks(chunk)])

    def rank(self, query: np.ndarray, index: int) -> tuple[int, float, int]:
        """(1-based exact rank of row ``index`` for one query, ties in library order; its
        score; how many other rows score exactly the same), as molret.search.index.SearchIndex.rank."""
        s = self.exact_scores(query)
        t = s[index]
        tie = np.asarray(self.order, dtype=np.int64) if self.order is not None else np.arange(self.n)
        before = int((s > t).sum() + ((s == t) & (tie < tie[index])).sum())
        return before + 1, float(t), int((s == t).sum()) - 1

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32, row positions int64), each [Q, min(k, n)], best first; exact
        cosine of the candidates, ties in library order; -1 / -inf pad a row
        when the index proposed fewer than k candidates."""
        q = normalise_rows(queries)
        if q.shape[1] != self.dim:
            raise MolretError(f"query embeddings have dimension {q.shape[1]}, the library {self.dim}")
        k = max(0, min(int(k), self.n))
        out_i = np.full((len(q), k), -1, np.int64)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        if k == 0:
            return out_s, out_i
        cand = self._candidates(q, k)
        q64 = q.astype(np.float64)
        for r in range(len(q)):
            c = np.unique(cand[r][cand[r] >= 0])
            s = (self.rows.take(c).astype(np.float64) * q64[r]).sum(axis=1)
            tie = self.order.take(c) if self.order is not None else c
            best = np.lexsort((tie, -s))[:k]
            out_i[r, :len(best)], out_s[r, :len(best)] = c[best], s[best]
        return out_s, out_i


# ------------------------------------------------------------------ storage

def index_tag(kind: str, params: IndexParams, n: int, dim: int, signature: str) -> str:
    build = {f: getattr(params, f) for f in IndexParams.BUILD_FIELDS}
    if kind == "ivf" or kind == "hnsw":
        build["codec"] = _codec(params, n, dim)
    key = json.dumps({"kind": kind, "build": build, "n": n, "dim": dim, "signature": signature}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def write_faiss_index(index, path) -> None:
    with atomic_path(path, suffix=".faiss") as tmp:
        _faiss().write_index(index, str(tmp))


def open_index(folder, emb, kind: str = "auto", params: IndexParams | None = None, *, signature: str = "",
               order=None, build: bool = True, progress: bool = False) -> AnnIndex:
    """The ``kind`` index over ``emb``, read from ``folder`` when stored there for these
    build parameters and this ``signature`` (of the shards), else built and stored
    there (atomically); ``build=False`` raises instead of building."""
    params = (params or IndexParams()).check()
    rows = _as_rows(emb)
    n, dim = rows.shape
    kind = choose_kind(n, kind)
    if kind == "exact":
        return AnnIndex(rows, kind, params, order)
    path, meta_path = stored_index_paths(folder, kind, params, n, dim, signature)
    if path.is_file() and meta_path.is_file():
        t0 = time.perf_counter()
        try:
            index = _faiss().read_index(str(path))
        except RuntimeError as e:
            raise MolretError(f"cannot read the index {path}: {str(e).splitlines()[0][:200]}") from None
        if index.ntotal != n or index.d != dim:
            raise MolretError(f"{path} indexes {index.ntotal} x {index.d} vectors, the library has {n} x {dim}")
        ann = AnnIndex(rows, kind, params, order, faiss_index=index)
        ann.load_seconds = time.perf_counter() - t0
        ann.stored_path = path
        return ann
    if not build:
        raise MolretError(f"no stored {kind} index in {folder} for these parameters (build it first)")
    ann = AnnIndex(rows, kind, params, order, progress=progress)
    store_index(ann.index, path, meta_path, kind, params, signature, ann.build_seconds)
    ann.load_seconds = 0.0
    ann.stored_path = path
    return ann


def stored_index_paths(folder, kind: str, params: IndexParams, n: int, dim: int, signature: str) -> tuple:
    """(index file, its metadata file) of the ``kind`` index over a folder for these build parameters."""
    tag = index_tag(kind, params, n, dim, signature)
    return Path(folder) / f"index-{kind}-{tag}.faiss", Path(folder) / f"index-{kind}-{tag}.json"


def store_index(index, path, meta_path, kind: str, params: IndexParams, signature: str, build_seconds: float,
                **extra) -> None:
    """Write a built index and then its metadata (both atomically: the metadata says the index is complete)."""
    write_faiss_index(index, path)
    atomic_write_text(meta_path, json.dumps({
        "kind": kind, "params": dataclasses.asdict(params), "n": int(index.ntotal), "dim": int(index.d),
        "signature": signature, "build_seconds": round(build_seconds, 3), "file_bytes": Path(path).stat().st_size,
        **extra}, indent=1))
