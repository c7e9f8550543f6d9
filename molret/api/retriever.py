"""MolRetriever, the one object of the Python API: a checkpoint loaded once, then encode, compare and search.

    from molret import MolRetriever
    retriever = MolRetriever.from_checkpoint("runs/demo/best.pt")
    hits = retriever.search(["an aromatic nitro compound"], "data/demo", k=5)[0]

predictions.py, search.py and serve.py go through it too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from molret.library.reading import ReaderOptions
from molret.search.engine import HUBNESS_TEMPERATURE, QUERY_THREADS
from molret.search.opening import IndexOptions
from molret.utils.errors import MolretError


@dataclass
class SearchOptions:
    """How a library is opened for search (search.py's and serve.py's flags)."""
    backend: str = "auto"                         # exact search: auto, numpy or faiss
    index: IndexOptions = field(default_factory=IndexOptions)
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    smiles_maps: Sequence[str] = ()               # id -> SMILES tables for graph libraries (first one wins)
    cache_dir: str | None = None
    use_cache: bool = True
    batch_size: int | None = None                 # graph embedding batch (None: the model's eval batch size)
    query_threads: int = QUERY_THREADS
    names: bool = False                           # fuse the chemical names of the queries (OPSIN, dictionaries)
    names_weights: Sequence[float] | None = None  # EXACT SUBJECT PARENT [FORM]; None: the fitted defaults
    hubness_bank: Sequence[str] | None = None     # texts of an inverted-softmax hubness bank; None: off
    hubness_temperature: float = HUBNESS_TEMPERATURE


class MolRetriever:
    """A trained checkpoint ready to embed queries and molecules and to search libraries."""

    def __init__(self, model, cfg, vocab, tokenizer, device, path: str | None = None):
        self.model, self.cfg, self.vocab, self.tokenizer, self.device = model, cfg, vocab, tokenizer, device
        self.path = str(path) if path is not None else None

    @classmethod
    def from_checkpoint(cls, path, device="auto") -> "MolRetriever":
        """Load ``path`` (best.pt / last.pt of main.py) on ``device`` ("auto": CUDA when there is one,
        a name such as "cpu" or "cuda:1", or a torch.device)."""
        from molret.models.checkpoint import load_model
        from molret.models.encoding import pick_device
        if isinstance(device, str):
            device = pick_device(device)
        model, cfg, vocab, tokenizer = load_model(path, device)
        return cls(model, cfg, vocab, tokenizer, device, path)

    @property
    def model_key(self) -> str:
        """The graph encoder's key (which cached library embeddings and shard folders it may use)."""
        from molret.library.caches import model_key
        return model_key(self.model, self.cfg, self.vocab)

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings of ``texts``, one row each."""
        from molret.search.engine import encode_queries
        return encode_queries(self.model, self.tokenizer, self.cfg, list(texts), self.device, batch_size)

    def encode_graphs(self, molecules, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings of ``molecules``: a list of SMILES (an invalid one is an error), the path
        of a library (SMILES file, graph library; its valid molecules in library order), or a GraphStore."""
        from molret.data.graph_store import GraphStore
        from molret.models.encoding import SEARCH_AMP, embed_graphs
        from molret.chem.mol_features import ensure_model_features
        smiles = None
        if isinstance(molecules, GraphStore):
            store = molecules
        elif isinstance(molecules, (str, Path)):
            from molret.library.reading import read_library
            lib = read_library(molecules, progress=progress)
            store, smiles = lib.graphs, (lib.smiles if any(lib.smiles) else None)
        else:
            smiles = list(molecules)
            store = smiles_store(smiles)
        store.attach_vocab(self.vocab)
        ensure_model_features(self.cfg.model, store, smiles=smiles, progress=progress)
        return embed_graphs(self.model, store, self.device, batch_size or self.cfg.train.eval_batch_size,
                            SEARCH_AMP, progress)

    @staticmethod
    def similarity(text_emb: np.ndarray, graph_emb: np.ndarray) -> np.ndarray:
        """Cosine similarities, queries x molecules."""
        from molret.models.encoding import similarity_matrix
        return similarity_matrix(np.atleast_2d(text_emb), np.atleast_2d(graph_emb))

    def embed_library(self, path, cache_dir=None, options: ReaderOptions | None = None, batch_size: int | None = None,
                      progress: bool = False, use_cache: bool = True):
        """The graph embeddings of every valid molecule of a library file, computed once and cached (beside
        the library, or in ``cache_dir``): a ``LibraryEmbeddings`` that ``search`` takes."""
        from molret.library.caches import library_embeddings
        return library_embeddings(path, self.model, self.cfg, self.vocab, device=self.device, options=options,
                                  cache_dir=cache_dir, batch_size=batch_size, progress=progress, use_cache=use_cache)

    def open_search(self, library, options: SearchOptions | None = None, progress: bool = False):
        """A ``LibrarySearch`` over ``library``: a shard folder (through its stored index), a library path
        (embedded and cached), or what ``embed_library`` returned."""
        from molret.library.shard_folder import is_shard_folder
        from molret.search.engine import LibrarySearch
        from molret.search.opening import memory_index, open_folder_index
        from molret.library.reading import read_smiles_map
        opts = options or SearchOptions()
        smiles_map = {}
        for path in opts.smiles_maps or ():
            for ident, smi in read_smiles_map(path).items():
                smiles_map.setdefault(ident, smi)
        if isinstance(library, (str, Path)) and is_shard_folder(library):
            lib, index = open_folder_index(library, opts.index, progress, self.model_key, self.path or "")
        else:
            lib = library if hasattr(library, "library") else self.embed_library(
                library, opts.cache_dir, opts.reader, opts.batch_size, progress, opts.use_cache)
            index = memory_index(lib.embeddings, opts.index, opts.backend, progress)
        engine = LibrarySearch(self.model, self.cfg, self.tokenizer, self.device, lib, opts.backend, smiles_map,
                               opts.query_threads, index)
        if opts.names:
            from molret.ranking.name_fusion import DEFAULT_WEIGHTS, FEATURES
            weights = dict(DEFAULT_WEIGHTS, **dict(zip(FEATURES, opts.names_weights))) if opts.names_weights else None
            engine.enable_names(weights, opts.reader, opts.cache_dir)
        if opts.hubness_bank is not None:
            engine.enable_hubness(list(opts.hubness_bank), opts.hubness_temperature)
        return engine

    def search(self, queries: Sequence[str], library, k: int = 10, index: str = "auto", names: bool = False) -> list:
        """The ``k`` best molecules of ``library`` for each query: one list of ``Hit`` (rank, id, score,
        smiles) per query. ``library``: a path or what ``embed_library`` returned; ``index``: auto, exact,
        ivf, ivfpq or hnsw; ``names``: fuse the chemical names of the queries (as search.py --names opsin).
        Each call opens the library anew (its embeddings from the cache): for many calls, keep the engine of
        ``open_search`` and call its ``search``."""
        if isinstance(queries, str):
            raise MolretError("search takes a list of queries (got one string)")
        if k < 1:
            raise MolretError(f"k must be at least 1, got {k}")
        engine = self.open_search(library, SearchOptions(index=IndexOptions(kind=index), names=names))
        return engine.search(list(queries), k)


def smiles_store(smiles: Sequence[str]):
    """A GraphStore of SMILES strings, in order (an invalid SMILES is a MolretError naming it)."""
    from molret.chem.smiles_graph import smiles_to_graph
    from molret.data.graph_store import GraphStore, parse_identifiers
    ids, id_parts, edge_parts = [], [], []
    for i, smi in enumerate(smiles):
        edge_index, identifiers = smiles_to_graph(smi)
        ids.append(str(i))
        id_parts.append(parse_identifiers(identifiers, f"SMILES {i + 1}"))
        edge_parts.append(np.asarray(edge_index, dtype=np.int32))
    return GraphStore.from_parts(ids, id_parts, edge_parts)
