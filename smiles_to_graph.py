"""Convert a molecule library (SMILES or SDF) into challenge-style `.graph` files.

    python smiles_to_graph.py molecules.csv --out my_library

writes my_library/raw/<id>.graph (one per valid molecule, the ALTEGRAD-2023
format: one node per atom, both bond directions, one radius-1 Morgan
identifier per atom) and my_library/cids.txt (the ids in input order), so the
folder can be searched like the challenge's molecule set.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molret.utils.errors import MolretError
from molret.chem import graph_folder
from molret.chem import molecule_files as S


def _count_records(path: Path, fmt: str):
    """Number of records for the progress bar (None when not cheap to tell)."""
    import gzip
    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rb") as f:
            if fmt == "sdf":
                return sum(1 for line in f if line.strip() == b"$$$$") or None
            n, header = 0, False
            for line in f:
                if line.strip():
                    if n == 0:  # a header line is not a molecule
                        low = line.decode("utf-8", "replace").lower()
                        header = "smiles" in low or any(
                            c.strip() in S.ID_COLUMN_NAMES for c in low.replace(",", "\t").split("\t"))
                    n += 1
            return (n - header) or None
    except (OSError, EOFError):
        return None


def build_parser():
    ap = argparse.ArgumentParser(
        prog="smiles_to_graph.py",
        description=__doc__.split("\n\n")[0] + " Writes OUT/raw/<id>.graph and OUT/cids.txt; "
                    "invalid molecules are skipped with a reason, never stopping the run.",
        epilog="Input formats: .csv/.tsv (a header with a 'smiles' column and optionally "
               "cid/id/name, or no header and 'id,SMILES' rows), .smi ('SMILES [id]' per line), "
               ".sdf (id from the title line or --id-property); .gz compressed files too. "
               "Rows without an id get 'line<N>' / 'record<N>'. Example: "
               "python smiles_to_graph.py ../shared/data/chebi20/test_smiles.tsv --out /tmp/chebi_graphs",
    )
    ap.add_argument("input", type=Path, help="molecule file: .csv, .tsv, .smi or .sdf")
    ap.add_argument("--out", type=Path, required=True,
                    help="output folder (created if needed); gets raw/<id>.graph and cids.txt")
    ap.add_argument("--format", choices=S.FORMATS, default=None,
                    help="input format (default: from the file extension)")
    ap.add_argument("--smiles-column", default=None,
                    help="CSV/TSV: SMILES column, by header name or 1-based number "
                         "(default: a column named smiles, else the 2nd column)")
    ap.add_argument("--id-column", default=None,
                    help="CSV/TSV: id column, by header name or 1-based number "
                         "(default: a column named cid/id/name, else the 1st column)")
    ap.add_argument("--id-property", default=None,
                    help="SDF: data item holding the id (default: the record's title line)")
    ap.add_argument("--standardize", choices=S.STANDARDIZE_CHOICES, default="none",
                    help="RDKit standardisation before building graphs (default: none, which "
                         "matches the official challenge graphs best)")
    ap.add_argument("--show-skips", type=int, default=5, metavar="N",
                    help="how many skip reasons to print in the summary (default: 5)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    reasons: list[str] = []
    try:
        fmt = args.format or S.detect_format(args.input)
        records = S.read_library(args.input, fmt=fmt, smiles_column=args.smiles_column,
                                 id_column=args.id_column, id_property=args.id_property,
                                 standardize=args.standardize)
        graph_folder.prepare_graph_dir(args.out)  # fail before the progress bar if OUT is not writable
        bar = None
        if not args.no_progress:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                records = bar = tqdm(records, total=_count_records(args.input, fmt), unit="mol",
                                     desc=args.input.name, file=sys.stderr, dynamic_ncols=True)
        try:
            written, skipped = graph_folder.write_graph_dir(records, args.out, on_skip=reasons.append)
        finally:
            if bar is not None:
                bar.close()
    except MolretError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted (files written so far are complete; cids.txt was not updated)")

    print(f"written {written} graph(s) to {args.out / 'raw'}, ids in {args.out / 'cids.txt'}")
    print(f"skipped {skipped}")
    for r in reasons[:max(args.show_skips, 0)]:
        print(f"  {r}")
    if skipped > len(reasons[:max(args.show_skips, 0)]):
        print(f"  ... and {skipped - max(args.show_skips, 0)} more")
    if written == 0:
        sys.exit(f"error: no molecule in {args.input} could be converted")
    return 0


if __name__ == "__main__":
    main()
