"""labels.py's flags and run: K-means cluster labels of a split's text embeddings (an exported file's, or a
model's), written as ``cid<TAB>label`` lines (the clustering: ``molret.training.mining``)."""
from __future__ import annotations

import argparse

import numpy as np

from molret.cli.common import add_inference_args, inference_device
from molret.ranking.ensemble import SPLITS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labels.py", description="Cluster labels of the train texts (K-means on a "
                                "model's text embeddings), used to build batches of similar pairs (hard "
                                "negatives, main_negativemining.py).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--emb", metavar="NPY", help="text embeddings [N, D] (.npy, e.g. from get_text_embeddings.py)")
    src.add_argument("--model", metavar="CKPT", help="embed the split's texts with this checkpoint (or an ensemble's "
                                                      "model file, recipe.py's model.pt) first")
    p.add_argument("--ids", metavar="TXT", help="ids of the embeddings' rows, one per line "
                                                "(default: the _text_ids.txt beside a *_text_emb.npy)")
    p.add_argument("--data-dir", help="with --model: the challenge data folder (default: the checkpoint's)")
    p.add_argument("--cache-dir", help="with --model: cache folder (default: the checkpoint's)")
    p.add_argument("--split", default="train", choices=SPLITS, help="with --model: which split")
    p.add_argument("--n-clusters", type=int, default=30, help="number of K-means clusters")
    p.add_argument("--seed", type=int, default=0, help="K-means random state")
    p.add_argument("--out", required=True, help="labels file to write (cid<TAB>label)")
    add_inference_args(p, flags=("device", "threads", "batch_size"), batch_size=256,
                       batch_help="with --model: embedding batch size")
    return p


def run(args) -> np.ndarray:
    """Cluster, write the labels file, print the cluster sizes; return the labels."""
    from molret.training.mining import cluster_labels, write_labels
    if args.emb:
        from molret.ranking.embedding_files import read_embeddings
        emb, ids = read_embeddings(args.emb, args.ids)
    else:
        from molret.ranking.ensemble import checkpoint_embeddings
        e = checkpoint_embeddings(args.model, (args.split,), data_dir=args.data_dir, cache_dir=args.cache_dir,
                                  device=inference_device(args), batch_size=args.batch_size)[args.split]
        emb, ids = e.text_emb, [str(i) for i in e.text_ids]
    labels = cluster_labels(emb, args.n_clusters, args.seed)
    write_labels(args.out, ids, labels)
    sizes = np.bincount(labels, minlength=args.n_clusters)
    print(f"{len(labels)} texts in {args.n_clusters} clusters (sizes {sizes.min()}-{sizes.max()}, "
          f"median {int(np.median(sizes))}); labels written to {args.out}")
    return labels
