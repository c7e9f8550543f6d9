"""Cluster labels of the train texts (K-means on a model's text embeddings),
used to build batches of similar pairs (hard negatives, main_negativemining.py).

    python labels.py --emb runs/x/embeddings/train_text_emb.npy --n-clusters 30 --out labels.tsv
    python labels.py --model runs/x/best.pt --data-dir data --n-clusters 30 --out labels.tsv

Writes one ``cid<TAB>label`` line per text (ids from the embeddings' _ids.txt
file, or the CIDs of the split when embedding with --model).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from molret.cli.common import add_inference_args, inference_device
from molret.utils.errors import user_errors
from molret.utils.errors import MolretError
from molret.training.mining import cluster_labels, read_labels, write_labels  # noqa: F401  (importable API)

__all__ = ["cluster_labels", "read_labels", "write_labels", "main"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labels.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--emb", metavar="NPY", help="text embeddings [N, D] (.npy, e.g. from get_text_embeddings.py)")
    src.add_argument("--model", metavar="CKPT", help="embed the split's texts with this checkpoint (or an ensemble's "
                                                      "model file, recipe.py's model.pt) first")
    p.add_argument("--ids", metavar="TXT", help="ids of the embeddings' rows, one per line "
                                                "(default: the _text_ids.txt beside a *_text_emb.npy)")
    p.add_argument("--data-dir", help="with --model: the challenge data folder (default: the checkpoint's)")
    p.add_argument("--cache-dir", help="with --model: cache folder (default: the checkpoint's)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="with --model: which split")
    p.add_argument("--n-clusters", type=int, default=30, help="number of K-means clusters")
    p.add_argument("--seed", type=int, default=0, help="K-means random state")
    p.add_argument("--out", required=True, help="labels file to write (cid<TAB>label)")
    add_inference_args(p, flags=("device", "threads", "batch_size"), batch_size=256,
                       batch_help="with --model: embedding batch size")
    return p


def _default_ids(emb_path: Path) -> Path:
    name = emb_path.name
    if name.endswith("_emb.npy"):
        return emb_path.with_name(name[: -len("_emb.npy")] + "_ids.txt")
    raise MolretError(f"give --ids for {emb_path} (no *_emb.npy name to find its ids file from)")


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    if args.emb:
        from molret.ranking.ensemble import read_ids
        emb_path = Path(args.emb)
        try:
            emb = np.load(emb_path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise MolretError(f"cannot read {emb_path}: {e}") from None
        ids = read_ids(args.ids or _default_ids(emb_path))
        if len(ids) != len(emb):
            raise MolretError(f"{len(ids)} ids for {len(emb)} embeddings")
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


if __name__ == "__main__":
    main()
