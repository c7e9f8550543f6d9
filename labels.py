"""Cluster labels of the train texts (K-means on a model's text embeddings),
used to build batches of similar pairs (hard negatives, main_negativemining.py).

    python labels.py --emb runs/x/embeddings/train_text_emb.npy --n-clusters 30 --out labels.tsv
    python labels.py --model runs/x/best.pt --data-dir data --n-clusters 30 --out labels.tsv

Writes one ``cid<TAB>label`` line per text (ids from the embeddings' _ids.txt
file, or the CIDs of the split when embedding with --model). The clustering and
the labels files: molret.training.mining.
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.labels import build_parser, run
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
