"""Every shard of a library embedding as a distributed job: a worker loads the model once, embeds shard after shard.

The job runs on ``molret.library.distribute`` (Ray actors or a local process pool).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from molret.library.shard_folder import shard_name
from molret.library.shards import CHUNK_SIZE, ShardResult, embed_shard


@dataclass
class EmbedShardsJob:
    """Every shard of one embedding, as a ``molret.library.distribute`` job: a worker loads the model
    once (``setup``) and embeds shard after shard (``run``: ``embed_shard``, atomic, skipped when done)."""
    model: str
    library: str
    out: str
    num_shards: int
    dtype: str = "float16"
    options: object = None           # molret.library.reading.ReaderOptions
    batch_size: int | None = None
    chunk_size: int = CHUNK_SIZE
    device: str = "auto"
    threads: int = 1                 # torch threads per worker
    die_once: str | None = None      # test hook: a marker file; the first worker to create it dies mid-shard
    # imported once by a process pool's server (what loading a model and embedding a chunk import)
    preload = ("molret.models.embedder", "molret.models.encoders", "molret.models.checkpoint", "transformers",
               "torch_geometric", "rdkit.Chem", "molret.chem.smiles_graph", "molret.library.reading")

    def setup(self) -> None:
        import torch
        from molret.models.embedder import load_embedder
        from molret.models.encoding import pick_device
        torch.set_num_threads(self.threads)
        self._embedder = load_embedder(self.model, pick_device(self.device))

    def run(self, shard: int) -> ShardResult:
        hook = None
        if self.die_once:
            from functools import partial
            from molret.library.distribute import die_once
            hook = partial(die_once, self.die_once)
        return embed_shard(self.library, self.out, shard, self.num_shards, self._embedder, dtype=self.dtype,
                           options=self.options, batch_size=self.batch_size, chunk_size=self.chunk_size,
                           on_chunk=hook)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_embedder"}   # the model is loaded by each worker


def remove_stale_temporaries(folder, names) -> int:
    """Remove the temporary files that killed writers of the shards ``names`` left (call only once
    those shards are finished: nobody writes them any more); returns how many."""
    removed = 0
    for name in names:
        for p in Path(folder).glob(f".{name}.*.tmp*"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
    return removed


def already_finished(job: EmbedShardsJob) -> dict | None:
    """{shard: ShardResult} when every shard of ``job`` is finished (the model loaded here once to check its
    key; only when every manifest is there), else None."""
    from molret.library.shards import finished_shards
    if not all((Path(job.out) / f"{shard_name(i, job.num_shards)}.json").is_file() for i in range(job.num_shards)):
        return None
    job.setup()
    try:
        return finished_shards(job.library, job.out, job.num_shards, job._embedder, dtype=job.dtype,
                               options=job.options)
    finally:
        del job._embedder


def embed_all_shards(job: EmbedShardsJob, distribute, progress: bool = False):
    """Every shard of ``job`` on the engine of ``distribute`` (``molret.library.distribute.DistributeOptions``):
    a ``ShardRun`` whose results are the ``ShardResult`` of each shard."""
    import time
    from tqdm.auto import tqdm
    from molret.library.distribute import ShardRun, pick_engine, run_shards
    from molret.library.reading import library_kind
    library_kind(job.library)   # a missing library fails before any worker starts
    engine = pick_engine(distribute)
    t0 = time.perf_counter()
    done = already_finished(job)
    if done is not None:   # a rerun: no worker started
        return ShardRun(done, engine, 0, time.perf_counter() - t0)
    with tqdm(total=job.num_shards, desc="shards", unit="shard", disable=not progress) as bar:
        run = run_shards(job, range(job.num_shards), distribute, lambda shard, result: bar.update(1))
    remove_stale_temporaries(job.out, [shard_name(i, job.num_shards) for i in range(job.num_shards)])
    return run
