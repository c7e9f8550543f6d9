"""The claims scorer measured (issue 31, items 2-3; a measurement, not a test).

1. Each rule on the val descriptions: how often it fires, how often the true molecule agrees with it (its
   precision), and how often a random val molecule does (the base rate).
2. The pool figures of the recipe's ensemble of saved members per seed folder (member weights fitted on val as
   ``ensemble_method.py --fit-weights``): learned-only re-ranked pool LRAP and with names re-ranked, without and
   with the claims score (its weight fitted on val, fused before Sinkhorn and before the names are fitted).
3. Which rules carry the gain (--ablation, instead of 2): the claims score with one family of rules left out
   (ranker and weight refitted), on the first seed, learned-only re-ranked; --catches: per rule, the wrong
   candidates above the true molecule in the learned top-50 that it can demote; --importance: the ranker's
   features by gain.
4. --timing-only: the scorer's time for the pool's queries x their top-50 (fit on the training pairs + score),
   cold (every attribute computed) and warm (attributes cached); run it under flock /tmp/cpu.lock.

    python bench/claims_pool.py --runs /tmp/r29/rec-s0 /tmp/r29/rec-s1 --data-dir D --cache-dir C \\
        [--temperature 0.02] [--ablation | --catches | --importance | --timing-only] [--json out.json]
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

MEMBERS = ("feat-1", "feat-2", "feat-desc-1", "feat-desc-2", "feat-morgan3-1", "feat-morgan3-2", "feat-nomorgan-1",
           "feat-nomorgan-2", "gcn", "mlp")
# rule families for the ablation (by rule name; the rest of RULES is "groups")
FAMILIES = {
    "charge": ("charge", "charge_sign", "zwitterion"),
    "chains+double bonds": ("chain_carbons", "terpenoid_carbons", "cc_double", "saturated"),
    "rings": ("rings",),
    "sugars+amino acids": ("sugar_units", "glycoside", "amino_acid_units", "amino_acid"),
    "salt+hydrate": ("salt", "hydrate"),
    "elements": ("sulfur", "phosphorus", "selenium", "boron", "silicon", "arsenic", "metal", "nitrogen"),
}


def rule_table(texts, smiles) -> list:
    from molret.ranking.claims.ranker import RULE_ATTRIBUTE, RULE_KIND, agreement
    from molret.ranking.claims.statements import RULES, stated_matrix
    from molret.ranking.claims.structure import attribute_matrix
    stated, attrs = stated_matrix(texts), attribute_matrix(smiles)
    agree = agreement(stated, attrs[:, RULE_ATTRIBUTE], RULE_KIND)
    shuffled = attrs[np.random.default_rng(0).permutation(len(attrs))]
    base = agreement(stated, shuffled[:, RULE_ATTRIBUTE], RULE_KIND)
    rows = []
    for j, r in enumerate(RULES):
        fired = ~np.isnan(stated[:, j])
        rows.append({"rule": r.name, "fires": int(fired.sum()),
                     "precision": round(float(np.nanmean(agree[:, j])), 3) if fired.any() else None,
                     "random": round(float(np.nanmean(base[:, j])), 3) if fired.any() else None})
    return rows


def catches(square, n_val, stated, attrs, top_k=50) -> dict:
    """Per rule: the (val query, candidate) pairs of the learned top-k where the candidate ranks above the true
    molecule, the rule agrees with the true molecule and disagrees with the candidate (what it can demote)."""
    from molret.ranking.claims.ranker import RULE_ATTRIBUTE, RULE_KIND, agreement
    from molret.ranking.claims.statements import RULES
    out = {r.name: 0 for r in RULES}
    for q in range(n_val):
        cols = np.argsort(-square[q])[:top_k]
        above = cols[square[q, cols] > square[q, q]]
        if not len(above):
            continue
        st = np.repeat(stated[q:q + 1], len(above) + 1, axis=0)
        ag = agreement(st, attrs[np.concatenate([[q], above])][:, RULE_ATTRIBUTE], RULE_KIND)
        hit = (ag[0] == 1) & (ag[1:] == 0)
        for j in np.flatnonzero(hit.any(axis=0)):
            out[RULES[j].name] += int(hit[:, j].sum())
    return out


def family_mask(family: str) -> np.ndarray:
    from molret.ranking.claims.statements import RULES
    named = {r for rules in FAMILIES.values() for r in rules}
    if family == "groups":
        return np.array([r.name not in named and not r.attribute.startswith("class:") for r in RULES])
    if family == "classes":
        return np.array([r.attribute.startswith("class:") for r in RULES])
    return np.array([r.name in FAMILIES[family] for r in RULES])


def seed_square(run: str, args):
    from molret.ranking.ensemble_engine import EnsembleOptions, ensemble_split, fit_weights, load_members
    paths = [f"{run}/{m}/embeddings" for m in MEMBERS]
    groups = [m.rsplit("-", 1)[0] if m[-1].isdigit() else m for m in MEMBERS]
    opts = EnsembleOptions(members=paths, groups=groups, fit_weights=True, rerank="sinkhorn",
                           rerank_temperature=args.temperature, names="opsin", data_dir=args.data_dir,
                           cache_dir=args.cache_dir)
    members = load_members(opts)
    fit_weights(opts, members, True, {})
    square, _, _ = ensemble_split(members, "pool", opts, do_rerank=False)
    return square, members[0].n_val


def figures(square, n_val, bonus, names, args) -> dict:
    from molret.evaluation.pool import final_report
    from molret.ranking.claims.fusion import fit_claims_weight, fuse_claims
    out = {}
    for label, b in (("without", None), ("with", bonus)):
        w = fit_claims_weight(square[:n_val], b[:n_val]) if b is not None else 0.0
        s = fuse_claims(square, b, w) if b is not None else square
        report, _ = final_report(s, n_val, "sinkhorn", args.temperature, names)
        out[label] = {"claims_weight": w, "pool_lrap": report["pool_lrap"],
                      "reranked": report["pool_lrap_reranked"],
                      "names_reranked": report["names"]["pool_lrap_reranked"] if "names" in report else None}
        with_names = f"; with names re-ranked {out[label]['names_reranked']:.4f}" if names is not None else ""
        print(f"  {label:7s} claims (weight {w:g}): learned-only pool LRAP {report['pool_lrap']:.4f}, re-ranked "
              f"{report['pool_lrap_reranked']:.4f}{with_names}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="seed folders holding the MEMBERS' embeddings")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir")
    p.add_argument("--temperature", type=float, default=0.02)
    p.add_argument("--ablation", action="store_true",
                   help="instead of the runs' figures: the rule families left out, on the first run, learned-only")
    p.add_argument("--timing-only", action="store_true")
    p.add_argument("--catches", action="store_true", help="only the per-rule catches (see catches()) on the first run")
    p.add_argument("--importance", action="store_true", help="only the ranker's features by total gain (LightGBM)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    from molret.evaluation.pool import challenge_pool_inputs, pool_name_features
    from molret.ranking.claims import fusion
    from molret.ranking.claims.ranker import RankerOptions, fit_ranker
    from molret.ranking.claims.statements import stated_matrix
    from molret.ranking.claims.structure import attribute_matrix
    inputs = challenge_pool_inputs(args.data_dir, args.cache_dir)
    _, val_texts, val_graphs, _, test_texts, test_graphs = inputs
    texts = list(val_texts) + list(test_texts)
    result = {}
    opts = fusion.ClaimsOptions()
    if args.importance:
        from molret.ranking.claims.ranker import feature_names
        ranker = fit_ranker(*fusion.training_claims(args.data_dir, args.cache_dir), RankerOptions())
        gain = ranker.model.booster_.feature_importance("gain")
        order = np.argsort(-gain)
        print("ranker features by total gain (share):")
        for i in order[:25]:
            print(f"  {feature_names()[i]:28s} {gain[i] / gain.sum():.3f}")
        return
    if args.timing_only:   # cold: every attribute computed; warm: the attribute matrices read from the cache
        square, n_val = seed_square(args.runs[0], args)
        t = time.perf_counter()
        from molret.data.challenge import read_pairs_tsv, resolve_data_dir
        from molret.data.graph_store import GraphSource, load_graphs
        paths = resolve_data_dir(args.data_dir)
        cids, train_texts = read_pairs_tsv(paths.need("train"))
        train_graphs = load_graphs("train", cids, GraphSource(paths.need("raw")), args.cache_dir, None, False)
        t_load = time.perf_counter()
        tr_stated = stated_matrix(train_texts)
        tr_attrs = attribute_matrix(fusion.store_smiles(train_graphs, args.cache_dir))
        t_train_attrs = time.perf_counter()
        ranker = fit_ranker(tr_stated, tr_attrs, RankerOptions())
        t_fit = time.perf_counter()
        st = stated_matrix(texts)
        at = np.concatenate([attribute_matrix(fusion.store_smiles(s, args.cache_dir))
                             for s in (val_graphs, test_graphs)])
        t_pool_attrs = time.perf_counter()
        cols = fusion.top_k_columns(square, opts.top_k)
        scores = ranker.score(st, at, np.repeat(np.arange(len(square)), cols.shape[1]), cols.ravel())
        fusion.claims_bonus(scores.reshape(cols.shape), cols, square.shape)
        t_end = time.perf_counter()
        print(f"claims scorer cold, {len(texts)} queries x top {opts.top_k}: {t_end - t_load:.1f} s = training "
              f"claims and attributes {t_train_attrs - t_load:.1f} s + ranker fit {t_fit - t_train_attrs:.1f} s + "
              f"pool claims and attributes {t_pool_attrs - t_fit:.1f} s + top-k scoring {t_end - t_pool_attrs:.1f} s "
              f"(graphs loaded in {t_load - t:.1f} s)")
        fusion.pool_claims_bonus(square, texts, (val_graphs, test_graphs), args.data_dir, args.cache_dir, opts)
        t = time.perf_counter()
        _, stats = fusion.pool_claims_bonus(square, texts, (val_graphs, test_graphs), args.data_dir,
                                            args.cache_dir, opts)
        print(f"claims scorer warm (attributes cached), {len(texts)} queries x top {opts.top_k}: "
              f"{time.perf_counter() - t:.1f} s (fit {stats['fit_s']} s, score {stats['score_s']} s)")
        return
    val_smiles = fusion.store_smiles(val_graphs, args.cache_dir)
    result["rules"] = rule_table(list(val_texts), val_smiles)
    print("rule                  fires  precision  random molecule")
    for r in result["rules"]:
        if r["fires"]:
            print(f"  {r['rule']:20s} {r['fires']:5d}  {r['precision']:.3f}      {r['random']:.3f}")
    train_stated, train_attrs = fusion.training_claims(args.data_dir, args.cache_dir)
    stated = stated_matrix(texts)
    attrs = np.concatenate([attribute_matrix(fusion.store_smiles(s, args.cache_dir))
                            for s in (val_graphs, test_graphs)])

    def bonus_of(square, mask=None):
        keep = np.ones(stated.shape[1], bool) if mask is None else ~mask
        ts, ps = np.where(keep, train_stated, np.nan), np.where(keep, stated, np.nan)
        ranker = fit_ranker(ts, train_attrs, RankerOptions())
        cols = fusion.top_k_columns(square, opts.top_k)
        scores = ranker.score(ps, attrs, np.repeat(np.arange(len(square)), cols.shape[1]), cols.ravel())
        return fusion.claims_bonus(scores.reshape(cols.shape), cols, square.shape)
    if args.catches:
        square, n_val = seed_square(args.runs[0], args)
        caught = catches(square, n_val, stated, attrs)
        print(f"wrong candidates above the true molecule (learned top-{opts.top_k}, val) that a rule demotes:")
        for name, n in sorted(caught.items(), key=lambda kv: -kv[1]):
            if n:
                print(f"  {name:22s} {n}")
        return
    names = None if args.ablation else pool_name_features(val_texts, test_texts, val_graphs, test_graphs,
                                                          data_dir=args.data_dir, cache_dir=args.cache_dir)[0]
    for run in ([] if args.ablation else args.runs):
        print(f"{run}:")
        square, n_val = seed_square(run, args)
        result[run] = figures(square, n_val, bonus_of(square), names, args)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.ablation:   # learned-only (no names: their fit is the slow part), on the first run
        square, n_val = seed_square(args.runs[0], args)
        result["ablation"] = {}
        for family in ["none"] + list(FAMILIES) + ["groups", "classes"]:
            print(f" without the {family} rules:")
            mask = family_mask(family) if family != "none" else None
            result["ablation"][family] = figures(square, n_val, bonus_of(square, mask), None, args)["with"]
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
