"""A local web page to search a molecule library by description (serve.py).

The checkpoint and the library are loaded once through the search engine
(``molret.search.open_search``: cached library embeddings), then a FastAPI
app serves

* ``/``: a query box, k, example queries, and the results as cards (drawn
  structure, id, score, rank, SMILES with a copy button, PubChem link for a
  CID); ``/?q=TEXT&k=N`` renders the results server-side, so a result page
  is a shareable link;
* ``GET /api/search?q=TEXT&k=N``: ``{"query", "k", "results": [{"rank", "id",
  "score", "smiles"}], "elapsed_ms", "search_ms"}`` (time in the server, and
  of the search itself: encoding + nearest neighbours); ``GET /api/health``.

Searches run in arrival order on one worker thread that owns the engine
(``QueryBatcher``). On a CPU one query at a time (measured on 2 cores: a
batch of 5 val queries took 350 ms to encode, one by one 300 ms: padding
costs more than batching saves); on a GPU the queries waiting together are
encoded and searched as one batch (not measured here). A failing batch is retried query by query, so an
error reaches only the request that caused it.

Bad requests get a 4xx with a JSON (``/api``) or HTML message, never a
traceback; an unexpected failure is logged with its traceback and answered
with a 5xx message to that request only.
"""

import argparse
import errno
import html
import logging
import queue
import socket
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from urllib.parse import quote, urlencode

from .errors import MolretError
from .html_render import CARD_CSS, COPY_JS, render_cards

log = logging.getLogger("molret.web")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_K = 10
MAX_K = 100
MAX_QUERY_CHARS = 2000
MAX_BATCH_GPU = 16                # queries encoded together by the worker on a GPU (CPU: 1)
SEARCH_TIMEOUT_S = 120.0          # a request waits at most this long for its results
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
GENERIC_EXAMPLES = (
    "The molecule is a monocarboxylic acid that is benzoic acid substituted by a hydroxy group at position 2.",
    "The molecule is a steroid ester obtained by formal condensation of the hydroxy group of testosterone with "
    "acetic acid.",
    "The molecule is an aromatic amine that is aniline substituted by a chloro group at position 4.",
)
SECURITY_HEADERS = {
    # Results are text and RDKit SVG only: no inline script (the copy buttons come from /app.js).
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


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


def _metric_label(name: str) -> str:
    return {"lrap": "LRAP", "mrr": "MRR", "hits@1": "Hits@1", "hits@10": "Hits@10",
            "mean_rank": "mean rank"}.get(name, name)


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
        cfg = engine.cfg.model
        text_model = str(cfg.text_model)
        if Path(text_model).exists():  # a local folder: its name only
            text_model = Path(text_model).name
        self.model_desc = f"{text_model} + {cfg.conv}, {cfg.embed_dim}-d"

    def close(self) -> None:
        self.batcher.close()

    def search(self, query: str, k: int) -> tuple[list, float, float]:
        """(hits, ms in the server incl. waiting for the worker, ms of the search itself)."""
        t0 = time.perf_counter()
        hits, search_ms = self.batcher.search_timed(query, k)
        return hits, (time.perf_counter() - t0) * 1e3, search_ms

    def health(self) -> dict:
        return {"status": "ok", "molecules": self.size, "with_smiles": self.with_smiles,
                "library": self.library_path.name, "model": _model_name(self.model_path),
                "backend": self.engine.index.backend, "device": self.device,
                "metrics": self.facts.get("metrics", {}), "searches": self.batcher.stats()}


def _model_name(path: Path) -> str:
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


# ------------------------------------------------------------------- pages

PAGE_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}"
    " header{background:#2d3a4f;color:#fff;padding:.8em 1.5em} header h1{margin:0;font-size:1.4em}"
    " header a{color:#fff;text-decoration:none} .facts{margin:.3em 0 0;font-size:13px;color:#d8deea}"
    " main{padding:1em 1.5em;max-width:1400px}"
    " form{display:flex;gap:.6em;align-items:flex-end;flex-wrap:wrap}"
    " textarea{flex:1;min-width:300px;font:inherit;font-size:14px;padding:.5em;height:4.2em}"
    " input[type=number]{width:4.5em;font:inherit;padding:.35em} label{font-size:14px}"
    " button[type=submit]{font:inherit;padding:.45em 1.4em;background:#2d3a4f;color:#fff;border:0;border-radius:4px;"
    "cursor:pointer} .examples{font-size:13px;margin:.6em 0;color:#555}"
    " .examples a{display:block;margin:.15em 0;color:#2a5db0;overflow:hidden;text-overflow:ellipsis;"
    "white-space:nowrap;max-width:1100px} .error{background:#fde8e8;border-left:4px solid #c33;padding:.6em .9em;"
    "margin:1em 0} .summary{font-size:14px;color:#444;margin-top:1.2em} .summary q{font-style:italic}"
    " footer{font-size:12px;color:#777;padding:1em 1.5em} "
)


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{PAGE_CSS}{CARD_CSS}</style>"
            "<script src='/app.js' defer></script></head><body>" + body + "</body></html>\n")


def _facts_line(svc: SearchService) -> str:
    e = html.escape
    lib = (f"library <b>{e(svc.library_path.name)}</b>: {svc.size:,} molecules"
           + (f" ({svc.with_smiles:,} with SMILES)" if svc.with_smiles < svc.size else ""))
    model = f"model <b>{e(_model_name(svc.model_path))}</b> ({e(svc.model_desc)})"
    facts = svc.facts or {}
    metrics = facts.get("metrics") or {}
    shown = [f"{_metric_label(k)} {v:.3f}" for k, v in metrics.items() if k in ("lrap", "mrr", "hits@1", "hits@10")]
    val = ""
    if shown:
        epoch = f"epoch {facts['epoch']}, " if facts.get("epoch") is not None else ""
        val = f" &middot; val {e(epoch)}" + e(", ".join(shown))
    return f"<p class='facts'>{lib} &middot; {model}{val} &middot; search: {e(svc.engine.index.backend)}</p>"


def render_page(svc: SearchService, query: str = "", k: int = DEFAULT_K, hits=None, elapsed_ms: float | None = None,
                error: str | None = None) -> str:
    e = html.escape
    parts = [f"<header><h1><a href='/'>molret</a> &middot; molecule search</h1>{_facts_line(svc)}</header><main>",
             "<form method='get' action='/' id='search'>"
             f"<textarea name='q' id='q' maxlength='{MAX_QUERY_CHARS}' required autofocus "
             "placeholder='Describe a molecule, e.g. &quot;The molecule is a monocarboxylic acid ...&quot;'>"
             f"{e(query)}</textarea>"
             f"<label>k <input type='number' name='k' id='k' min='1' max='{MAX_K}' value='{int(k)}'></label>"
             "<button type='submit' id='go'>Search</button></form>"]
    if svc.examples:
        links = "".join(f"<a href='/?{e(urlencode({'q': x, 'k': DEFAULT_K}, quote_via=quote))}' title='{e(x)}'>"
                        f"{e(x)}</a>" for x in svc.examples)
        parts.append(f"<div class='examples'>Examples:{links}</div>")
    if error:
        parts.append(f"<div class='error' role='alert'>{e(error)}</div>")
    if hits is not None:
        took = f" in {elapsed_ms:.0f} ms" if elapsed_ms is not None else ""
        parts.append(f"<p class='summary'>Top {len(hits)} of {svc.size:,} molecules for <q>{e(query)}</q>{took}</p>")
        parts.append(render_cards(hits))
    api = f"/api/search?{urlencode({'q': query or 'a carboxylic acid', 'k': k}, quote_via=quote)}"
    parts.append(f"</main><footer>JSON: <a href='{e(api)}'>{e(_short(api, 80))}</a> &middot; "
                 "<a href='/api/health'>/api/health</a></footer>")
    title = f"{query[:60]} - molret search" if query else "molret search"
    return _page(title, "".join(parts))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def render_message(status: int, message: str) -> str:
    e = html.escape
    return _page(f"{status} - molret search",
                 f"<header><h1><a href='/'>molret</a> &middot; molecule search</h1></header><main>"
                 f"<div class='error' role='alert'>{e(message)}</div><p><a href='/'>Back to the search page</a></p>"
                 "</main>")


# --------------------------------------------------------------------- app

class PathGuard:
    """ASGI middleware: a 400 for paths with ``..`` segments or NUL bytes
    (the app serves no files, but such a path is never legitimate)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            path = scope.get("path", "")
            raw = scope.get("raw_path") or b""
            if ".." in path or "\x00" in path or b".." in raw or b"%2e%2e" in raw.lower():
                from starlette.responses import HTMLResponse, JSONResponse
                msg = "bad path: '..' is not allowed"
                if path.startswith("/api/"):
                    resp = JSONResponse({"error": msg}, status_code=400, headers=SECURITY_HEADERS)
                else:
                    resp = HTMLResponse(render_message(400, msg), status_code=400, headers=SECURITY_HEADERS)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(svc: SearchService):
    """The FastAPI app serving ``svc``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="molret search", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = svc

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def error_response(request: Request, status: int, message: str):
        if is_api(request):
            return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)
        return HTMLResponse(render_message(status, message), status_code=status, headers=SECURITY_HEADERS)

    def failure(request: Request, query: str, exc: BaseException):
        """Log a failed search with its traceback; the request gets a message only."""
        if isinstance(exc, MolretError):
            log.warning(f"query {query[:80]!r} refused: {exc}")
            return 422, str(exc)
        if isinstance(exc, TimeoutError):
            log.error(f"query {query[:80]!r} timed out: {exc}")
            return 503, f"the search took too long ({exc}); try again"
        log.error(f"query {query[:80]!r} failed", exc_info=exc)
        return 500, f"the search failed ({type(exc).__name__}); the details are in the server log"

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        msg = {404: f"not found: {request.url.path}", 405: f"method {request.method} not allowed here"}.get(
            exc.status_code, str(exc.detail))
        return error_response(request, exc.status_code, msg)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(request, 400, "bad request parameters")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug: logged (with traceback) by the server
        return error_response(request, 500, f"internal error ({type(exc).__name__}); the details are in the server log")

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        params = request.query_params
        q, k_raw = params.get("q"), params.get("k")
        if q is None and k_raw is None:
            return HTMLResponse(render_page(svc), headers=SECURITY_HEADERS)
        shown_q = (q or "")[:MAX_QUERY_CHARS]
        try:
            k = parse_k(k_raw)
        except BadRequest as e:
            return HTMLResponse(render_page(svc, shown_q, DEFAULT_K, error=str(e)), status_code=e.status,
                                headers=SECURITY_HEADERS)
        try:
            query = parse_query(q)
        except BadRequest as e:
            return HTMLResponse(render_page(svc, shown_q, k, error=str(e)), status_code=e.status,
                                headers=SECURITY_HEADERS)
        try:
            hits, ms, _ = svc.search(query, k)
            page = render_page(svc, query, k, hits, ms)
        except Exception as exc:  # noqa: BLE001
            status, msg = failure(request, query, exc)
            return HTMLResponse(render_page(svc, query, k, error=msg), status_code=status, headers=SECURITY_HEADERS)
        return HTMLResponse(page, headers=SECURITY_HEADERS)

    @app.get("/api/search")
    def api_search(request: Request):
        params = request.query_params
        try:
            query, k = parse_query(params.get("q")), parse_k(params.get("k"))
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=e.status, headers=SECURITY_HEADERS)
        try:
            hits, ms, search_ms = svc.search(query, k)
            body = {"query": query, "k": k,
                    "results": [{"rank": int(h.rank), "id": str(h.id), "score": round(float(h.score), 6),
                                 "smiles": h.smiles or None} for h in hits],
                    "elapsed_ms": round(ms, 2), "search_ms": round(search_ms, 2)}
        except Exception as exc:  # noqa: BLE001
            status, msg = failure(request, query, exc)
            return JSONResponse({"error": msg}, status_code=status, headers=SECURITY_HEADERS)
        return JSONResponse(body, headers=SECURITY_HEADERS)

    @app.get("/api/health")
    def api_health():
        return JSONResponse(svc.health(), headers=SECURITY_HEADERS)

    @app.get("/app.js")
    def app_js():
        return Response(COPY_JS, media_type="text/javascript; charset=utf-8",
                        headers={**SECURITY_HEADERS, "cache-control": "max-age=3600"})

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    app.add_middleware(PathGuard)
    return app


# ------------------------------------------------------------------ server

def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); MolretError when impossible
    (port in use, unknown host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise MolretError(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    # proto IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on each connection; without it Nagle's
    # algorithm and delayed ACKs added ~40 ms to every response with a body.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        hint = " (is another server running there? choose another --port)" if e.errno == errno.EADDRINUSE else ""
        raise MolretError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    sock.set_inheritable(True)
    return sock


def make_server(app, log_level: str = "info", access_log: bool = True):
    """A uvicorn server for ``app`` (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="off",
                            timeout_graceful_shutdown=5, server_header=False)
    return uvicorn.Server(config)


def build_parser() -> argparse.ArgumentParser:
    from .search import BACKENDS, FAISS_AUTO_THRESHOLD, QUERY_THREADS, add_library_args
    p = argparse.ArgumentParser(
        prog="serve.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="A local web page (and JSON API) to search a molecule library by description with a trained "
                    "checkpoint. The library's graph embeddings are computed once and cached, as for search.py.")
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint written by main.py (best.pt/last.pt)")
    p.add_argument("--library", required=True, metavar="FILE",
                   help="SMILES library (.smi/.csv/.tsv/.sdf[.gz]) or graph library (raw.zip, folder of .graph files, "
                        "or a folder with raw/ or raw.zip and optionally cids.txt)")
    p.add_argument("--smiles-map", metavar="TSV", action="append",
                   help="id -> SMILES table for graph libraries (e.g. ChEBI-20 validation.txt); may be repeated")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on; the page has no authentication: keep it on the loopback")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free port)")
    p.add_argument("--cache-dir", help="cache folder for the library embeddings (default: next to the library, or "
                                       "~/.cache/molret when its folder is read-only)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads for embedding the library (0: torch's default)")
    p.add_argument("--query-threads", type=int, default=QUERY_THREADS,
                   help="torch CPU threads for encoding the queries (0: torch's default)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help=f"exact search: numpy, or FAISS IndexFlatIP; auto = FAISS above {FAISS_AUTO_THRESHOLD:,} "
                        f"molecules")
    p.add_argument("--batch-size", type=int, help="graph embedding batch size; the model's eval batch size when not given")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    add_library_args(p)
    return p


def warn_if_exposed(host: str, out=None) -> bool:
    if host in LOOPBACK_HOSTS:
        return False
    print(f"warning: --host {host}: the page has no authentication; anyone who can reach this address can use it",
          file=out or sys.stderr)
    return True


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def limit_search_threads(engine, n: int) -> None:
    """Queries are searched one batch at a time: FAISS's OpenMP threads
    (one per core by default) mostly wait on each other there, and on a busy
    machine they made one search ~3x slower (measured: 29 ms with 2 threads,
    10 ms with 1 on 2 shared cores, 102,980 x 256)."""
    if n > 0 and getattr(engine.index, "backend", None) == "faiss":
        try:
            import faiss
            faiss.omp_set_num_threads(n)
        except (ImportError, AttributeError):
            pass


class Prepared:
    """A server ready to run: ``server.run(sockets=[sock])``, then ``close()``."""

    def __init__(self, server, sock: socket.socket, service: SearchService, url: str):
        self.server, self.sock, self.service, self.url = server, sock, service, url

    def close(self) -> None:
        self.service.close()
        self.sock.close()


def prepare(args) -> Prepared:
    """Everything ``serve`` does before serving: the checks, the listening
    socket (so that a port in use fails before the model is loaded), the
    model and library (``open_search``), the app and its uvicorn server."""
    from .search import library_kind, open_search, report_library

    if not 0 <= args.port <= 65535:
        raise MolretError(f"--port must be from 0 to 65535 (got {args.port})")
    warn_if_exposed(args.host)
    if not Path(args.model).is_file():
        raise MolretError(f"checkpoint {args.model} does not exist")
    library_kind(args.library)  # a missing library fails before anything is loaded
    sock = bind_socket(args.host, args.port)
    try:
        port = sock.getsockname()[1]
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s:     %(name)s: %(message)s")
        progress = not args.no_progress and sys.stderr.isatty()
        print(f"loading {args.model} and the library {args.library} (a library new to this model is embedded "
              f"once, then cached)", file=sys.stderr, flush=True)
        engine = open_search(args, progress)
        report_library(engine)
        limit_search_threads(engine, args.query_threads)
        svc = SearchService(engine, args.model, args.library, device=str(engine.device))
        server = make_server(create_app(svc), access_log=not args.no_access_log)
    except BaseException:
        sock.close()
        raise
    return Prepared(server, sock, svc, _url(args.host, port))


def serve(args) -> dict:
    """Load the checkpoint and the library, then serve until interrupted."""
    ready = prepare(args)
    print(f"serving {ready.service.size:,} molecules on {ready.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        ready.server.run(sockets=[ready.sock])
    except KeyboardInterrupt:
        pass
    finally:
        ready.close()
    return {"url": ready.url}
