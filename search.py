"""Text search over any molecule library with a trained checkpoint.

    python search.py --model runs/<name>/best.pt --library library.smi "a carboxylic acid ..." -k 10
    python search.py --model best.pt --library data/raw.zip --smiles-map validation.txt \
        --queries-file queries.txt --html report.html

The library's graph embeddings are computed once and cached (next to the
library, or under --cache-dir); later searches only encode the queries.
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.search import build_parser, run
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    main()
