"""How each rule of molret.names.derived (and .edits) does on the subjects no name source resolves.

For the val and the test queries whose subject name does not resolve (every source, every spelling,
no derived names), each rule alone: how often it fires (builds at least one name or structure edit),
how often it gives a structure (a name resolves, or an edit's parents resolve and their sites are
unambiguous), and, on val, how often the first structure it gives is EXACTLY the true
molecule's graph (graph key; candidates the pool, val + test molecules); then the rules together in
the order given ("all") and the default rules ("default": what ``resolve_queries`` does). With
``--train``, the same on the train queries, whose subjects the pairs dictionary would resolve
trivially, so their sources are OPSIN and the chemicals table only. No model needed.

    python bench/derived_names.py [--data-dir D] [--cache-dir C] [--rules R ...] [--train] [--json F] [--show N]

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


def outcome(text: str, subject: str, rules, structures: dict):
    """(fired, Structure or None) of ``rules`` on one query, as ``resolve_queries`` resolves them (names
    first, then edits), ``structures`` every built name and edit parent resolved."""
    from molret.names.derived import derived_names
    from molret.names.edits import derived_edits
    from molret.names.queries import derived_structure
    names, edits = derived_names(text, subject, rules), derived_edits(text, subject, rules)
    first = next((structures[n] for _, n in names if structures.get(n) is not None), None)
    if first is None and edits:
        first = derived_structure(text, subject, edits, structures, rules)
    return bool(names or edits), first


def rule_counts(outcomes: list, unresolved: list) -> dict:
    """fires / resolves (/ exact where the true key is known) per split of one rule's ``outcomes``
    over ``unresolved`` (split, true key or None)."""
    counts: dict = {}
    for (split, true), (fired, first) in zip(unresolved, outcomes):
        c = counts.setdefault(split, {"fires": 0, "resolves": 0, "exact": 0} if true is not None else
                              {"fires": 0, "resolves": 0})
        c["fires"] += fired
        c["resolves"] += first is not None
        if true is not None:
            c["exact"] += first is not None and first.key == true
    for c in counts.values():
        if "exact" in c:
            c["exact_precision"] = round(c["exact"] / max(1, c["resolves"]), 3)
    return counts


def measure(texts: list, truths: list, splits: list, sources, rules) -> tuple:
    """Per rule (and "all", the rules in order, and "default", those of them in DEFAULT_RULES) counts on the queries of ``texts`` whose subject
    ``sources`` do not resolve; also (rows, subjects, unresolved, outcomes per rule) for examples."""
    from molret.names.derived import DEFAULT_RULES, derived_names
    from molret.names.edits import derived_edits
    from molret.names.queries import resolve_queries
    from molret.names.resolve import resolve_names
    plain = resolve_queries(texts, None, sources=sources, forms="none", derived_rules=())
    rows = [i for i, q in enumerate(plain) if q.names.subject and q.subject is None]
    subjects = [plain[i].names.subject for i in rows]
    unresolved = [(splits[i], truths[i]) for i in rows]
    built = [n for i, subj in zip(rows, subjects) for _, n in derived_names(texts[i], subj, rules)]
    built += [p for i, subj in zip(rows, subjects) for _, parents, _ in derived_edits(texts[i], subj, rules)
              for p in parents]
    structures = resolve_names(list(dict.fromkeys(built)), sources)
    by_rule, outcomes = {}, {}
    for rule in [*rules, "all", "default"]:
        chosen = rules if rule == "all" else [r for r in DEFAULT_RULES if r in rules] if rule == "default" else [rule]
        outcomes[rule] = [outcome(texts[i], subj, chosen, structures) for i, subj in zip(rows, subjects)]
        by_rule[rule] = rule_counts(outcomes[rule], unresolved)
    return by_rule, (rows, subjects, unresolved, outcomes)


def train_inputs(data_dir, cache_dir) -> tuple:
    """(texts, graph keys) of the data folder's train pairs."""
    from molret.data.challenge import default_cache_dir, read_pairs_tsv, resolve_data_dir
    from molret.data.graph_store import GraphSource, load_graphs
    from molret.names.resolve import graph_keys
    paths = resolve_data_dir(data_dir)
    cids, texts = read_pairs_tsv(paths.need("train"))
    cache = Path(cache_dir) if cache_dir else default_cache_dir(data_dir)
    g = load_graphs("train", cids, GraphSource(paths.need("raw")), cache, None, False)
    return list(texts), graph_keys(g.identifiers, g.node_ptr, g.edges, g.edge_ptr)


def main(argv=None):
    from molret.names.derived import RULES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir")
    p.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES), help="rules, in order (default: all)")
    p.add_argument("--train", action="store_true",
                   help="also the train queries (sources without the pairs dictionary, which holds them)")
    p.add_argument("--json")
    p.add_argument("--show", type=int, default=0, help="examples printed per rule (default 0)")
    args = p.parse_args(argv)
    if args.show < 0:
        p.error("--show must be >= 0")
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.names.opsin import shared_opsin
    from molret.names.sources import default_sources, pairs_dictionary_from_dir
    from molret.ranking.name_fusion import Candidates
    val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs = challenge_pool_inputs(args.data_dir,
                                                                                                args.cache_dir)
    candidates = Candidates.from_stores([val_graphs, test_graphs])
    opsin = shared_opsin()
    sources = default_sources(opsin, pairs_dictionary_from_dir(args.data_dir, args.cache_dir))
    texts = list(val_texts) + list(test_texts)
    n_val = len(val_texts)
    truths = [candidates.keys[i] if i < n_val else None for i in range(len(texts))]
    splits = ["val" if i < n_val else "test" for i in range(len(texts))]
    by_rule, (rows, subjects, unresolved, outcomes) = measure(texts, truths, splits, sources, args.rules)
    out = {"sources": [s.name for s in sources], "rules": args.rules,
           "unresolved": {s: sum(u[0] == s for u in unresolved) for s in ("val", "test")}, "by_rule": by_rule}
    if args.train:
        train_texts, train_keys = train_inputs(args.data_dir, args.cache_dir)
        train_by_rule, (_, _, train_unresolved, _) = measure(train_texts, train_keys, ["train"] * len(train_texts),
                                                            default_sources(opsin), args.rules)
        out["unresolved"]["train"] = len(train_unresolved)
        for rule, counts in train_by_rule.items():
            out["by_rule"][rule].update(counts)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    for rule in args.rules if args.show else []:
        print(f"--- {rule}")
        fired = [(subj, u, o) for subj, u, o in zip(subjects, unresolved, outcomes[rule]) if o[0]]
        for subj, (split, true), (_, first) in fired[:args.show]:
            verdict = "-" if first is None else ("exact" if first.key == true else "resolves")
            print(f"{split}\t{verdict}\t{subj}\t{first.smiles if first is not None else ''}")


if __name__ == "__main__":
    main()
