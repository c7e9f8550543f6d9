"""Decode challenge graphs back to molecules: one SMILES per .graph file.

    python graphs_to_smiles.py data/raw.zip --out decoded.tsv
    python graphs_to_smiles.py my_library/ --out my_library.tsv      # a folder with raw/ (smiles_to_graph.py)

writes ``id<TAB>smiles<TAB>status`` under one header line: status is
``exact``, or the reason a graph could not be decoded (empty SMILES).  The
SMILES carry no stereochemistry (the graphs have none).  The decoder is
``molret.chem.graph_decoder`` / ``molret.chem.store_decoding``; the results are cached
with the library, as search.py caches its embeddings.
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.graphs_to_smiles import build_parser, run
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
