"""What a recipe's members buy (issue 31; a measurement, not a test): the recipe's own ensemble step (weights
fitted per kind on the pool, the claims scorer, names, Sinkhorn) over subsets of the saved members of recipe
runs, one run folder per seed, and the pool figures of each subset side by side.

    python bench/recipe_subsets.py --runs R/rec-s0 R/rec-s1 --data-dir ../shared/data/altegrad --cache-dir C \\
        [--subset fast8=feat-1,feat-nomorgan-1,...] [--no-claims] [--json out.json]

Without --subset: 4, 6 and 8 fast members, and the 8 with the graph-network members GCN and MLP (the members of
the 30-minute recipe until issue 31). The members are taken in the recipe's order (the weight fit depends on it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FAST8 = ["feat-1", "feat-nomorgan-1", "feat-desc-1", "feat-morgan3-1", "feat-2", "feat-nomorgan-2", "feat-desc-2",
         "feat-morgan3-2"]
SUBSETS = {"fast4": FAST8[:4], "fast6": FAST8[:6], "fast8": FAST8, "fast8+gcn+mlp": FAST8 + ["gcn", "mlp"]}


def pool_figures(run: Path, members: list, args) -> dict:
    """The recipe's ensemble step over ``members`` of ``run``: its pool figures (and those without claims)."""
    from molret.cli.recipe import member_group
    from molret.ranking.ensemble_engine import EnsembleOptions, run_ensemble
    folders = [run / m for m in members]
    opts = EnsembleOptions(members=[str(f / "embeddings") for f in folders], fit_weights=True,
                           groups=[member_group(f) for f in folders], rerank="sinkhorn",
                           rerank_temperature=args.temperature, names="opsin", data_dir=args.data_dir,
                           cache_dir=args.cache_dir, claims_top_k=0 if args.no_claims else 50)
    pool = run_ensemble(opts).metrics["pool"]
    e = pool["ensemble"]
    out = {"learned_reranked": e["pool_lrap_reranked"], "names_reranked": e["names"]["pool_lrap_reranked"],
           "names_hits1": e["names"]["pool_hits1"]}
    if "claims" in pool:
        w = pool["claims"]["without"]
        out.update(without_claims_learned_reranked=w["pool_lrap_reranked"],
                   without_claims_names_reranked=w["names"]["pool_lrap_reranked"], claims_weight=pool["claims"]["weight"])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="recipe run folders (one per seed)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--subset", action="append", metavar="NAME=M1,M2,...", help="a subset (repeatable)")
    p.add_argument("--temperature", type=float, default=0.02, help="Sinkhorn's (the recipe's)")
    p.add_argument("--no-claims", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    subsets = dict(s.split("=", 1) for s in args.subset) if args.subset else None
    subsets = {k: v.split(",") for k, v in subsets.items()} if subsets else SUBSETS
    results = {name: {str(run): pool_figures(Path(run), members, args) for run in args.runs}
               for name, members in subsets.items()}
    print("subset | learned only re-ranked | with names re-ranked | without claims: learned only re-ranked | "
          "without claims: with names re-ranked   (one figure per run, in --runs order)")
    for name, per_run in results.items():
        cols = [" / ".join(f"{r[k]:.4f}" for r in per_run.values() if k in r)
                for k in ("learned_reranked", "names_reranked", "without_claims_learned_reranked",
                          "without_claims_names_reranked")]
        print(f"{name} | {cols[0]} | {cols[1]} | {cols[2]} | {cols[3]}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
