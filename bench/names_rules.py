"""Per rule: how many val and test subjects each spelling rule and the mixtures source resolve, and how
many val subjects they give exactly (the true molecule's graph) or as one of its forms.

A subject resolved by another spelling is credited to the rule of the first spelling a source knows
(``molret.names.variants.spellings``, in their order); one from the mixtures source to "mixture" or
"atom". Names resolved as written are "as written". Candidates: the pool (val + test molecules).

    python bench/names_rules.py [--data-dir D] [--cache-dir C] [--json out.json]

A measurement, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"


def rule_of(structure, sources) -> str:
    """The rule that resolved a subject Structure."""
    from molret.names.variants import atom_smiles, spellings
    if structure.source == "mixtures":
        return "atom" if atom_smiles(structure.name) else "mixture"
    if structure.kind == "name":
        return "as written"
    if structure.kind != "spelling":
        return structure.kind
    for rule, variant in spellings(structure.name):
        for source in sources:
            if source.lookup([variant])[0] is not None:
                return rule
    return "?"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir")
    p.add_argument("--json")
    args = p.parse_args(argv)
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.names.cache import resolve_queries_cached
    from molret.names.opsin import shared_opsin
    from molret.names.sources import default_sources, pairs_dictionary_from_dir
    from molret.ranking.name_fusion import Candidates
    _, val_texts, val_graphs, _, test_texts, test_graphs = challenge_pool_inputs(args.data_dir, args.cache_dir)
    candidates = Candidates.from_stores([val_graphs, test_graphs])
    opsin = shared_opsin()
    pairs = pairs_dictionary_from_dir(args.data_dir, args.cache_dir)
    structures = resolve_queries_cached(list(val_texts) + list(test_texts), opsin, pairs,
                                        candidate_keys=candidates.keys, cache_dir=args.cache_dir)
    sources = default_sources(opsin, pairs)
    rows: dict = {}
    for i, q in enumerate(structures):
        if q.subject is None:
            continue
        row = rows.setdefault(rule_of(q.subject, sources), Counter())
        if i < len(val_texts):
            true_key = candidates.keys[i]
            row["val resolved"] += 1
            row["val exact"] += int(true_key in q.identity_keys)
            row["val form"] += int(true_key not in q.identity_keys and true_key in q.form_keys)
        else:
            row["test resolved"] += 1
    table = {rule: dict(c) for rule, c in sorted(rows.items(), key=lambda kv: -kv[1]["test resolved"])}
    print(f"{'rule':<12} {'val resolved':>12} {'val exact':>9} {'val form':>8} {'test resolved':>13}")
    for rule, c in table.items():
        print(f"{rule:<12} {c.get('val resolved', 0):>12} {c.get('val exact', 0):>9} {c.get('val form', 0):>8} "
              f"{c.get('test resolved', 0):>13}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
