"""The command line of predictions.py: its flags, made into PredictionOptions for molret.api.predictions."""
from __future__ import annotations

import argparse

from molret.api.predictions import FULL_MATRIX_MAX, PredictionOptions
from molret.api.predictions import predict as predict_options
from molret.cli.flags import add_claims_arg, add_names_arg
from molret.cli.common import (add_index_args, add_inference_args, add_library_args, index_options, inference_device,
                               reader_options)
from molret.ranking.rerank import METHODS as RERANK_METHODS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predictions.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Write the Kaggle submission of a trained checkpoint: row i = query i of "
                                            "test_text.txt scored against the molecules of test_cids.txt.")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="checkpoint written by main.py (best.pt/last.pt), or an ensemble's model file (the model.pt "
                        "of recipe.py, ensemble_method.py --save-model: its members, weights, names and re-ranking "
                        "write the recipe's submission)")
    p.add_argument("--data-dir", help="challenge data folder (default: the one the model was trained on)")
    p.add_argument("--out", default="submission.csv", help="submission CSV to write")
    p.add_argument("--save-embeddings", metavar="DIR",
                   help="also save test text/graph embeddings (.npy + ids) and the similarity matrix in DIR")
    p.add_argument("--rerank", choices=list(RERANK_METHODS),
                   help="rescale the similarity using the one-query-one-molecule structure of the test set "
                        "(default: the checkpoint's training setting or the model file's, so the run's "
                        "submission.csv is reproduced)")
    p.add_argument("--rerank-temperature", type=float,
                   help="temperature of --rerank (default: the checkpoint's or the model file's, else 0.05)")
    add_names_arg(p, None, "weights fitted on val.tsv (a model file: its own weights; default: the checkpoint's "
                           "training setting, opsin for a model file that carries name weights)")
    add_claims_arg(p, "the bonus of each query's top-k molecules in the val + test pool (the test molecules "
                      "alone without val.tsv or with --no-pool), as the ensemble fused it; default: stored when "
                      "the model file carries a claims scorer, none otherwise (and with --library)")
    p.add_argument("--no-pool", action="store_true",
                   help="skip the val report (pool metrics: val queries among val + test molecules)")
    add_inference_args(p, batch_help="embedding batch size (default: the training eval batch size)")
    p.add_argument("--cache-dir", help="cache folder for parsed graphs and tokens (with --library: for the "
                                       "library's graph embeddings, next to the library when not given)")
    g = p.add_argument_group("library mode (score the queries against any molecule library)")
    g.add_argument("--library", metavar="FILE",
                   help="score against this SMILES library (.smi/.csv/.tsv/.sdf), graph library (raw.zip, "
                        "folder) or shard folder of embed_library.py (up to "
                        f"{FULL_MATRIX_MAX:,} molecules without --top-k) instead of test_cids.txt: columns in "
                        "library order (invalid rows skipped), their ids written to <out stem>_ids.txt (line i+1 = "
                        "column i)")
    g.add_argument("--queries", metavar="FILE",
                   help="with --library: queries, one per line, row ID i = line i+1; test_text.txt of the data "
                        "folder when not given")
    g.add_argument("--top-k", type=int, metavar="K",
                   help="with --library: write only the K best molecules of each query, as rows query,rank,id,score "
                        "(query = row ID, rank 1 = best), from --index: for libraries too large for a full matrix")
    g.add_argument("--smiles", action="store_true",
                   help="with --top-k: add a smiles column (a graph library's SMILES are decoded from its graphs: "
                        "exact, but without stereochemistry, which the graphs do not carry; empty where a graph "
                        "could not be decoded)")
    add_index_args(g, rerank_flag="--index-rerank")
    add_library_args(p)
    return p


def prediction_options(args) -> PredictionOptions:
    """PredictionOptions of the parsed flags (the index flags range-checked, --threads applied)."""
    return PredictionOptions(
        model=args.model, out=args.out, device=inference_device(args), data_dir=args.data_dir,
        cache_dir=args.cache_dir, batch_size=args.batch_size, save_embeddings=args.save_embeddings,
        rerank=args.rerank, rerank_temperature=args.rerank_temperature, names=args.names, claims=args.claims, no_pool=args.no_pool,
        progress=not args.no_progress, library=args.library, queries=args.queries, top_k=args.top_k,
        smiles=args.smiles, index=index_options(args), reader=reader_options(args))


def predict(args) -> dict:
    """predictions.py's job: the submission (or library scores) of its flags."""
    return predict_options(prediction_options(args))
