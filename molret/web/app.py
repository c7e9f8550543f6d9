"""The web app of serve.py: routes, error answers and the server of the molecule search page.

The pages are molret.web.pages, the search worker and request checks
molret.web.service.

The checkpoint and the library are loaded once through the search engine
(``molret.cli.serve.prepare``, through ``molret.MolRetriever``: cached library embeddings), then a FastAPI
app serves

* ``/``: a query box, k, example queries, and the results as cards (drawn
  structure, id, score, rank, SMILES with a copy button, PubChem link for a
  CID); ``/?q=TEXT&k=N`` renders the results server-side, so a result page
  is a shareable link;
* ``GET /api/search?q=TEXT&k=N``: ``{"query", "k", "results": [{"rank", "id",
  "score", "smiles"}], "elapsed_ms", "search_ms"}`` (time in the server, and
  of the search itself: encoding + nearest neighbours); ``GET /api/health``.

Searches run in arrival order on one worker thread that owns the engine
(``QueryBatcher``). On a CPU one query at a time (padding costs more than
batching saves: docs/experiments.md "Web page latency"); on a GPU the queries
waiting together are encoded and searched as one batch. A failing batch is retried query by query, so an
error reaches only the request that caused it.

Bad requests get a 4xx with a JSON (``/api``) or HTML message, never a
traceback; an unexpected failure is logged with its traceback and answered
with a 5xx message to that request only.
"""
import errno
import logging
import socket
import sys

from molret.utils.errors import MolretError
from molret.search.render import COPY_JS
from molret.web.pages import render_message, render_page
from molret.web.service import (DEFAULT_K, MAX_QUERY_CHARS, BadRequest, SearchService, parse_k,
                                parse_query)

log = logging.getLogger("molret.web.app")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITY_HEADERS = {
    # Results are text and RDKit SVG only: no inline script (the copy buttons come from /app.js).
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


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
    """The FastAPI app serving ``svc``: the page, the JSON API, and error answers that are never tracebacks."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    app = FastAPI(title="molret search", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = svc
    add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        status, page = search_page(svc, request)
        return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)

    @app.get("/api/search")
    def api_search(request: Request):
        status, body = search_json(svc, request)
        return JSONResponse(body, status_code=status, headers=SECURITY_HEADERS)

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


def error_response(request, status: int, message: str):
    """The error as JSON under /api/, else as an HTML page."""
    from fastapi.responses import HTMLResponse, JSONResponse
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)
    return HTMLResponse(render_message(status, message), status_code=status, headers=SECURITY_HEADERS)


def add_error_handlers(app) -> None:
    """404/405, bad parameters and unexpected exceptions: a message, never a traceback."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

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


def failure(query: str, exc: BaseException) -> tuple[int, str]:
    """Log a failed search with its traceback; the request gets a message only."""
    if isinstance(exc, MolretError):
        log.warning(f"query {query[:80]!r} refused: {exc}")
        return 422, str(exc)
    if isinstance(exc, TimeoutError):
        log.error(f"query {query[:80]!r} timed out: {exc}")
        return 503, f"the search took too long ({exc}); try again"
    log.error(f"query {query[:80]!r} failed", exc_info=exc)
    return 500, f"the search failed ({type(exc).__name__}); the details are in the server log"


def search_page(svc: SearchService, request) -> tuple[int, str]:
    """(status, HTML) of ``/`` and ``/?q=TEXT&k=N``: the results rendered server-side."""
    params = request.query_params
    q, k_raw = params.get("q"), params.get("k")
    if q is None and k_raw is None:
        return 200, render_page(svc)
    shown_q = (q or "")[:MAX_QUERY_CHARS]
    try:
        k = parse_k(k_raw)
    except BadRequest as e:
        return e.status, render_page(svc, shown_q, DEFAULT_K, error=str(e))
    try:
        query = parse_query(q)
    except BadRequest as e:
        return e.status, render_page(svc, shown_q, k, error=str(e))
    try:
        hits, ms, _ = svc.search(query, k)
        return 200, render_page(svc, query, k, hits, ms)
    except Exception as exc:  # noqa: BLE001
        status, msg = failure(query, exc)
        return status, render_page(svc, query, k, error=msg)


def search_json(svc: SearchService, request) -> tuple[int, dict]:
    """(status, body) of ``/api/search?q=TEXT&k=N``."""
    params = request.query_params
    try:
        query, k = parse_query(params.get("q")), parse_k(params.get("k"))
    except BadRequest as e:
        return e.status, {"error": str(e)}
    try:
        hits, ms, search_ms = svc.search(query, k)
        return 200, {"query": query, "k": k,
                     "results": [{"rank": int(h.rank), "id": str(h.id), "score": round(float(h.score), 6),
                                  "smiles": h.smiles or None,
                                  "smiles_decoded": bool(getattr(h, "decoded", False) and h.smiles)}
                                 for h in hits],
                     "elapsed_ms": round(ms, 2), "search_ms": round(search_ms, 2)}
    except Exception as exc:  # noqa: BLE001
        status, msg = failure(query, exc)
        return status, {"error": msg}


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
    # algorithm and delayed ACKs delay every response with a body (docs/experiments.md "Web page latency").
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


def warn_if_exposed(host: str, out=None) -> bool:
    if host in LOOPBACK_HOSTS:
        return False
    print(f"warning: --host {host}: the page has no authentication; anyone who can reach this address can use it",
          file=out or sys.stderr)
    return True


def page_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def limit_search_threads(engine, n: int) -> None:
    """Queries are searched one batch at a time: FAISS's OpenMP threads
    (one per core by default) mostly wait on each other there, and on a busy
    machine they slow a search down (docs/experiments.md "Web page latency")."""
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
