"""How each rule of molret.names.derived does on the subjects no name source resolves.

For the val and the test queries whose subject name does not resolve (every source, every spelling,
no derived names), each rule alone: how often it fires (builds at least one name), how often one of
its names resolves, and, on val, how often the first of them that resolves is EXACTLY the true
molecule's graph (graph key; candidates the pool, val + test molecules); then the rules together in
the order given (what ``resolve_queries`` does). No model needed.

    python bench/derived_names.py [--data-dir D] [--cache-dir C] [--rules R ...] [--json out.json] [--show N]

A measurement, not a test (docs/experiments.md "Names 3.0"). ``--show N`` prints N examples per rule.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"


def rule_counts(unresolved: list, built: list, structures: dict, rules) -> dict:
    """Per rule (and "all", the rules in order): fires / resolves / exact over ``unresolved``
    (split, true key or None), ``built`` the (rule, name) pairs of each, ``structures`` name -> Structure."""
    out = {}
    for rule in [*rules, "all"]:
        counts = {split: {"fires": 0, "resolves": 0, "exact": 0} for split in ("val", "test")}
        for (split, true), pairs in zip(unresolved, built):
            names = [n for r, n in pairs if rule == "all" and r in rules or r == rule]
            if not names:
                continue
            first = next((structures[n] for n in names if structures.get(n) is not None), None)
            c = counts[split]
            c["fires"] += 1
            c["resolves"] += first is not None
            c["exact"] += first is not None and true is not None and first.key == true
        counts["val"]["exact_precision"] = round(counts["val"]["exact"] / max(1, counts["val"]["resolves"]), 3)
        del counts["test"]["exact"]
        out[rule] = counts
    return out


def main(argv=None):
    from molret.names.derived import RULES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir")
    p.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES), help="rules, in order (default: all)")
    p.add_argument("--json")
    p.add_argument("--show", type=int, default=0, help="examples printed per rule (default 0)")
    args = p.parse_args(argv)
    if args.show < 0:
        p.error("--show must be >= 0")
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.names.derived import derived_names
    from molret.names.opsin import shared_opsin
    from molret.names.queries import resolve_queries
    from molret.names.resolve import resolve_names
    from molret.names.sources import default_sources, pairs_dictionary_from_dir
    from molret.ranking.name_fusion import Candidates
    val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs = challenge_pool_inputs(args.data_dir,
                                                                                                args.cache_dir)
    candidates = Candidates.from_stores([val_graphs, test_graphs])
    sources = default_sources(shared_opsin(), pairs_dictionary_from_dir(args.data_dir, args.cache_dir))
    texts = list(val_texts) + list(test_texts)
    plain = resolve_queries(texts, None, sources=sources, forms="none", derived_rules=())
    rows = [i for i, q in enumerate(plain) if q.names.subject and q.subject is None]
    unresolved = [("val", candidates.keys[i]) if i < len(val_texts) else ("test", None) for i in rows]
    built = [derived_names(texts[i], plain[i].names.subject, args.rules) for i in rows]
    structures = resolve_names(list(dict.fromkeys(n for pairs in built for _, n in pairs)), sources)
    out = {"sources": [s.name for s in sources], "rules": args.rules,
           "unresolved": {"val": sum(s == "val" for s, _ in unresolved), "test": sum(s == "test" for s, _ in unresolved)},
           "by_rule": rule_counts(unresolved, built, structures, args.rules)}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    for rule in args.rules[:] if args.show else []:
        print(f"--- {rule}")
        shown = 0
        for i, (split, true), pairs in zip(rows, unresolved, built):
            names = [n for r, n in pairs if r == rule]
            if not names or shown >= args.show:
                continue
            first = next((structures[n] for n in names if structures.get(n) is not None), None)
            verdict = "-" if first is None else ("exact" if first.key == true else "resolves")
            print(f"{split}\t{verdict}\t{plain[i].names.subject}\t{names[0]}")
            shown += 1


if __name__ == "__main__":
    main()
