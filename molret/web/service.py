"""The search service behind serve.py's page: a worker thread that owns the engine, model facts, request checks.

``QueryBatcher`` runs the searches in arrival order (batched on a GPU);
``SearchService`` is what the app (molret.web.app) and the pages
(molret.web.pages) read; ``parse_query``/``parse_k`` refuse bad requests.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

DEFAULT_K = 10
MAX_K = 100
MAX_QUERY_CHARS = 2000
MAX_BATCH_GPU = 16                # queries encoded together by the worker on a GPU (CPU: 1)
SEARCH_TIMEOUT_S = 120.0          # a request waits at most this long for its results
GENERIC_EXAMPLES = (
    "The molecule is a monocarboxylic acid that is benzoic acid substituted by a hydroxy group at position 2.",
    "The molecule is a steroid ester obtained by formal condensation of the hydroxy group of testosterone with "
    "acetic acid.",
    "The molecule is an aromatic amine that is aniline substituted by a chloro group at position 4.",
)


class BadRequest(Exception):
    """A request the page cannot answer: a 4xx with this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ engine

class QueryBatcher:
    """Runs ``engine.search`` on one worker thread, batching the queries
    waiting together (at most ``max_batch``: 1 on a CPU, 16 on a GPU).

    ``search(query, k)`` blocks its caller until the worker has answered.
    The engine (torch model, index) is only ever used from the worker.
    """

    def __init__(self, engine, max_batch: int | None = None, timeout: float = SEARCH_TIMEOUT_S):
        if max_batch is None:
            on_cpu = getattr(getattr(engine, "device", None), "type", "cpu") == "cpu"
            max_batch = 1 if on_cpu else MAX_BATCH_GPU
        self.engine, self.max_batch, self.timeout = engine, max(1, int(max_batch)), timeout
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.queries = self.batches = 0     # answered by the worker
        self.busy_s = 0.0                   # worker time spent searching
        self._thread = threading.Thread(target=self._work, name="molret-search", daemon=True)
        self._thread.start()

    def search(self, query: str, k: int) -> list:
        return self.search_timed(query, k)[0]

    def search_timed(self, query: str, k: int) -> tuple[list, float]:
        """(hits, milliseconds the worker spent on the batch holding this query)."""
        if self._closed or not self._thread.is_alive():
            raise RuntimeError("the search worker has stopped")
        fut: Future = Future()
        self._queue.put((query, k, fut))
        try:
            return fut.result(self.timeout)
        except FutureTimeout:
            fut.cancel()
            raise TimeoutError(f"no result within {self.timeout:.0f} s") from None

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, stop = [item], False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            batch = [b for b in batch if b[2].set_running_or_notify_cancel()]
            if batch:
                self._run(batch)
            if stop:
                return

    def stats(self) -> dict:
        return {"queries": self.queries, "batches": self.batches, "busy_s": round(self.busy_s, 4)}

    def _run(self, batch: list) -> None:
        t0 = time.perf_counter()
        try:
            results = self.engine.search([q for q, _, _ in batch], max(k for _, k, _ in batch))
            if len(results) != len(batch):
                raise RuntimeError(f"the engine answered {len(results)} of {len(batch)} queries")
        except BaseException as e:  # noqa: BLE001 - every failure goes back to its request
            self.busy_s += time.perf_counter() - t0
            if len(batch) == 1:
                batch[0][2].set_exception(e)
            else:  # find the query that fails: the others still get their results
                for item in batch:
                    self._run([item])
            return
        seconds = time.perf_counter() - t0
        self.busy_s += seconds
        self.batches += 1
        self.queries += len(batch)
        for (_, k, fut), hits in zip(batch, results):
            fut.set_result((list(hits[:k]), seconds * 1e3))


# ------------------------------------------------------------------- facts

def checkpoint_facts(path) -> dict:
    """Epoch and val metrics stored in a checkpoint (empty when unreadable:
    the model itself is loaded and checked by ``load_model``)."""
    try:
        import torch
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - facts are decoration
        return {}
    if not isinstance(ckpt, dict):
        return {}
    metrics = ckpt.get("metrics") if isinstance(ckpt.get("metrics"), dict) else {}
    metrics = {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    epoch = ckpt.get("epoch")
    return {"epoch": int(epoch) if isinstance(epoch, int) else None, "metrics": metrics}


def example_queries(library, n: int = 3) -> list:
    """A few descriptions from the library's data folder (``val.tsv`` /
    ``train.tsv`` next to it), else generic ones."""
    p = Path(library)
    folder = p if p.is_dir() else p.parent
    for name in ("val.tsv", "train.tsv"):
        f = folder / name
        try:
            if not f.is_file():
                continue
            out = []
            with open(f, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if "\t" in line:
                        text = " ".join(line.split("\t", 1)[1].split())
                        if 0 < len(text) <= MAX_QUERY_CHARS:
                            out.append(text)
                    if len(out) == n:
                        break
            if out:
                return out
        except OSError:
            continue
    return list(GENERIC_EXAMPLES[:n])


def metric_label(name: str) -> str:
    return {"lrap": "LRAP", "mrr": "MRR", "hits@1": "Hits@1", "hits@10": "Hits@10", "mean_rank": "mean rank",
            "pool_lrap": "pool LRAP", "names_pool_lrap_reranked": "pool LRAP with names, re-ranked"}.get(name, name)


class SearchService:
    """What the app needs: the batcher, and facts about the model and library."""

    def __init__(self, engine, model_path, library_path, facts: dict | None = None, examples=None,
                 device: str = "cpu", batcher: QueryBatcher | None = None):
        self.engine = engine
        self.batcher = batcher or QueryBatcher(engine)
        self.model_path, self.library_path = Path(model_path), Path(library_path)
        self.facts = facts if facts is not None else checkpoint_facts(model_path)
        self.examples = list(examples) if examples is not None else example_queries(library_path)
        self.device = str(device)
        self.size = len(engine)
        self.with_smiles = sum(1 for s in engine.smiles if s)
        self.model_desc = engine.embedder.describe()

    def close(self) -> None:
        self.batcher.close()

    def search(self, query: str, k: int) -> tuple[list, float, float]:
        """(hits, ms in the server incl. waiting for the worker, ms of the search itself)."""
        t0 = time.perf_counter()
        hits, search_ms = self.batcher.search_timed(query, k)
        return hits, (time.perf_counter() - t0) * 1e3, search_ms

    def health(self) -> dict:
        return {"status": "ok", "molecules": self.size, "with_smiles": self.with_smiles,
                "library": self.library_path.name, "model": model_name(self.model_path),
                "backend": self.engine.index.backend, "device": self.device,
                "metrics": self.facts.get("metrics", {}), "searches": self.batcher.stats()}


def model_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


# -------------------------------------------------------------- validation

def parse_query(q) -> str:
    if q is None:
        raise BadRequest("missing query: give ?q=TEXT")
    if len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"query too long: {len(q):,} characters (at most {MAX_QUERY_CHARS:,})")
    q = q.strip()
    if not q:
        raise BadRequest("empty query: describe a molecule")
    return q


def parse_k(k) -> int:
    if k is None or k == "":
        return DEFAULT_K
    s = k.strip()
    if not (s.isascii() and s.isdigit() and len(s) <= 6) or not 1 <= int(s) <= MAX_K:
        shown = k if len(k) <= 20 else k[:20] + "..."
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K} (got {shown!r})")
    return int(s)
