"""Pool LRAP / Hits@1 of an ensemble with names, plain and re-ranked, for
several name configurations (sources, structure forms): the same members,
the same member weights (fitted on the pool's val rows), the name weights
fitted on val for each configuration, as ``ensemble_method.py --members ...
--fit-weights --rerank sinkhorn --names opsin`` does.

    python bench/names_pool.py --members runs/a/embeddings runs/b/embeddings [--cache-dir C] [--json out.json]

A measurement, not a test (OPSIN needs Java; chemicals the package).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", nargs="+", required=True)
    p.add_argument("--recipe-groups", action="store_true",
                   help="member weights shared per group as recipe.py fits them (one per fast-member kind)")
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--json")
    p.add_argument("--only", nargs="+", type=int, help="run only these configurations (0: before ... 4: after)")
    args = p.parse_args(argv)
    from molret.ranking.ensemble import combine, fit_group_weights, member_from_path, val_targets
    from molret.cli.recipe import member_group
    from molret.evaluation.pool import challenge_pool_inputs, final_report, format_report
    from molret.ranking.name_fusion import Candidates, name_features, name_stats
    from molret.names.sources import OpsinSource, pairs_dictionary_from_dir, shared_chemicals
    from molret.names.queries import resolve_queries
    from molret.names.opsin import Opsin
    members = [member_from_path(m) for m in args.members]
    n_val = members[0].n_val
    _, rows, cols = members[0].splits["pool"]
    groups = ([member_group(Path(m).parent) for m in args.members] if args.recipe_groups
              else [str(i) for i in range(len(members))])
    weights = fit_group_weights([m.splits["pool"][0][:n_val] for m in members], groups,
                                val_targets(rows[:n_val], cols, n_val))
    square = combine([m.splits["pool"][0] for m in members], weights)
    print(f"members {args.members}, weights {weights}")
    val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs = challenge_pool_inputs(args.data_dir,
                                                                                                args.cache_dir)
    assert [str(c) for c in val_cids] == rows[:n_val], "the members' val queries are not those of --data-dir"
    candidates = Candidates.from_stores([val_graphs, test_graphs])
    texts = list(val_texts) + list(test_texts)
    opsin = OpsinSource(Opsin())
    chemicals = shared_chemicals()
    pairs = pairs_dictionary_from_dir(args.data_dir, args.cache_dir)
    configs = [("before: opsin, no forms", [opsin], "none"),
               ("opsin + forms", [opsin], "all"),
               ("opsin + chemicals, no forms", [opsin, chemicals], "none"),
               ("opsin + chemicals + forms", [opsin, chemicals], "all"),
               ("after: opsin + chemicals + pairs + forms", [opsin, chemicals, pairs], "all")]
    out = []
    if args.only:
        configs = [configs[i] for i in args.only]
    for label, sources, forms in configs:
        t = time.perf_counter()
        structures = resolve_queries(texts, None, sources=[s for s in sources if s is not None], forms=forms,
                                     candidate_keys=candidates.keys)
        t_resolve = time.perf_counter() - t
        feats = name_features(structures, candidates)
        stats = name_stats(structures[:n_val], candidates, np.arange(n_val))
        t = time.perf_counter()
        report, w = final_report(square, n_val, "sinkhorn", args.temperature, feats)
        print(f"{label}: resolve {t_resolve:.1f} s, fit + report {time.perf_counter() - t:.1f} s; "
              f"val exact {stats['exact_true_graph']} form {stats['form_true_graph']}")
        for line in format_report(report):
            print("    " + line, flush=True)
        out.append({"label": label, "report": report, "stats": stats})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
