"""The command line of ensemble_method.py: its flags, turned into the ensemble engine's options."""
from __future__ import annotations

import argparse

from molret.cli.common import add_inference_args
from molret.cli.flags import add_names_arg, ranged
from molret.ranking.claims.fusion import TOP_K_LIMITS
from molret.ranking.ensemble import NORMALIZATIONS
from molret.ranking.ensemble_engine import EnsembleOptions
from molret.ranking.pseudo_labels import MARGIN_LIMITS
from molret.ranking.rerank import METHODS, SINKHORN_ITERS

USAGE = """Ensemble several models into one submission: the weighted mean of their
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

    python ensemble_method.py --members runs/a/embeddings runs/b/embeddings --fit-weights --names opsin \\
        --rerank sinkhorn --data-dir data --out ensemble.csv --save-model ensemble.pt
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ensemble_method.py", description=USAGE.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=USAGE.split("\n\n", 1)[1])
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
    p.add_argument("--sinkhorn-iters", type=ranged(int, "sinkhorn_iters", (1, 100_000, False)), default=SINKHORN_ITERS,
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
    add_names_arg(p, "none", "with the ensemble's scores, weights fitted on val; needs --data-dir (or --models) for "
                             "the texts and graphs")
    p.add_argument("--claims", action="store_true",
                   help="fuse the claims scorer with the ensemble's scores before re-ranking (and before the names): "
                        "rules read what each query states (charge, chain lengths, groups, rings, classes...), a "
                        "ranker fitted on the training pairs of --data-dir scores how each of the query's top "
                        "candidates agrees; its weight is fitted on val; the pool report is printed with and without "
                        "it (docs/experiments.md \"Claims scorer (issue 31)\"); needs --data-dir")
    p.add_argument("--claims-top-k", type=ranged(int, "claims_top_k", (TOP_K_LIMITS[0], TOP_K_LIMITS[1], False)),
                   default=50, metavar="K", help="with --claims: the candidates scored per query (default: 50)")
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
    p.add_argument("--save-model", metavar="FILE",
                   help="write the ensemble as one model file (the members' checkpoints, the final fit's with "
                        "--test-members, with the weights used, the fitted name weights and the re-ranking): "
                        "search.py, serve.py, predictions.py and the Python API load it like a checkpoint; needs "
                        "--normalize none and each member's best.pt (--models, or beside a members' embeddings folder)")
    p.add_argument("--reduce-dim", type=ranged(int, "reduce_dim", (0, 65_536, False)), default=0, metavar="D",
                   help="with --save-model: write the model file with a PCA projection of its joined embeddings to "
                        "D dimensions (fitted on the pool's val + test texts and molecules; needs --data-dir), so "
                        "that a library costs D, not the members' summed width, per molecule; cosines are then "
                        "approximate: the exact and reduced pool LRAP are printed (0: exact)")
    p.add_argument("--hubness-temperature", type=ranged(float, "hubness_temperature", (0.0, 10.0, False)), default=0.0,
                   metavar="T", help="with --save-model: store the training texts' embeddings (train.tsv of "
                                     "--data-dir) so that a library search with the file corrects hubness at this "
                                     "temperature by default (search.py --hubness isoftmax; 0: none)")
    p.add_argument("--save-similarity", metavar="FOLDER",
                   help="also save the ensemble's <split>_similarity.npy (+ ids) there (usable as a --members entry)")
    add_inference_args(p, flags=("device",))  # for --models
    p.add_argument("--json", metavar="PATH", help="write the val metrics as JSON")
    return p


def options_from_args(args) -> EnsembleOptions:
    return EnsembleOptions(
        models=list(args.models), members=list(args.members), data_dir=args.data_dir, cache_dir=args.cache_dir,
        weights=args.weights, normalize=args.normalize, rerank=args.rerank,
        rerank_temperature=args.rerank_temperature, sinkhorn_iters=args.sinkhorn_iters,
        fit_weights=args.fit_weights, test_members=args.test_members, groups=args.groups, names=args.names,
        claims_top_k=args.claims_top_k if args.claims else 0,
        pseudo_labels=args.pseudo_labels, pseudo_margin=args.pseudo_margin, unlabelled_by=args.unlabelled_by,
        out=args.out, save_similarity=args.save_similarity, save_model=args.save_model,
        reduce_dim=args.reduce_dim, hubness_temperature=args.hubness_temperature, device=args.device,
        json=args.json)
