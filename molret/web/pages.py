"""The HTML of serve.py's search page: the form, the facts line, the result cards and the error pages.

Pure functions of a ``molret.web.service.SearchService`` and the request's
values; the app and its routes are molret.web.app.
"""
from __future__ import annotations

import html
from urllib.parse import quote, urlencode

from molret.search.render import CARD_CSS, render_cards
from molret.web.service import DEFAULT_K, MAX_K, MAX_QUERY_CHARS, SearchService, metric_label, model_name

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
    model = f"model <b>{e(model_name(svc.model_path))}</b> ({e(svc.model_desc)})"
    facts = svc.facts or {}
    metrics = facts.get("metrics") or {}
    shown = [f"{metric_label(k)} {v:.3f}" for k, v in metrics.items() if k in ("lrap", "mrr", "hits@1", "hits@10")]
    # a model file: the pool report its weights were fitted on (learned, and with names re-ranked)
    shown += [f"{metric_label(k)} {metrics[k]:.3f}" for k in ("pool_lrap", "names_pool_lrap_reranked")
              if k in metrics and "lrap" not in metrics]
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
