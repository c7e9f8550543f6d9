"""get_text_embeddings.py's flags and run: export a split's embeddings of a trained model
(the engine: ``molret.ranking.embedding_files.export_embeddings``)."""
from __future__ import annotations

import argparse

import numpy as np

from molret.cli.common import add_inference_args, inference_device
from molret.ranking.ensemble import SPLITS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="get_text_embeddings.py",
                                description="Export the final (L2-normalised) text embeddings of a trained model "
                                            "for a split, with their ids (CIDs for train/val, query line numbers "
                                            "for test); --graphs also exports the molecules' embeddings.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="checkpoint written by main.py (best.pt), or an ensemble's model file (recipe.py's model.pt)")
    p.add_argument("--split", default="train", choices=SPLITS, help="which split's texts")
    p.add_argument("--data-dir", help="challenge data folder (default: the checkpoint's)")
    p.add_argument("--cache-dir", help="cache folder for parsed graphs and tokens (default: the checkpoint's "
                                       "for its own data folder, else <data-dir>/cache)")
    p.add_argument("--out", metavar="PREFIX", help="output prefix (default: <checkpoint folder>/embeddings/<split>)")
    p.add_argument("--graphs", action="store_true", help="also export the graph embeddings of the split")
    add_inference_args(p, batch_size=256, batch_help="embedding batch size")
    return p


def run(args) -> dict:
    """Export, print what was written, return {what: path}."""
    from molret.ranking.embedding_files import export_embeddings
    paths = export_embeddings(args.model, args.split, args.out, args.graphs, args.data_dir, args.cache_dir,
                              inference_device(args), args.batch_size, progress=not args.no_progress)
    shape = np.load(paths["text_emb"], mmap_mode="r").shape
    print(f"{args.split}: {shape[0]} text embeddings of dimension {shape[1]}")
    for what, p in paths.items():
        print(f"  {what}: {p}")
    return paths
