"""Convert a molecule library (SMILES or SDF) into challenge-style `.graph` files.

    python smiles_to_graph.py molecules.csv --out my_library

writes my_library/raw/<id>.graph (one per valid molecule, the ALTEGRAD-2023
format: one node per atom, both bond directions, one radius-1 Morgan
identifier per atom) and my_library/cids.txt (the ids in input order), so the
folder can be searched like the challenge's molecule set (flags:
molret/cli/smiles_to_graph.py, ``--help``).
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.smiles_to_graph import build_parser, run
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
