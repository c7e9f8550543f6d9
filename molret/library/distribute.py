"""Distributing per-shard work over processes or a Ray cluster: one small interface, two distributors.

A *job* is a pure per-shard mapper (``ShardJob``): ``setup()`` once per
worker (e.g. load a model), then ``run(shard)`` for shard after shard; each
``run`` writes its own outputs atomically (or returns a small picklable
result), so a shard redone after a worker died starts from scratch and a
finished shard is skipped by the job itself.  ``run_shards`` hands the
shards to

* ``ProcessDistributor``: a local pool of processes (no dependency), forked
  from a server process that imported the job's modules once;
  a dead worker breaks the pool, which is restarted with the shards not
  finished yet;
* ``RayDistributor``: Ray actors (``pip install -r requirements-optional.txt``),
  on a local Ray started for the run or on a cluster (``--cluster
  ray://HOST:10001``, ``auto``, or ``RAY_ADDRESS``); an actor that dies is
  replaced and its shard resubmitted.  Ray gives an actor a fraction of a
  GPU (``gpus_per_worker``).

Ray is imported only here, and only when a Ray run is asked for.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from molret.utils.errors import MolretError

log = logging.getLogger("molret.library.distribute")

ENGINES = ("auto", "ray", "processes")
RAY_INSTALL = "pip install -r requirements-optional.txt (Ray), or pip install ray"
MAX_WORKERS = 4096


class ShardJob(Protocol):
    """What a distributor runs: picklable, ``setup`` once per worker, ``run`` per shard; an optional
    ``preload`` tuple names modules a process pool imports once for all its workers."""

    def setup(self) -> None: ...

    def run(self, shard: int): ...


@dataclass
class DistributeOptions:
    """Where and how shards run (the flags --engine, --cluster, --workers, --gpus-per-worker)."""
    engine: str = "auto"            # auto: Ray when installed (or when a cluster is named), else processes
    cluster: str | None = None      # None: a local Ray (or RAY_ADDRESS when set); "auto" or an address
    workers: int = 0                # 0: one per CPU of the machine / cluster (at most one per shard)
    cpus_per_worker: int = 1        # the torch threads of a worker, and the CPUs Ray reserves for it
    gpus_per_worker: float = 0.0    # Ray only: fraction of a GPU per actor
    max_retries: int = 3            # dead workers tolerated per shard (Ray) / pool restarts (processes)

    def check(self) -> "DistributeOptions":
        if self.engine not in ENGINES:
            raise MolretError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise MolretError(f"--workers must be between 0 and {MAX_WORKERS:,}, got {self.workers}")
        if not 1 <= self.cpus_per_worker <= 1024:
            raise MolretError(f"threads per worker must be between 1 and 1,024, got {self.cpus_per_worker}")
        if not 0.0 <= self.gpus_per_worker <= 64.0:
            raise MolretError(f"--gpus-per-worker must be between 0 and 64, got {self.gpus_per_worker}")
        if not 0 <= self.max_retries <= 100:
            raise MolretError(f"--max-retries must be between 0 and 100, got {self.max_retries}")
        if self.cluster is not None and not str(self.cluster).strip():
            raise MolretError("--cluster needs auto or an address, e.g. ray://HOST:10001")
        if self.engine == "processes" and (self.cluster is not None or self.gpus_per_worker > 0):
            raise MolretError("--cluster and --gpus-per-worker need Ray (--engine ray or auto)")
        return self


def ray_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("ray") is not None


def import_ray():
    """The ray module, or MolretError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MolretError(f"Ray is not installed: {RAY_INSTALL}") from None
    return ray


def pick_engine(options: DistributeOptions) -> str:
    """"ray" or "processes" for ``options`` (a named cluster without Ray installed: MolretError)."""
    options.check()
    if options.engine == "processes":
        return "processes"
    if options.engine == "ray" or options.cluster is not None or options.gpus_per_worker > 0:
        import_ray()
        return "ray"
    return "ray" if ray_available() else "processes"


@dataclass
class ShardRun:
    """What ``run_shards`` did."""
    results: dict                  # shard -> job.run(shard)
    engine: str                    # "ray" or "processes"
    workers: int
    seconds: float                 # wall time, start-up included
    start_seconds: float = 0.0     # Ray: time to start or join it
    retries: int = 0               # shards redone after a worker died (Ray) / pool restarts (processes)


def run_shards(job, shards, options: DistributeOptions | None = None,
               on_done: Callable[[int, object], None] | None = None) -> ShardRun:
    """``job.run(shard)`` for every shard in ``shards``, on the engine ``options`` pick."""
    t0 = time.perf_counter()
    options = options or DistributeOptions()
    shards = sorted(set(int(s) for s in shards))
    engine = pick_engine(options)
    if not shards:
        return ShardRun({}, engine, 0, 0.0)
    distributor = RayDistributor(options) if engine == "ray" else ProcessDistributor(options)
    results = distributor.run(job, shards, on_done or (lambda s, r: None))
    return ShardRun(results, engine, distributor.workers, time.perf_counter() - t0,
                    distributor.start.seconds if engine == "ray" else 0.0,
                    sum(distributor.retries.values()) if engine == "ray" else distributor.restarts)


# ------------------------------------------------------------------ processes

_worker_job = None


def _init_worker(job) -> None:
    global _worker_job
    _worker_job = job
    job.setup()


def _run_in_worker(shard: int):
    return _worker_job.run(shard)


class ProcessDistributor:
    """Shards on a local pool of processes (forkserver), each set up once."""
    name = "processes"

    def __init__(self, options: DistributeOptions):
        self.options = options
        self.restarts = 0
        self.workers = 0

    def workers_for(self, n_shards: int) -> int:
        k = self.options.workers or max(1, (os.cpu_count() or 1) // self.options.cpus_per_worker)
        return max(1, min(k, n_shards))

    def run(self, job, shards: list, on_done) -> dict:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool
        results, remaining = {}, list(shards)
        while remaining:
            # forked from a clean server process that imported the job's modules once (no threads, no Ray
            # client of this process in the workers; a pool restarted after a death starts at once)
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(list(getattr(job, "preload", ())))
            self.workers = max(self.workers, self.workers_for(len(remaining)))
            with ProcessPoolExecutor(self.workers_for(len(remaining)), mp_context=ctx, initializer=_init_worker,
                                     initargs=(job,)) as pool:
                futures = {pool.submit(_run_in_worker, s): s for s in remaining}
                broken = False
                for fut in as_completed(futures):
                    shard = futures[fut]
                    try:
                        results[shard] = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    on_done(shard, results[shard])
            remaining = [s for s in remaining if s not in results]
            if broken and remaining:
                self.restarts += 1
                if self.restarts > self.options.max_retries:
                    raise MolretError(f"a worker process died {self.restarts} times; shards not finished: "
                                      f"{', '.join(map(str, remaining[:10]))}")
                log.warning(f"a worker process died: restarting the pool for {len(remaining)} shard(s)")
        return results


# ------------------------------------------------------------------------ ray

class _RayWorker:
    """The body of a Ray actor: the job set up once, then shard after shard."""

    def __init__(self, job):
        self.job = job
        job.setup()

    def run(self, shard: int):
        return self.job.run(shard)


@dataclass
class RayStart:
    address: str           # what ray.init was given ("local": a Ray started for this run)
    seconds: float         # time ray.init took
    started_here: bool     # True: this run started (and will shut down) Ray


def ray_start(options: DistributeOptions) -> RayStart:
    """Connect to Ray: the cluster named, RAY_ADDRESS, an already initialised Ray (kept), or a new local
    Ray started now (with as many CPUs as the machine; no dashboard; never a `ray start` cluster of this
    machine unless named: --cluster auto)."""
    ray = import_ray()
    if ray.is_initialized():
        return RayStart("initialised", 0.0, False)
    t0 = time.perf_counter()
    address = options.cluster or os.environ.get("RAY_ADDRESS")
    try:
        if address:   # a cluster's workers get this molret package (uploaded once); its dependencies they must have
            package = Path(__file__).resolve().parents[1]
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                     runtime_env={"py_modules": [str(package)]})
        else:   # on this machine only (its token-authentication notice is not for the user of one run)
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local Ray"
        raise MolretError(f"cannot start or join Ray at {where}: {str(e).splitlines()[0][:300]}") from None
    return RayStart(address or "local", time.perf_counter() - t0, not address)


class RayDistributor:
    """Shards on Ray actors; a dead actor is replaced and its shard resubmitted (``max_retries`` per shard)."""
    name = "ray"

    def __init__(self, options: DistributeOptions):
        self.options = options
        self.start: RayStart | None = None
        self.retries: Counter = Counter()
        self.workers = 0

    def workers_for(self, ray, n_shards: int) -> int:
        o = self.options
        res = ray.cluster_resources()
        if o.gpus_per_worker > res.get("GPU", 0):   # the actors could never be placed: say so instead of waiting
            raise MolretError(f"--gpus-per-worker {o.gpus_per_worker:g}: the Ray cluster has "
                              f"{res.get('GPU', 0):g} GPU(s)")
        if o.workers:
            return max(1, min(o.workers, n_shards))
        k = int(res.get("CPU", 1) // o.cpus_per_worker)
        if o.gpus_per_worker > 0:
            k = min(k, int(res.get("GPU", 0) / o.gpus_per_worker))
        return max(1, min(k, n_shards))

    def run(self, job, shards: list, on_done) -> dict:
        ray = import_ray()
        from ray.exceptions import RayActorError, RayTaskError
        self.start = ray_start(self.options)
        try:
            o = self.options
            actor_class = ray.remote(num_cpus=o.cpus_per_worker, num_gpus=o.gpus_per_worker or None,
                                     max_restarts=0)(_RayWorker)
            job_ref = ray.put(job)
            queue = deque(shards)
            self.workers = self.workers_for(ray, len(shards))
            idle = [actor_class.remote(job_ref) for _ in range(self.workers)]
            pending, results = {}, {}
            while queue or pending:
                while queue and idle:
                    actor = idle.pop()
                    shard = queue.popleft()
                    pending[actor.run.remote(shard)] = (actor, shard)
                done, _ = ray.wait(list(pending), num_returns=1)
                actor, shard = pending.pop(done[0])
                try:
                    results[shard] = ray.get(done[0])
                except RayActorError as e:
                    if getattr(e, "actor_init_failed", False):
                        why = str(e).strip().splitlines()[-1][:300]
                        raise MolretError(f"a Ray worker could not start (shard {shard}): {why}") from None
                    self.retries[shard] += 1
                    if self.retries[shard] > o.max_retries:
                        raise MolretError(f"shard {shard}: its worker died {self.retries[shard]} times") from None
                    log.warning(f"shard {shard}: its worker died; redoing the shard on a new worker")
                    queue.appendleft(shard)
                    idle.append(actor_class.remote(job_ref))
                    continue
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, MolretError):
                        raise MolretError(str(cause)) from None
                    raise MolretError(f"shard {shard} failed: {str(cause or e).splitlines()[0][:300]}") from None
                idle.append(actor)
                on_done(shard, results[shard])
            for actor in idle:
                ray.kill(actor)
            return results
        finally:
            if self.start is not None and self.start.started_here:
                ray.shutdown()


# ---------------------------------------------------------------- test hook

def die_once(marker: str, *_args) -> None:
    """Test hook: the first worker that calls it (atomically creating ``marker``) dies at once,
    as a killed worker would; later calls do nothing."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(17)
