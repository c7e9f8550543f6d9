"""Ensemble several models into one submission: the weighted mean of their
query x molecule cosine-similarity matrices, optionally normalised per query
row and re-ranked with the one-to-one structure of the task.

    python ensemble_method.py --models runs/a/best.pt runs/b/best.pt --data-dir data --out ensemble.csv
    python ensemble_method.py --members runs/a/embeddings runs/b/embeddings --normalize zscore \\
        --rerank sinkhorn --rerank-temperature 0.05 --out ensemble.csv

Members: checkpoints (--models; embedded on --data-dir, default each
checkpoint's own data folder) and/or saved members (--members): folders of
<split>_text_emb.npy/<split>_graph_emb.npy (+ _ids.txt) as written by
main.py --save-embeddings or get_text_embeddings.py --graphs, folders of
<split>_similarity.npy as written by --save-similarity, or a .npy test
similarity matrix. The val LRAP of each member and of the ensemble is
printed when val matrices are available.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from molret.cli.common import add_inference_args
from molret.utils.errors import user_errors
from molret.cli.flags import ranged
from molret.ranking.ensemble import (NORMALIZATIONS, Member, check_aligned, checkpoint_embeddings, combine,
                                     member_from_embeddings, member_from_path, val_targets)
from molret.utils.errors import MolretError
from molret.evaluation.metrics import retrieval_metrics
from molret.ranking.pseudo_labels import MARGIN_LIMITS
from molret.ranking.rerank import METHODS, SINKHORN_ITERS, rerank


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ensemble_method.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--models", nargs="+", default=[], metavar="CKPT", help="checkpoints (best.pt) to embed")
    p.add_argument("--members", nargs="+", default=[], metavar="PATH",
                   help="saved members: embeddings/similarity folders or .npy test similarity matrices")
    p.add_argument("--data-dir", help="challenge data folder for --models (default: each checkpoint's own)")
    p.add_argument("--cache-dir", help="cache folder for --models (default: each checkpoint's)")
    p.add_argument("--weights", nargs="+", type=float, help="one weight per member (--models first, then "
                                                           "--members; default: equal)")
    p.add_argument("--normalize", default="none", choices=NORMALIZATIONS,
                   help="per query row normalisation of each member before averaging (default: none)")
    p.add_argument("--rerank", default="none", choices=METHODS,
                   help="re-rank the ensemble with the one-to-one structure (default: none)")
    p.add_argument("--rerank-temperature", type=float, default=0.05,
                   help="temperature T of exp(sim / T) for --rerank (in the units of the combined scores; "
                        "default: 0.05)")
    p.add_argument("--sinkhorn-iters", type=int, default=SINKHORN_ITERS,
                   help=f"maximum Sinkhorn iterations (default: {SINKHORN_ITERS})")
    p.add_argument("--fit-weights", action="store_true",
                   help="choose the member weights that maximise the pool LRAP of the val queries (needs members "
                        "with val and test embeddings; replaces --weights)")
    p.add_argument("--test-members", nargs="+", metavar="PATH",
                   help="the final fit: one saved member per member (--models first, then --members) whose test "
                        "matrix replaces that member's in the submission (e.g. the same settings retrained on "
                        "train + val: main.py --train-on-val); weights, names and val metrics stay those of the "
                        "members")
    p.add_argument("--groups", nargs="+", metavar="LABEL",
                   help="with --fit-weights: one label per member (--models first, then --members); members with "
                        "the same label share one fitted weight, split equally (fewer weights fitted on val)")
    p.add_argument("--names", default="none", choices=["none", "opsin"],
                   help="opsin: fuse the structures named in the queries (OPSIN when Java is there, the chemicals synonyms table, the training pairs) with the ensemble's "
                        "scores, weights fitted on val; needs --data-dir (or --models) for the texts and graphs")
    p.add_argument("--pseudo-labels", metavar="TSV",
                   help="write the confident one-to-one matches of the re-ranked (and name-fused) val + test pool as "
                        "training pairs (cid<TAB>query) for a second round (main.py --extra-pairs); needs --rerank "
                        "and --data-dir; their precision on the val queries is printed")
    p.add_argument("--pseudo-margin", type=ranged(float, "pseudo_margin", MARGIN_LIMITS), default=0.5,
                   help="a pseudo-label's query must prefer its molecule over its second best by this much "
                        "probability after re-ranking (0..1; default: 0.5)")
    p.add_argument("--unlabelled-by", metavar="TSV",
                   help="also report the pool metrics of the val queries that are not queries of this pairs TSV "
                        "(e.g. the pseudo-labels members trained on: where a gain there is generalisation, not the "
                        "pairs learned); needs --data-dir")
    p.add_argument("--out", help="test submission CSV to write (default: none)")
    p.add_argument("--save-similarity", metavar="FOLDER",
                   help="also save the ensemble's <split>_similarity.npy (+ ids) there (usable as a --members entry)")
    add_inference_args(p, flags=("device",))  # for --models
    p.add_argument("--json", metavar="PATH", help="write the val metrics as JSON")
    return p


def load_members(args) -> list[Member]:
    members = []
    for ckpt in args.models:
        splits = ("val", "test")
        emb = checkpoint_embeddings(ckpt, splits, data_dir=args.data_dir, cache_dir=args.cache_dir,
                                    device=args.device)
        members.append(member_from_embeddings(str(ckpt), emb))
    members += [member_from_path(p) for p in args.members]
    seen = {}
    for m in members:  # the same path given twice still gets its own line
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name} (#{seen[m.name]})"
    return members


def use_final_test_matrices(members: list[Member], paths: list) -> None:
    """--test-members: each member's test matrix replaced by that of its final fit (same shape and ids)."""
    if len(paths) != len(members):
        raise MolretError(f"--test-members has {len(paths)} paths for {len(members)} members")
    for m, path in zip(members, paths):
        final = member_from_path(path)
        if "test" not in final.splits:
            raise MolretError(f"--test-members: {path} has no test matrix")
        s, rows, cols = final.splits["test"]
        if "test" in m.splits and (s.shape != m.splits["test"][0].shape or (rows, cols) != m.splits["test"][1:]):
            raise MolretError(f"--test-members: {path}'s test matrix is not over the same queries and molecules "
                              f"as {m.name}'s")
        m.splits["test"] = (s, rows, cols)


def ensemble_split(members: list[Member], split: str, args, do_rerank: bool = True):
    """(combined and re-ranked matrix, row ids, col ids) of ``split``."""
    check_aligned(members, split)
    combined = combine([m.splits[split][0] for m in members], args.weights, args.normalize)
    if args.rerank != "none" and do_rerank:
        combined = rerank(combined, args.rerank, args.rerank_temperature, n_iter=args.sinkhorn_iters)
    _, rows, cols = next((m.splits[split] for m in members if m.splits[split][1] is not None), members[0].splits[split])
    return combined, rows, cols


def pool_inputs(args, members: list[Member], n_val: int, n_test: int, what: str):
    """(val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs) of
    the pool (from --data-dir, else the first checkpoint's data folder),
    checked against the members' ids."""
    from molret.evaluation.pool import challenge_pool_inputs
    data_dir = pool_data_dir(args)
    if data_dir is None:
        raise MolretError(f"{what} needs --data-dir (the queries' texts and the molecules' graphs)")
    inputs = challenge_pool_inputs(data_dir, args.cache_dir)
    val_cids, test_cids = inputs[0], inputs[3]
    _, rows, cols = members[0].splits["pool"]
    if [str(c) for c in val_cids] != rows[:n_val] or len(test_cids) != n_test or \
            [f"test:{c}" for c in test_cids] != cols[n_val:]:
        raise MolretError(f"{what}: the members' val/test molecules are not those of {data_dir}")
    return inputs


def pool_data_dir(args):
    """The pool's data folder (its texts, graphs, and the train.tsv of --names' pairs dictionary):
    --data-dir, else the first checkpoint's data folder, else None."""
    if args.data_dir is not None or not args.models:
        return args.data_dir
    from molret.models.checkpoint import read_checkpoint
    return read_checkpoint(args.models[0])["config"]["train"]["data_dir"]


def write_pseudo_labels(args, square: np.ndarray, cols: list, n_val: int, query_texts: list, names, weights) -> dict:
    """--pseudo-labels: the confident matches of the re-ranked, name-fused
    square pool, written as training pairs; their count and val precision."""
    from molret.utils.files import atomic_write_text
    from molret.ranking.name_fusion import fuse
    from molret.ranking.pseudo_labels import mutual_matches, pairs_tsv, precision
    scores = fuse(square, names, weights) if names is not None and weights else square
    scores = rerank(scores, args.rerank, args.rerank_temperature, n_iter=args.sinkhorn_iters)
    rows, match_cols, _ = mutual_matches(scores, args.pseudo_margin)
    n_val_pairs, val_precision = precision(rows, match_cols, np.arange(n_val), n_val)
    atomic_write_text(args.pseudo_labels, pairs_tsv(rows, match_cols, query_texts, cols))
    stats = {"pairs": int(len(rows)), "val_pairs": n_val_pairs, "test_pairs": int(len(rows)) - n_val_pairs,
             "val_precision": round(val_precision, 4), "margin": args.pseudo_margin, "file": str(args.pseudo_labels)}
    print(f"pseudo-labels: {stats['pairs']} pairs ({n_val_pairs} val queries, precision {val_precision:.3f}; "
          f"{stats['test_pairs']} test queries) written to {args.pseudo_labels}")
    return stats


def unlabelled_report(args, members: list[Member], square: np.ndarray, n_val: int, val_texts, names,
                      weights) -> dict:
    """--unlabelled-by: the pool report of the val queries absent from that
    pairs file (same member and name weights, the whole square re-ranked)."""
    from molret.data.challenge import read_pairs_tsv
    from molret.evaluation.pool import final_report, format_report, pool_metrics_of
    paired = set(read_pairs_tsv(args.unlabelled_by)[1])
    rows = np.array([i for i, t in enumerate(val_texts) if t not in paired], dtype=np.int64)
    out = {"queries": int(len(rows)), "of": n_val}
    print(f"  the {len(rows)} of {n_val} val queries not in {args.unlabelled_by}:")
    if not len(rows):
        return out
    for m in members:
        out.setdefault("members", {})[m.name] = pool_metrics_of(m.splits["pool"][0], n_val, rows)
        print(f"    pool LRAP {out['members'][m.name]['pool_lrap']:.4f}  {m.name}")
    out["ensemble"], _ = final_report(square, n_val, args.rerank, args.rerank_temperature, names, rows, weights)
    for line in format_report(out["ensemble"]):
        print("    ensemble " + line)
    return out


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    n = len(args.models) + len(args.members)
    if n == 0:
        raise MolretError("give at least one member (--models and/or --members)")
    if args.weights is not None and len(args.weights) != n:
        raise MolretError(f"--weights has {len(args.weights)} values for {n} members")
    if args.groups is not None and (len(args.groups) != n or not args.fit_weights):
        raise MolretError(f"--groups needs --fit-weights and one label per member ({len(args.groups)} labels for "
                          f"{n} members)")
    if args.pseudo_labels and args.rerank == "none":
        raise MolretError("--pseudo-labels needs --rerank sinkhorn or dual-softmax (its margin is a probability)")
    members = load_members(args)
    if args.test_members:
        use_final_test_matrices(members, args.test_members)
    results = {}        # val metrics by member name and "ensemble"; "pool": the pool report (see below)
    pool_results = {}
    pool = all("pool" in m.splits for m in members)
    if args.fit_weights:
        if not pool:
            raise MolretError("--fit-weights needs members with val and test embeddings (embeddings folders or "
                              "--models)")
        from molret.ranking.ensemble import cross_fitted_lrap, fit_group_weights
        n_val = members[0].n_val
        _, rows, cols = members[0].splits["pool"]
        val_rows = [m.splits["pool"][0][:n_val] for m in members]
        groups, targets = args.groups or [str(i) for i in range(n)], val_targets(rows[:n_val], cols, n_val)
        args.weights = fit_group_weights(val_rows, groups, targets, args.normalize)
        pool_results["member_weights"] = args.weights
        # the weights are fitted and scored on the same val rows: say what they are worth on unseen rows
        pool_results["pool_lrap_cross_fitted"] = cross_fitted_lrap(val_rows, groups, targets, args.normalize)
        print(f"member weights fitted on the pool: {' '.join(f'{w:g}' for w in args.weights)} (pool LRAP with "
              f"weights fitted on the other half of the val queries: {pool_results['pool_lrap_cross_fitted']:.4f})")

    have_val = [m for m in members if "val" in m.splits]
    if have_val:
        print(f"val LRAP ({len(have_val[0].splits['val'][0])} queries):")
        for m in have_val:
            s, rows, cols = m.splits["val"]
            res = retrieval_metrics(s, val_targets(rows, cols, len(s)))
            results[m.name] = res
            print(f"  {res['lrap']:.4f}  {m.name}")
        if len(have_val) == len(members):
            s, rows, cols = ensemble_split(members, "val", args)
            res = retrieval_metrics(s, val_targets(rows, cols, len(s)))
            results["ensemble"] = res
            label = f"ensemble of {n} (normalize={args.normalize}, rerank={args.rerank}" + \
                    (f", T={args.rerank_temperature}" if args.rerank != "none" else "") + ")"
            print(f"  {res['lrap']:.4f}  {label}  MRR {res['mrr']:.4f}  H@1 {res['hits@1']:.3f}  "
                  f"H@10 {res['hits@10']:.3f}")
        else:
            print("  (no ensemble val score: some members have no val matrix)")
    else:
        print("no val matrices among the members: no val LRAP")

    names, weights = None, None
    # the flags that need the pool's texts and graphs (the first one names the error)
    needs_pool = [flag for flag, on in (("--names", args.names != "none"), ("--pseudo-labels", args.pseudo_labels),
                                        ("--unlabelled-by", args.unlabelled_by)) if on]
    if pool:
        from molret.evaluation.pool import final_report, format_report
        check_aligned(members, "pool")
        square, rows, cols = ensemble_split(members, "pool", args, do_rerank=False)
        n_val = members[0].n_val
        if rows[:n_val] != cols[:n_val]:
            raise MolretError("pool: the val queries and molecules are not in the same order")
        inputs = None
        if needs_pool:
            inputs = pool_inputs(args, members, n_val, len(square) - n_val, needs_pool[0])
        if args.names != "none":
            from molret.evaluation.pool import pool_name_features
            # the pairs dictionary of the data folder's whole train.tsv, as main.py and predictions.py use
            names, pool_results["names_stats"] = pool_name_features(
                inputs[1], inputs[4], inputs[2], inputs[5], data_dir=pool_data_dir(args),
                cache_dir=args.cache_dir)
        report, weights = final_report(square, n_val, args.rerank, args.rerank_temperature, names)
        pool_results["ensemble"] = report
        if args.rerank != "none":
            pool_results["rerank_temperature"] = args.rerank_temperature
        if args.pseudo_labels:
            pool_results["pseudo_labels"] = write_pseudo_labels(args, square, cols, n_val,
                                                                list(inputs[1]) + list(inputs[4]), names, weights)
        from molret.evaluation.pool import pool_metrics_of
        print(f"pool: {n_val} val queries among {len(cols)} val + test molecules:")
        for m in members:
            member_pool = pool_metrics_of(m.splits["pool"][0], n_val)
            pool_results.setdefault("members", {})[m.name] = member_pool
            print(f"  pool LRAP {member_pool['pool_lrap']:.4f}  {m.name}")
        print(f"  ensemble of {n}:")
        for line in format_report(report):
            print("    " + line)
        if args.unlabelled_by:
            pool_results["unlabelled"] = unlabelled_report(args, members, square, n_val, inputs[1], names, weights)
    elif needs_pool:
        raise MolretError(f"{needs_pool[0]} needs members with val and test embeddings (embeddings folders or "
                          "--models)")

    if pool_results:
        results["pool"] = pool_results
    saved = {}
    if args.save_similarity:
        from molret.utils.files import atomic_np_save, atomic_write_text
        folder = Path(args.save_similarity)
        for split in ("val", "test"):
            if all(split in m.splits for m in members):
                s, rows, cols = ensemble_split(members, split, args)
                atomic_np_save(folder / f"{split}_similarity.npy", s.astype(np.float32))
                for what, ids in (("row", rows), ("col", cols)):
                    if ids is not None:
                        atomic_write_text(folder / f"{split}_{what}_ids.txt", "".join(f"{i}\n" for i in ids))
                saved[split] = s
        print(f"ensemble similarity saved in {folder}")

    if args.out:
        missing = [m.name for m in members if "test" not in m.splits]
        if missing:
            raise MolretError(f"cannot write {args.out}: member {missing[0]} has no test matrix")
        s = saved.get("test")
        if s is None or weights:
            from molret.evaluation.pool import test_matrix
            s, _, _ = ensemble_split(members, "test", args, do_rerank=False)
            s = test_matrix(s, args.rerank, args.rerank_temperature, names, weights, members[0].n_val)
        from molret.evaluation.submission import write_submission
        write_submission(s, args.out)
        print(f"submission ({s.shape[0]} queries x {s.shape[1]} molecules) written to {args.out}")
    if args.json:
        from molret.utils.files import atomic_write_text
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
