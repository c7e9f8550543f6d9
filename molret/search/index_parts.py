"""A shard folder's IVF / IVF-PQ index built in parts: trained once on a sample, filled per shard in parallel, merged.

As autofaiss does for large indexes: the driver trains the index once, on the
sample the single-process build trains on (``molret.search.ann.train_faiss_index``),
and stores it empty (``index-<kind>-<tag>.trained.faiss``); each shard is then
a ``molret.library.distribute`` job that adds its rows, under their positions in
the folder, to a copy of the trained index and saves it atomically as
``index-<kind>-<tag>.parts/part-IIIII.faiss`` (skipped when present, so a
rerun after a crash redoes only the missing parts); the parts are merged in
shard order, which puts every inverted list's entries in the order the
single-process build adds them: the merged index is the one ``open_index``
builds, stored under the same name (then the parts and the trained file are
removed).  The merge holds the whole index in memory, as its search does.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molret.utils.errors import MolretError

PART_KINDS = ("ivf", "ivfpq")     # HNSW graphs cannot be merged


@dataclass
class FillPartJob:
    """One shard's rows added to the trained index (a ``molret.library.distribute`` job)."""
    folder: str
    trained: str                   # the trained, empty index
    parts: str                     # folder of the parts
    num_shards: int
    starts: list                   # position in the folder of each shard's first row
    threads: int = 1

    def setup(self) -> None:
        from molret.search.ann import set_threads
        set_threads(self.threads)

    def part_path(self, shard: int) -> Path:
        return Path(self.parts) / f"part-{shard:05d}.faiss"

    def run(self, shard: int) -> bool:
        """Add shard ``shard``'s rows; False when its part was already there."""
        import faiss
        from molret.library.shard_folder import shard_name
        from molret.search.ann import ADD_CHUNK, normalise_rows, write_faiss_index
        path = self.part_path(shard)
        if path.is_file():
            return False
        index = faiss.read_index(self.trained)
        emb = np.load(Path(self.folder) / f"{shard_name(shard, self.num_shards)}.npy", mmap_mode="r")
        start = int(self.starts[shard])
        for i in range(0, len(emb), ADD_CHUNK):
            block = normalise_rows(emb[i:i + ADD_CHUNK])
            index.add_with_ids(block, np.arange(start + i, start + i + len(block), dtype=np.int64))
        write_faiss_index(index, path)
        return True


def build_in_parts(lib, kind: str, params, distribute, progress: bool = False):
    """The ``kind`` (ivf or ivfpq) index of the shard folder ``lib`` (``open_shard_folder``), built in parts
    on the engine of ``distribute`` and stored where ``open_index`` finds it; returns (AnnIndex, ShardRun or
    None when the index was already stored)."""
    import faiss
    from tqdm.auto import tqdm
    from molret.library.distribute import pick_engine, run_shards
    from molret.search.ann import (choose_kind, open_index, store_index, stored_index_paths, train_faiss_index,
                                   write_faiss_index)
    params = params.check()
    pick_engine(distribute)   # Ray asked for but missing: said before any training
    rows = lib.embeddings
    n, dim = rows.shape
    kind = choose_kind(n, kind)
    if kind not in PART_KINDS:
        raise MolretError(f"an index built in parts must be one of {', '.join(PART_KINDS)} (got {kind}): HNSW "
                          f"graphs cannot be merged; build it without --cluster / --workers")
    signature = lib.meta["signature"]
    path, meta_path = stored_index_paths(lib.folder, kind, params, n, dim, signature)
    if path.is_file() and meta_path.is_file():
        return open_index(lib.folder, rows, kind, params, signature=signature, order=lib.rows, build=False), None
    t0 = time.perf_counter()
    stem = path.with_suffix("")
    trained, parts = Path(f"{stem}.trained.faiss"), Path(f"{stem}.parts")
    if not trained.is_file():
        index = train_faiss_index(rows, kind, params)
        write_faiss_index(index, trained)
        del index
    parts.mkdir(exist_ok=True)
    num_shards = len(rows.parts)
    job = FillPartJob(str(lib.folder), str(trained), str(parts), num_shards, [int(x) for x in rows.offsets[:-1]],
                      distribute.cpus_per_worker)
    with tqdm(total=num_shards, desc=f"filling {kind} parts", unit="shard", disable=not progress) as bar:
        run = run_shards(job, range(num_shards), distribute, lambda shard, result: bar.update(1))
    merged = faiss.read_index(str(trained))
    for shard in range(num_shards):
        part = faiss.read_index(str(job.part_path(shard)))
        merged.merge_from(part, 0)   # ids are already the folder positions
        del part
    faiss.extract_index_ivf(merged).nprobe = params.nprobe   # stored as the single-process build stores it
    if merged.ntotal != n:
        raise MolretError(f"the index parts hold {merged.ntotal:,} rows, the folder {n:,}")
    store_index(merged, path, meta_path, kind, params, signature, time.perf_counter() - t0,
                built_in_parts=num_shards, engine=run.engine)
    del merged
    shutil.rmtree(parts, ignore_errors=True)
    with contextlib.suppress(OSError):
        trained.unlink()
    return open_index(lib.folder, rows, kind, params, signature=signature, order=lib.rows, build=False), run
