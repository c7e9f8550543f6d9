"""Latency of a running serve.py: N queries (descriptions from val.tsv) sent
to GET /api/search at a given concurrency, over the loopback only.

    python serve.py --model runs/web/best.pt --library data/raw.zip --port 8765 &
    python bench/serve_latency.py --url http://127.0.0.1:8765/ --queries 500 --concurrency 10

Reports, as p50/p95: the client-side latency (request sent -> JSON parsed),
the server-side ``elapsed_ms`` of each response (arrival in the handler ->
results, waiting for the search worker included) and its ``search_ms`` (the
search itself: text encoding + nearest neighbours); plus the throughput.
The server searches one query at a time on a CPU, so at concurrency C a
request mostly waits for the C - 1 before it. ``--page`` times the HTML page
(``/?q=...``: the same search plus drawing the k structures) instead.
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

DATA = Path("/work/shared/data/altegrad")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def read_queries(path: Path, n: int) -> list:
    texts = [line.split("\t", 1)[1].strip() for line in path.read_text(encoding="utf-8").splitlines()
             if "\t" in line and line.split("\t", 1)[1].strip()]
    if not texts:
        raise SystemExit(f"error: no cid<TAB>description lines in {path}")
    return [texts[i % len(texts)][:2000] for i in range(n)]


def pct(values, p: float) -> float:
    """p-th percentile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000/", help="base URL of the running server (loopback only)")
    p.add_argument("--val", default=str(DATA / "val.tsv"), help="cid<TAB>description file giving the queries")
    p.add_argument("--queries", type=int, default=500, help="queries sent (val.tsv lines, in order)")
    p.add_argument("--concurrency", type=int, default=10, help="requests in flight at once")
    p.add_argument("-k", type=int, default=10, help="results per query")
    p.add_argument("--warmup", type=int, default=10, help="queries sent first, not timed")
    p.add_argument("--page", action="store_true", help="time the HTML page (/?q=...) instead of /api/search")
    p.add_argument("--json-out", help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    import httpx
    host = urlsplit(args.url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"error: --url must be on the loopback (127.0.0.1), not {host!r}")
    base = args.url.rstrip("/")
    queries = read_queries(Path(args.val), args.queries)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    client = httpx.Client(timeout=120, limits=limits)
    health = client.get(base + "/api/health").json()
    path = "/" if args.page else "/api/search"

    lock = threading.Lock()
    client_ms, server_ms, search_ms, errors = [], [], [], []

    def one(q: str, timed: bool = True):
        t0 = time.perf_counter()
        r = client.get(base + path, params={"q": q, "k": args.k})
        ms = (time.perf_counter() - t0) * 1e3
        ok = r.status_code == 200
        body = r.json() if ok and not args.page else None
        if not timed:
            return
        with lock:
            if not ok:
                errors.append(f"{r.status_code}: {r.text[:200]}")
                return
            client_ms.append(ms)
            if body is not None:
                server_ms.append(body["elapsed_ms"])
                search_ms.append(body.get("search_ms", body["elapsed_ms"]))

    for i in range(args.warmup):
        one(f"warm-up query {i}: a small organic molecule", timed=False)
    before = client.get(base + "/api/health").json().get("searches", {})
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(one, queries))
    wall = time.perf_counter() - t0
    after = client.get(base + "/api/health").json().get("searches", {})
    client.close()
    worker = None
    if before and after and after["queries"] > before["queries"]:
        nq, nb = after["queries"] - before["queries"], after["batches"] - before["batches"]
        worker = {"batches": nb, "mean_batch": round(nq / max(nb, 1), 2),
                  "compute_ms_per_batch": round((after["busy_s"] - before["busy_s"]) * 1e3 / max(nb, 1), 1),
                  "compute_ms_per_query": round((after["busy_s"] - before["busy_s"]) * 1e3 / nq, 1)}

    res = {"url": args.url, "endpoint": path, "queries": len(queries), "concurrency": args.concurrency, "k": args.k,
           "errors": len(errors), "wall_s": round(wall, 2), "throughput_qps": round(len(client_ms) / wall, 1),
           "client_ms": {"p50": round(pct(client_ms, 50), 1), "p95": round(pct(client_ms, 95), 1),
                         "mean": round(statistics.mean(client_ms), 1), "max": round(max(client_ms), 1)}
           if client_ms else None,
           "server_ms": {"p50": round(pct(server_ms, 50), 1), "p95": round(pct(server_ms, 95), 1),
                         "mean": round(statistics.mean(server_ms), 1), "max": round(max(server_ms), 1)}
           if server_ms else None,
           "search_ms": {"p50": round(pct(search_ms, 50), 1), "p95": round(pct(search_ms, 95), 1),
                         "mean": round(statistics.mean(search_ms), 1), "max": round(max(search_ms), 1)}
           if search_ms else None,
           "worker": worker, "molecules": health.get("molecules"), "backend": health.get("backend"), "cpu": cpu_model()}
    print(f"{res['queries']} queries to {path} at concurrency {res['concurrency']} (k={args.k}) over "
          f"{res['molecules']:,} molecules ({res['backend']}); CPU: {res['cpu']}")
    if res["client_ms"]:
        c = res["client_ms"]
        print(f"client latency: p50 {c['p50']} ms, p95 {c['p95']} ms (mean {c['mean']}, max {c['max']})")
    if res["server_ms"]:
        s = res["server_ms"]
        print(f"server time per request (elapsed_ms, waiting for the search worker included): p50 {s['p50']} ms, "
              f"p95 {s['p95']} ms (mean {s['mean']}, max {s['max']})")
    if res["search_ms"]:
        s = res["search_ms"]
        print(f"search itself (search_ms: text encoding + nearest neighbours): p50 {s['p50']} ms, p95 {s['p95']} ms "
              f"(mean {s['mean']}, max {s['max']})")
    if worker:
        print(f"search worker: {worker['batches']} batches of {worker['mean_batch']} queries on average, "
              f"{worker['compute_ms_per_batch']} ms compute per batch ({worker['compute_ms_per_query']} ms per query)")
    print(f"throughput {res['throughput_qps']} queries/s over {res['wall_s']} s; errors: {res['errors']}")
    for e in errors[:5]:
        print(f"  {e}", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
