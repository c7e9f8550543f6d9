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

from molret.cli import user_errors
from molret.ensemble import (NORMALIZATIONS, Member, check_aligned, checkpoint_embeddings, combine,
                             member_from_embeddings, member_from_path, val_targets)
from molret.errors import MolretError
from molret.metrics import retrieval_metrics
from molret.rerank import METHODS, rerank


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
    p.add_argument("--sinkhorn-iters", type=int, default=100, help="maximum Sinkhorn iterations (default: 100)")
    p.add_argument("--out", help="test submission CSV to write (default: none)")
    p.add_argument("--save-similarity", metavar="FOLDER",
                   help="also save the ensemble's <split>_similarity.npy (+ ids) there (usable as a --members entry)")
    p.add_argument("--device", default="auto", help="for --models: auto, cpu, cuda or cuda:N")
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


def ensemble_split(members: list[Member], split: str, args):
    """(combined and re-ranked matrix, row ids, col ids) of ``split``."""
    check_aligned(members, split)
    combined = combine([m.splits[split][0] for m in members], args.weights, args.normalize)
    if args.rerank != "none":
        combined = rerank(combined, args.rerank, args.rerank_temperature, n_iter=args.sinkhorn_iters)
    _, rows, cols = next((m.splits[split] for m in members if m.splits[split][1] is not None), members[0].splits[split])
    return combined, rows, cols


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    n = len(args.models) + len(args.members)
    if n == 0:
        raise MolretError("give at least one member (--models and/or --members)")
    if args.weights is not None and len(args.weights) != n:
        raise MolretError(f"--weights has {len(args.weights)} values for {n} members")
    members = load_members(args)
    results = {}

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

    saved = {}
    if args.save_similarity:
        from molret.io_utils import atomic_np_save, atomic_write_text
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
        if s is None:
            s, _, _ = ensemble_split(members, "test", args)
        from molret.submission import write_submission
        write_submission(s, args.out)
        print(f"submission ({s.shape[0]} queries x {s.shape[1]} molecules) written to {args.out}")
    if args.json:
        from molret.io_utils import atomic_write_text
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
