"""Opening a library's index for search: a shard folder's stored index, or an index in memory, from typed options."""
from __future__ import annotations

from dataclasses import dataclass, field

from molret.search.ann import IndexParams
from molret.utils.errors import MolretError


@dataclass
class IndexOptions:
    """Which nearest-neighbour index searches a library, and how (the flags of --index)."""
    kind: str = "auto"                 # auto, exact, ivf, ivfpq, hnsw (molret.search.ann.KINDS)
    params: IndexParams = field(default_factory=IndexParams)
    threads: int = 0                   # FAISS threads (0: FAISS's default)

    def check(self) -> "IndexOptions":
        """Range-check (before a model is loaded); returns itself."""
        if not 0 <= self.threads <= 1024:
            raise MolretError(f"--index-threads must be between 0 and 1,024, got {self.threads}")
        self.params.check()
        return self


def check_model_key(lib, key: str, model_name: str = "") -> None:
    """Refuse a shard folder embedded by another model than the one of graph-encoder ``key``."""
    if key != lib.model_key:
        raise MolretError(f"{lib.folder} was embedded with another model than {model_name} (graph-encoder key "
                          f"{lib.model_key[:12]}); embed the library with this checkpoint or pass the one used")


def open_folder_index(folder, options: IndexOptions, progress: bool, model_key: str | None = None,
                      model_name: str = ""):
    """(ShardLibrary, AnnIndex) of a shard folder (its index built and stored when missing). With
    ``model_key``, a folder embedded by another model is refused before any index is built."""
    from molret.search.ann import open_index, set_threads
    from molret.library.shard_folder import open_shard_folder
    options.check()
    lib = open_shard_folder(folder)
    if model_key is not None:
        check_model_key(lib, model_key, model_name)
    set_threads(options.threads)
    ann = open_index(lib.folder, lib.embeddings, options.kind, options.params,
                     signature=lib.meta["signature"], order=lib.rows, progress=progress)
    return lib, ann


def memory_index(embeddings, options: IndexOptions, backend: str = "auto", progress: bool = False):
    """The index of a library held in memory (not a shard folder): kind auto or exact is the exact
    ``molret.search.index.SearchIndex`` (``backend``); ivf, ivfpq or hnsw an ``molret.search.ann.AnnIndex``
    built for this run (not stored)."""
    if options.kind in ("auto", "exact"):
        from molret.search.index import SearchIndex
        return SearchIndex(embeddings, backend)
    from molret.search.ann import AnnIndex, set_threads
    options.check()
    set_threads(options.threads)
    return AnnIndex(embeddings, options.kind, options.params, progress=progress)
