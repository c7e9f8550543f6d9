"""Build the Morgan environment table that molret ships for the graph decoder.

    python tools/build_env_table.py ../shared/data/chebi20/validation.txt ../shared/data/chebi20/test_smiles.tsv

reads SMILES from each file (a header naming a SMILES column, as ChEBI-20's
files have, or ``id<TAB>SMILES`` lines), computes the radius-1 Morgan
environment of every atom (``molret.chem.graph_decoder.molecule_environments``)
and writes them, one a line, to ``molret/chem/resources/morgan_env_table.tsv.gz``
(or ``--out``).  The table holds chemistry only (atom invariants and their
bonded neighbours), no molecule ids or descriptions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from molret.utils.errors import MolretError  # noqa: E402
from molret.chem.morgan_env import TABLE_PATH, EnvironmentTable  # noqa: E402
from molret.chem.smiles_graph import add_smiles  # noqa: E402
from molret.library.reading import read_smiles_map  # noqa: E402

HEADER = ("Morgan radius-1 environments (centre invariant<TAB>bond type:neighbour invariant;...),\n"
          "invariant = atomic number,total degree,total H,formal charge,isotope term,in ring.\n"
          "Built by tools/build_env_table.py from the SMILES of ChEBI-20 (Edwards et al. 2021),\n"
          "ChEBI data (https://www.ebi.ac.uk/chebi/), licensed CC BY 4.0.")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="build_env_table.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="SMILES files (TSV/CSV with a SMILES column)")
    ap.add_argument("--out", type=Path, default=TABLE_PATH, help=f"output file (default: {TABLE_PATH})")
    args = ap.parse_args(argv)
    table = EnvironmentTable()
    try:
        for path in args.inputs:
            read, new = add_smiles(table, read_smiles_map(path).values())
            print(f"{path}: {read:,} molecules, {new:,} new environments")
        table.save(args.out, HEADER)
    except MolretError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {len(table):,} environments to {args.out}")


if __name__ == "__main__":
    main()
