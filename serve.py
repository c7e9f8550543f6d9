"""A local web page to search a molecule library by description.

    python serve.py --model runs/<name>/best.pt --library data/raw.zip \
        --smiles-map chebi20/validation.txt --smiles-map chebi20/test_smiles.tsv
    # then open http://127.0.0.1:8000/  (JSON: /api/search?q=...&k=10, /api/health)

The checkpoint and the library are loaded once (library embeddings cached as
for search.py). Listens on 127.0.0.1 unless --host says otherwise: the page
has no authentication.
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.serve import build_parser, serve
    args = build_parser().parse_args(argv)
    return serve(args)


if __name__ == "__main__":
    main()
