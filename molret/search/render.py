"""HTML rendering of search results, shared by ``search.py --html`` (a
standalone report file) and the web page of ``serve.py`` (molret.web.app).

A result is anything with ``rank``, ``id``, ``score`` and ``smiles``
attributes, and optionally ``decoded`` (``molret.search.engine.Hit``): a SMILES
decoded from a challenge graph gets a short note that it carries no
stereochemistry.  Every text that comes from a user, a
library or a checkpoint is escaped here; the only raw markup inserted is the
SVG that RDKit draws.
"""
from __future__ import annotations

import functools
import html
from typing import Sequence

from molret.chem.graph_decoder import NO_STEREO_NOTE

SVG_WIDTH, SVG_HEIGHT = 240, 190
PUBCHEM_URL = "https://pubchem.ncbi.nlm.nih.gov/compound/{}"

CARD_CSS = (
    ".grid{display:flex;flex-wrap:wrap;gap:10px;margin:1em 0 2em}"
    " .hit{border:1px solid #ccc;border-radius:4px;padding:6px;width:250px;font-size:12px;background:#fff}"
    " .hit svg{display:block} .hit code{word-break:break-all}"
    " .none{height:190px;display:flex;align-items:center;justify-content:center;color:#999;text-align:center}"
    " .meta{margin:4px 0} .smi{display:flex;gap:6px;align-items:flex-start}"
    " .smi code{flex:1} .unknown{color:#999;font-style:italic} .note{color:#777;font-size:11px;margin-top:2px}"
    " button.copy{font-size:11px;padding:1px 6px;cursor:pointer}")

REPORT_CSS = ("body{font-family:sans-serif;margin:1.5em} .q{background:#f4f4f8;padding:.8em;"
              "border-left:4px solid #557;white-space:pre-wrap} " + CARD_CSS)

# Copy buttons: the Clipboard API where the page is a secure context
# (https, 127.0.0.1/localhost), else a temporary selected textarea.
COPY_JS = """\
document.addEventListener('click', function (ev) {
  var b = ev.target.closest ? ev.target.closest('button.copy') : null;
  if (!b) return;
  var text = b.getAttribute('data-smiles') || '';
  function done(ok) { var t = b.textContent; b.textContent = ok ? 'copied' : 'copy failed';
                      setTimeout(function () { b.textContent = t; }, 1200); }
  function fallback() {
    var ta = document.createElement('textarea'); ta.value = text; ta.setAttribute('readonly', '');
    ta.style.position = 'fixed'; ta.style.opacity = '0'; document.body.appendChild(ta); ta.select();
    var ok = false; try { ok = document.execCommand('copy'); } catch (e) {}
    document.body.removeChild(ta); done(ok);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
  } else { fallback(); }
});
"""


@functools.lru_cache(maxsize=4096)
def molecule_svg(smiles: str | None, width: int = SVG_WIDTH, height: int = SVG_HEIGHT) -> str | None:
    """Inline SVG of a SMILES drawn by RDKit (None if it cannot be drawn)."""
    if not smiles:
        return None
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem.Draw import rdMolDraw2D
        RDLogger.DisableLog("rdApp.*")
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return None
        drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
        rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
        drawer.FinishDrawing()
        svg = drawer.GetDrawingText()
    except Exception:  # drawing is decoration: never fail the search for it
        return None
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def is_cid(ident) -> bool:
    """A PubChem compound id: all ASCII digits."""
    return isinstance(ident, str) and ident.isascii() and ident.isdigit()


def render_card(hit) -> str:
    """One result: structure, rank, id (PubChem link for a CID), score, SMILES with a copy button."""
    e = html.escape
    smiles = hit.smiles or None
    svg = molecule_svg(smiles)
    if svg:
        pic = svg
    elif smiles:
        pic = "<div class='none'>structure cannot be drawn</div>"
    else:
        pic = "<div class='none'>structure unknown<br>(no SMILES for this id)</div>"
    ident = e(str(hit.id))
    if is_cid(hit.id):
        ident = (f"<a class='id' href='{e(PUBCHEM_URL.format(hit.id))}' target='_blank' rel='noopener noreferrer'"
                 f" title='PubChem compound {ident}'>CID {ident}</a>")
    else:
        ident = f"<span class='id'>{ident}</span>"
    if smiles:
        smi = (f"<div class='smi'><code>{e(smiles)}</code><button type='button' class='copy' "
               f"data-smiles='{e(smiles)}' title='copy the SMILES'>copy</button></div>")
        if getattr(hit, "decoded", False):
            smi += f"<div class='note' title='{e(NO_STEREO_NOTE)}'>decoded from the graph &middot; no stereo</div>"
    else:
        smi = "<div class='smi'><span class='unknown'>SMILES unknown</span></div>"
    return (f"<div class='hit' data-rank='{int(hit.rank)}'>{pic}<div class='meta'><b>#{int(hit.rank)}</b> {ident}"
            f" &middot; score <span class='score'>{float(hit.score):.4f}</span></div>{smi}</div>")


def render_cards(hits: Sequence) -> str:
    return "<div class='grid'>" + "".join(render_card(h) for h in hits) + "</div>"


def html_report(queries: Sequence[str], results: Sequence[Sequence], library: str, model: str) -> str:
    """A standalone HTML page with the top-k structures of each query (search.py --html)."""
    e = html.escape
    parts = ["<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>molret search</title><style>",
             REPORT_CSS, "</style></head><body>",
             f"<h1>molret search</h1><p>library: <code>{e(library)}</code><br>model: <code>{e(model)}</code></p>"]
    for n, (q, hits) in enumerate(zip(queries, results), 1):
        parts.append(f"<h2>Query {n}</h2><div class='q'>{e(q)}</div>")
        parts.append(render_cards(hits))
    if any(getattr(h, "decoded", False) and h.smiles for hits in results for h in hits):
        parts.append(f"<p class='note'>SMILES marked &ldquo;decoded from the graph&rdquo;: {e(NO_STEREO_NOTE)}.</p>")
    parts.append(f"<script>{COPY_JS}</script></body></html>\n")
    return "".join(parts)
