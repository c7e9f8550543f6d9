"""The command line of serve.py: its flags, then the checks, the model and library (through the API) and the server."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from molret.cli.flags import add_claims_arg, add_names_arg
from molret.cli.common import add_inference_args, add_library_args
from molret.cli.search import CLAIMS_DEFAULT, open_search, report_library
from molret.library.reading import library_kind
from molret.search.engine import QUERY_THREADS
from molret.search.index import BACKENDS, FAISS_AUTO_THRESHOLD
from molret.utils.errors import MolretError
from molret.web.app import (DEFAULT_HOST, DEFAULT_PORT, Prepared, bind_socket, create_app, limit_search_threads,
                            make_server, warn_if_exposed, page_url)
from molret.web.service import SearchService


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="serve.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="A local web page (and JSON API) to search a molecule library by description with a trained "
                    "checkpoint. The library's graph embeddings are computed once and cached, as for search.py.")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="checkpoint written by main.py (best.pt/last.pt), or an ensemble's model file (the model.pt "
                        "of recipe.py, ensemble_method.py --save-model)")
    add_names_arg(p, None, "as search.py --names; default: opsin with the weights of a model file that carries "
                           "them (a recipe's model.pt), none for a checkpoint")
    add_claims_arg(p, CLAIMS_DEFAULT)
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
    p.add_argument("--query-threads", type=int, default=QUERY_THREADS,
                   help="torch CPU threads for encoding the queries (0: torch's default)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help=f"exact search: numpy, or FAISS IndexFlatIP; auto = FAISS above {FAISS_AUTO_THRESHOLD:,} "
                        f"molecules")
    add_inference_args(p, batch_help="graph embedding batch size; the model's eval batch size when not given")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    add_library_args(p)
    return p


def prepare(args) -> Prepared:
    """Everything ``serve`` does before serving: the checks, the listening
    socket (so that a port in use fails before the model is loaded), the
    model and library (``open_search``), the app and its uvicorn server."""

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
    return Prepared(server, sock, svc, page_url(args.host, port))


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
