"""Export the final (L2-normalised) text embeddings of a trained model for a
split, with their ids (CIDs for train/val, query line numbers for test);
--graphs also exports the molecules' embeddings.

    python get_text_embeddings.py --model runs/x/best.pt --split train
    python get_text_embeddings.py --model runs/x/best.pt --split val --graphs --out runs/x/embeddings/val

Writes PREFIX_text_emb.npy + PREFIX_text_ids.txt (and PREFIX_graph_emb.npy +
PREFIX_graph_ids.txt with --graphs); the default PREFIX is
<checkpoint folder>/embeddings/<split>, the layout of main.py --save-embeddings.
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.text_embeddings import build_parser, run
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
