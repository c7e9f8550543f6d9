"""The library search engine: a loaded model plus one library's graph
embeddings and index (``LibrarySearch``), optionally with a hubness
correction, the claims bonus and the chemical names of the queries fused in.

The library and its cached embeddings are ``molret.library.reading`` and
``molret.library.caches``, the nearest-neighbour index ``molret.search.index`` (a
shard folder's: ``molret.search.ann``), the command line (search.py) ``molret.cli.search``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from molret.utils.errors import MolretError
from molret.search.index import SearchIndex, rank_in, top_k
from molret.utils.files import is_writable_dir
from molret.library.reading import ReaderOptions
from molret.library.reading import library_cache_dir
from molret.library.caches import LibraryEmbeddings, read_library_graphs
from molret.models.encoding import SEARCH_AMP

QUERY_THREADS = 1                 # torch threads to encode a few queries on the CPU (see LibrarySearch.encode)
HUBNESS_TEMPERATURE = 0.05       # inverted softmax over the query bank (see LibrarySearch.enable_hubness)


@dataclass
class Hit:
    rank: int
    index: int
    id: str
    smiles: str | None
    score: float
    decoded: bool = False    # the SMILES was decoded from the challenge graph: no stereochemistry


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


def merge_smiles_map(smiles: str | None, ident: str, smiles_map: dict, decoded: bool) -> tuple:
    """(SMILES shown, True when it is the decoder's) of one molecule: a ``--smiles-map`` entry replaces
    a SMILES decoded from a graph (it may carry stereochemistry) and fills an unknown one; a SMILES
    library's own SMILES stay."""
    smiles = smiles or None
    mapped = smiles_map.get(ident) if smiles_map else None
    if mapped and (decoded or smiles is None):
        return mapped, False
    return smiles, decoded and smiles is not None


class FolderSmiles:
    """The SMILES of a shard folder's rows, read on access, merged with ``smiles_map``
    (``merge_smiles_map``; ``decoded``: the folder's SMILES were decoded from graphs)."""

    def __init__(self, smiles, ids, smiles_map: dict | None = None, decoded: bool = False):
        self.smiles, self.ids, self.smiles_map, self.decoded = smiles, ids, smiles_map or {}, decoded

    def __len__(self) -> int:
        return len(self.smiles)

    def entry(self, j: int) -> tuple:
        """(SMILES or None, decoded from the graph)."""
        return merge_smiles_map(self.smiles[j], self.ids[j], self.smiles_map, self.decoded)

    def __getitem__(self, j: int):
        return self.entry(j)[0]

    def is_decoded(self, j: int) -> bool:
        return self.entry(j)[1]

    def __iter__(self):
        return (self[j] for j in range(len(self)))


class LibrarySearch:
    """A loaded model (an ``molret.models.embedder.Embedder``: a checkpoint or an ensemble) plus one library's
    embeddings and index.

    ``lib`` is a ``LibraryEmbeddings`` (a library file, embeddings in memory) or a
    ``molret.library.shard_folder.ShardLibrary`` (a shard folder: ids and SMILES read on
    access, and ``index`` required). ``index`` is any object with
    ``search(q, k)``, ``rank(query, i)``, ``exact_scores(query)`` and ``n`` (a
    ``molret.search.ann.AnnIndex``); by default a ``SearchIndex`` of ``backend``.
    """

    def __init__(self, embedder, lib: LibraryEmbeddings, backend: str = "auto", smiles_map: dict | None = None,
                 query_threads: int = QUERY_THREADS, index=None):
        self.embedder, self.device = embedder, embedder.device
        self.query_threads = query_threads
        self.lib = lib
        self.folder = not hasattr(lib, "library")
        if self.folder:
            if index is None:
                raise MolretError("a shard folder is searched through its index (molret.search.ann.open_index)")
            self.ids = lib.ids
            self.smiles = FolderSmiles(lib.smiles, lib.ids, smiles_map, bool(lib.meta.get("smiles_decoded")))
            self._decoded = self.smiles.is_decoded
        else:
            self.ids = list(lib.library.ids)
            decoded = lib.library.smiles_decoded
            merged = [merge_smiles_map(s, i, smiles_map or {}, decoded) for i, s in zip(self.ids, lib.library.smiles)]
            self.smiles = [s for s, _ in merged]
            decoded_rows = np.fromiter((d for _, d in merged), dtype=bool, count=len(merged))
            self._decoded = lambda j: bool(decoded_rows[j])
        self.index = index if index is not None else SearchIndex(lib.embeddings, backend)
        self._position = None
        self.names = None               # (Candidates, weights, opsin, sources) once enable_names is called
        self.hub_offsets = None         # per-molecule offsets once enable_hubness is called
        self.claims = None              # (ClaimsScorer, LazyAttributes of the rows) once enable_claims is called

    def enable_hubness(self, bank: Sequence[str], temperature: float = HUBNESS_TEMPERATURE,
                       chunk: int = 256) -> None:
        """Inverted-softmax hubness correction (query-bank normalisation): a
        molecule that is close to many queries of a bank (e.g. the training
        descriptions) is a hub; its scores drop by ``T * logsumexp_b(sim(b, m) / T)``,
        i.e. each score becomes ``T * log`` of a softmax over the bank's queries."""
        self._need_graphs("--hubness")
        self.enable_hubness_embeddings(self.encode(list(bank)), temperature, chunk)

    def enable_hubness_embeddings(self, bank_emb: np.ndarray, temperature: float = HUBNESS_TEMPERATURE,
                                  chunk: int = 256) -> None:
        """``enable_hubness`` with the bank already embedded (a model file carries its training texts' embeddings)."""
        if not temperature > 0:
            raise MolretError(f"--hubness-temperature must be > 0, got {temperature}")
        self._need_graphs("--hubness")
        offsets = np.full(self.index.n, -np.inf)
        for i in range(0, len(bank_emb), chunk):
            s = self._all_scores(bank_emb[i:i + chunk]) / temperature
            offsets = np.logaddexp(offsets, np.logaddexp.reduce(s, axis=0))
        self.hub_offsets = temperature * offsets

    def _all_scores(self, queries: np.ndarray) -> np.ndarray:
        """[Q, N] float64 cosine scores of every molecule."""
        if hasattr(self.index, "scores"):
            return self.index.scores(queries).astype(np.float64)
        return np.stack([self.index.exact_scores(q) for q in np.atleast_2d(queries)])

    def _need_graphs(self, what: str) -> None:
        if self.folder:
            raise MolretError(f"{what} scores every molecule of the library, which a shard folder is not meant "
                              f"for (and it keeps no parsed graphs): search the library file itself")

    @property
    def rescored(self) -> bool:
        """True when every molecule is scored exactly (names, hubness or claims on), not through the index."""
        return self.names is not None or self.hub_offsets is not None or self.claims is not None

    def enable_claims(self, scorer) -> None:
        """Add the claims bonus of ``scorer`` (a ``molret.ranking.claims.fusion.ClaimsScorer``) from now on: each
        query's top-k molecules (after the hubness offsets) get ``weight * bonus``, their attributes computed
        from the library's SMILES on first use and kept (a row of unknown SMILES: unknown attributes)."""
        from molret.ranking.claims.fusion import LazyAttributes
        self._need_graphs("claims")
        self.claims = (scorer, LazyAttributes(self.smiles))

    def enable_names(self, weights: dict | None = None, options: ReaderOptions | None = None, cache_dir=None,
                     training_pairs: bool = True) -> bool:
        """Fuse the structures named in the queries (molret.ranking.name_fusion) with
        the cosine scores from now on, names resolved by every source there is
        (molret.names.sources: OPSIN, the chemicals dictionary, and with
        ``training_pairs`` the pairs dictionary of the checkpoint's data
        folder's train.tsv); a missing source is one warning line. False when
        there is none, and the search stays learned-only."""
        from molret.ranking.name_fusion import DEFAULT_WEIGHTS, Candidates
        from molret.names.sources import default_sources
        from molret.names.opsin import shared_opsin
        self._need_graphs("--names")
        pairs = self._training_pairs(cache_dir) if training_pairs else None
        opsin = shared_opsin()
        sources = default_sources(opsin, pairs)
        if not sources:
            return False
        graphs = self.lib.library.graphs
        if graphs is None:  # embeddings came from the cache: the parsed library is cached too
            folder = library_cache_dir(self.lib.library.path, cache_dir)
            graphs = read_library_graphs(self.lib.library.path, options, folder if is_writable_dir(folder) else None,
                                         self.lib.library.fingerprint).graphs
        self.names = (Candidates.from_stores([graphs]), dict(weights or DEFAULT_WEIGHTS), opsin, sources)
        return True

    def _training_pairs(self, cache_dir):
        """The pairs dictionary of the checkpoint's data folder (None, one warning line, when it has none)."""
        from molret.names.sources import pairs_dictionary_from_dir
        data_dir = self.embedder.data_dir
        if not data_dir:
            return None
        return pairs_dictionary_from_dir(data_dir, cache_dir)

    def fused_scores(self, queries: Sequence[str], query_emb: np.ndarray) -> np.ndarray:
        """[Q, N] float64 scores: the cosine (a float32 product, as ``_all_scores``), minus the
        hubness offsets, plus the claims bonus, plus name evidence, as enabled (claims before names, as
        the ensemble's pool fused them)."""
        # every molecule is scored: one float32 matrix product (an ensemble's rows are wide, and a float64
        # copy of the library per query cost more than the rest of the search), then float64
        base = self._all_scores(query_emb)
        if self.hub_offsets is not None:
            base -= self.hub_offsets[None, :]
        if self.claims is not None:
            scorer, attrs = self.claims
            base = scorer.fuse(queries, base, attrs)
        if self.names is None:
            return base
        from molret.ranking.name_fusion import fuse, name_features
        from molret.names.queries import resolve_queries
        candidates, weights, opsin, sources = self.names
        return fuse(base, name_features(resolve_queries(queries, opsin, sources=sources), candidates), weights)

    def __len__(self) -> int:
        return len(self.ids)

    def is_decoded(self, j: int) -> bool:
        """True when row ``j``'s SMILES was decoded from its challenge graph (no stereochemistry)."""
        return self._decoded(j)

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
            return self.embedder.encode_texts(queries, amp=SEARCH_AMP)

    def search(self, queries: Sequence[str], k: int = 10, query_emb: np.ndarray | None = None) -> list:
        q = self.encode(queries) if query_emb is None else query_emb
        if self.rescored:
            scores, idx = top_k(self.fused_scores(queries, q), k)
        else:
            scores, idx = self.index.search(q, k)
        return [[Hit(r + 1, int(j), self.ids[int(j)], self.smiles[int(j)], float(s), self.is_decoded(int(j)))
                 for r, (j, s) in enumerate(zip(idx[row], scores[row])) if j >= 0] for row in range(len(q))]

    def rank_of(self, query_emb: np.ndarray, ident: str, query: str | None = None) -> tuple[int, float, int]:
        """(rank, score, exact ties) of ``ident`` for one query, in the order of ``search``
        (with names enabled, ``query`` is the query's text)."""
        if self.rescored:
            return rank_in(self.fused_scores([query or ""], query_emb)[0], self.position(ident))
        return self.index.rank(query_emb, self.position(ident))
