"""How many query subjects the name sources resolve, by class of name, and the val identities they give.

For the val and the test queries: the share whose subject name resolves (any source, any spelling,
any rule), the unresolved ones sorted into classes (glycan notation, charge suffix, lipid or CoA,
salt or hydrate, one-word trivial name, other), the resolved ones by source; for val, how many give
the true molecule's graph exactly (identity keys) or as one of its forms, candidates the pool
(val + test molecules); the subjects built from their description by rule (molret.names.derived).
And the wall time of the whole cold batch (val + test queries, forms
included), as ``molret.names.cache`` would compute it. No model needed.

    python bench/names_coverage.py [--data-dir D] [--cache-dir C] [--json out.json] [--unresolved F]
                                   [--order opsin,chemicals,ligand2smiles,drug_ner,pairs]

A measurement, not a test. ``--unresolved F`` writes the unresolved test subjects, one per line
with their class (what the next rule should read). ``--order`` looks the sources up in another
order, or without some (those it does not name are left out; the default is SOURCE_ORDER).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"

_GLYCAN = re.compile(r"(?:alpha|beta)-[DL]-\w+p\w*-\(\d->\d\)|-\(\d->\d\)-|\b(?:Glc|Gal|Man|Fuc|Neu)p?\w*-\(")
_CHARGE = re.compile(r"\(\d*[+-]\)\s*$")
_LIPID = re.compile(r"acyl|glycero|sphing|CoA\b|coenzyme A|phosphatidyl|ceramide|-sn-", re.I)
_SALT = re.compile(r"hydrochloride|hydrobromide|hydrate|solvate|sodium|potassium|calcium|magnesium|mesylate|"
                   r"maleate|tartrate|citrate|sulfate salt|\bsalt\b|fumarate|besylate|acetate salt", re.I)


def name_class(subject: str) -> str:
    """The class of an unresolved subject name (the issue's classes, first match wins)."""
    if _GLYCAN.search(subject):
        return "glycan"
    if _LIPID.search(subject):
        return "lipid or CoA"
    if _CHARGE.search(subject):
        return "charge suffix"
    if _SALT.search(subject):
        return "salt or hydrate"
    if len(subject.split()) == 1 and not re.search(r"\d", subject):
        return "one-word trivial"
    return "other"


def coverage(structures) -> dict:
    found = [s for s in structures if s.names.subject]
    resolved = [s for s in found if s.subject is not None]
    unresolved = Counter(name_class(s.names.subject) for s in found if s.subject is None)
    by_source = Counter(f"{s.subject.source}/{s.subject.kind}" for s in resolved)
    by_rule = Counter(getattr(s.subject, "rule", "") for s in resolved if s.subject.kind == "derived")
    return {"queries": len(structures), "with_subject": len(found), "resolved": len(resolved),
            "resolved_share": round(len(resolved) / max(1, len(structures)), 4),
            "unresolved_by_class": dict(unresolved.most_common()), "resolved_by_source": dict(by_source.most_common()),
            "derived_by_rule": dict(by_rule.most_common())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir")
    p.add_argument("--json")
    p.add_argument("--unresolved", help="write the unresolved test subjects (class<TAB>name) here")
    p.add_argument("--order", help="comma-separated source names (molret.names.sources.SOURCE_ORDER): "
                                   "the sources to use, in this order")
    args = p.parse_args(argv)
    from molret.names.sources import SOURCE_ORDER
    order = args.order.split(",") if args.order else None
    if order and not set(order) <= set(SOURCE_ORDER):
        p.error(f"--order: unknown source(s) {sorted(set(order) - set(SOURCE_ORDER))}; choose from {SOURCE_ORDER}")
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.names.opsin import shared_opsin
    from molret.names.queries import resolve_queries
    from molret.names.resolve import clear_forms_memo
    from molret.names.sources import default_sources, pairs_dictionary_from_dir
    from molret.ranking.name_fusion import Candidates, name_stats
    val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs = challenge_pool_inputs(args.data_dir,
                                                                                                args.cache_dir)
    candidates = Candidates.from_stores([val_graphs, test_graphs])
    t0 = time.perf_counter()
    opsin = shared_opsin()
    pairs = pairs_dictionary_from_dir(args.data_dir, args.cache_dir)
    sources = default_sources(opsin, pairs)
    if order:
        by_name = {s.name: s for s in sources}
        sources = [by_name[n] for n in order if n in by_name]
    clear_forms_memo()
    t1 = time.perf_counter()
    structures = resolve_queries(list(val_texts) + list(test_texts), opsin, sources=sources, forms="all",
                                 candidate_keys=candidates.keys)
    t2 = time.perf_counter()
    val, test = structures[:len(val_texts)], structures[len(val_texts):]
    stats = name_stats(val, candidates, np.arange(len(val_texts)))
    out = {"sources": [s.name for s in sources], "seconds_sources": round(t1 - t0, 1),
           "seconds_batch": round(t2 - t1, 1), "val": coverage(val), "test": coverage(test),
           "val_exact": stats["exact_true_graph"], "val_form": stats["form_true_graph"],
           "val_identity_or_form": stats["exact_true_graph"] + stats["form_true_graph"]}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.unresolved:
        lines = [f"{name_class(s.names.subject)}\t{s.names.subject}" for s in test
                 if s.names.subject and s.subject is None]
        Path(args.unresolved).write_text("\n".join(sorted(lines)) + "\n")


if __name__ == "__main__":
    main()
