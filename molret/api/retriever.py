"""MolRetriever, the one object of the Python API: a checkpoint loaded once, then encode, compare and search.

    from molret import MolRetriever
    retriever = MolRetriever.from_checkpoint("runs/demo/best.pt")   # or a recipe's runs/recipe/model.pt
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
    names: bool | None = None                     # fuse the chemical names of the queries (OPSIN, dictionaries);
                                                  # None: when the model file carries name weights
    names_weights: Sequence[float] | None = None  # EXACT SUBJECT PARENT [FORM]; None: the fitted defaults
    hubness_bank: Sequence[str] | None = None     # texts of an inverted-softmax hubness bank
    hubness: bool | None = None                   # the correction on (the bank's texts, else the model file's
                                                  # bank); None: on when hubness_bank is given or the model
                                                  # file carries a bank (a library file only)
    hubness_temperature: float = HUBNESS_TEMPERATURE
    claims: bool | None = None                    # the model file's claims scorer on; None: when the file carries
                                                  # one (a library file only)


class MolRetriever:
    """A trained checkpoint, or an ensemble's model file, ready to embed queries and molecules and to search
    libraries. An ensemble embeds into the concatenation of its members' sqrt(weight)-scaled embeddings, so
    every method below works the same on both (``molret.models.embedder``)."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.device = embedder.device
        self.path = embedder.path

    @classmethod
    def from_checkpoint(cls, path, device="auto") -> "MolRetriever":
        """Load ``path`` (best.pt / last.pt of main.py, or the model.pt of recipe.py / ensemble_method.py
        --save-model) on ``device`` ("auto": CUDA when there is one, a name such as "cpu" or "cuda:1", or a
        torch.device)."""
        from molret.models.embedder import load_embedder
        from molret.models.encoding import pick_device
        if isinstance(device, str):
            device = pick_device(device)
        return cls(load_embedder(path, device))

    @property
    def is_ensemble(self) -> bool:
        return self.embedder.ensemble

    def _single(self):
        if self.embedder.ensemble:
            raise MolretError(f"{self.path} is an ensemble of {len(self.embedder.members)} models: its members "
                              f"are retriever.embedder.members")
        return self.embedder.members[0]

    # the one model of a checkpoint (an ensemble's members: self.embedder.members)
    model = property(lambda self: self._single().model)
    cfg = property(lambda self: self._single().cfg)
    vocab = property(lambda self: self._single().vocab)
    tokenizer = property(lambda self: self._single().tokenizer)

    @property
    def model_key(self) -> str:
        """The molecule side's key (which cached library embeddings and shard folders it may use)."""
        from molret.library.caches import embedder_key
        return embedder_key(self.embedder)

    @property
    def default_claims(self) -> bool:
        """True when the model file carries a claims scorer: its searches add the claims bonus unless told not to."""
        return self.embedder.fusion.claims is not None

    def claims_scorer(self):
        """The model file's ``ClaimsScorer`` (a MolretError when it carries none, or one this molret cannot read)."""
        if self.embedder.fusion.claims is None:
            raise MolretError(f"{self.path} carries no claims scorer (ensemble_method.py --claims --save-model "
                              f"writes one)")
        from molret.ranking.claims.fusion import ClaimsScorer
        return ClaimsScorer.from_state(self.embedder.fusion.claims, f"the claims scorer of {self.path}")

    @property
    def default_names(self) -> bool:
        """True when the model file carries name-fusion weights: its searches fuse names unless told not to."""
        return bool(self.embedder.fusion.names_weights)

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings of ``texts``, one row each (an ensemble's: unit norm too)."""
        from molret.models.encoding import SEARCH_AMP
        return self.embedder.encode_texts(list(texts), batch_size, SEARCH_AMP)

    def encode_graphs(self, molecules, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings of ``molecules``: a list of SMILES (an invalid one is an error), the path
        of a library (SMILES file, graph library; its valid molecules in library order), or a GraphStore."""
        from molret.data.graph_store import GraphStore
        from molret.models.encoding import SEARCH_AMP
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
        return self.embedder.encode_store(store, batch_size, SEARCH_AMP, smiles=smiles, progress=progress)

    @staticmethod
    def similarity(text_emb: np.ndarray, graph_emb: np.ndarray) -> np.ndarray:
        """Cosine similarities, queries x molecules (an ensemble's: the weighted mean of its members')."""
        from molret.models.encoding import similarity_matrix
        return similarity_matrix(np.atleast_2d(text_emb), np.atleast_2d(graph_emb))

    def embed_library(self, path, cache_dir=None, options: ReaderOptions | None = None, batch_size: int | None = None,
                      progress: bool = False, use_cache: bool = True):
        """The graph embeddings of every valid molecule of a library file, computed once and cached (beside
        the library, or in ``cache_dir``): a ``LibraryEmbeddings`` that ``search`` takes."""
        from molret.library.caches import library_embeddings
        return library_embeddings(path, self.embedder, options=options, cache_dir=cache_dir, batch_size=batch_size,
                                  progress=progress, use_cache=use_cache)

    def open_search(self, library, options: SearchOptions | None = None, progress: bool = False):
        """A ``LibrarySearch`` over ``library``: a shard folder (through its stored index), a library path
        (embedded and cached), or what ``embed_library`` returned. Names are fused when ``options.names``
        says so (None: when the model file carries name weights, with those weights); the claims bonus when
        ``options.claims`` says so (None: when the model file carries a claims scorer)."""
        from molret.library.shard_folder import is_shard_folder
        from molret.search.engine import LibrarySearch
        from molret.search.opening import memory_index, open_folder_index
        from molret.library.reading import read_smiles_map
        opts = options or SearchOptions()
        smiles_map = {}
        for path in opts.smiles_maps or ():
            for ident, smi in read_smiles_map(path).items():
                smiles_map.setdefault(ident, smi)
        folder = isinstance(library, (str, Path)) and is_shard_folder(library)
        if folder:
            lib, index = open_folder_index(library, opts.index, progress, self.model_key, self.path or "")
        else:
            lib = library if hasattr(library, "library") else self.embed_library(
                library, opts.cache_dir, opts.reader, opts.batch_size, progress, opts.use_cache)
            index = memory_index(lib.embeddings, opts.index, opts.backend, progress)
        engine = LibrarySearch(self.embedder, lib, opts.backend, smiles_map, opts.query_threads, index)
        # a model file's names are its default on a library file; a shard folder keeps no graphs to match them
        names = opts.names if opts.names is not None else (self.default_names and not folder)
        if names:
            from molret.ranking.name_fusion import DEFAULT_WEIGHTS, FEATURES
            base = dict(DEFAULT_WEIGHTS, **(self.embedder.fusion.names_weights or {}))
            weights = dict(base, **dict(zip(FEATURES, opts.names_weights))) if opts.names_weights else base
            engine.enable_names(weights, opts.reader, opts.cache_dir)
        fusion = self.embedder.fusion
        if opts.claims if opts.claims is not None else (self.default_claims and not folder):
            engine.enable_claims(self.claims_scorer())
        if opts.hubness_bank is not None and opts.hubness is not False:
            engine.enable_hubness(list(opts.hubness_bank), opts.hubness_temperature)
        elif fusion.hubness_bank is not None and (opts.hubness or (opts.hubness is None and not folder)):
            engine.enable_hubness_embeddings(fusion.hubness_bank, fusion.hubness_temperature)
        elif opts.hubness:
            raise MolretError("hubness correction: give the bank's texts (--hubness-bank), this model carries none")
        return engine

    def search(self, queries: Sequence[str], library, k: int = 10, index: str = "auto",
               names: bool | None = None, claims: bool | None = None) -> list:
        """The ``k`` best molecules of ``library`` for each query: one list of ``Hit`` (rank, id, score,
        smiles) per query. ``library``: a path or what ``embed_library`` returned; ``index``: auto, exact,
        ivf, ivfpq or hnsw; ``names``: fuse the chemical names of the queries (as search.py --names opsin;
        None: when the model file carries name weights); ``claims``: add the claims bonus (None: when the model
        file carries a claims scorer). Each call opens the library anew (its embeddings
        from the cache): for many calls, keep the engine of ``open_search`` and call its ``search``."""
        if isinstance(queries, str):
            raise MolretError("search takes a list of queries (got one string)")
        if k < 1:
            raise MolretError(f"k must be at least 1, got {k}")
        engine = self.open_search(library, SearchOptions(index=IndexOptions(kind=index), names=names,
                                                               claims=claims))
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
