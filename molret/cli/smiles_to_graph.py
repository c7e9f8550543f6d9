"""smiles_to_graph.py's flags and run: a molecule library (SMILES or SDF) to challenge-style `.graph` files.

The reading is ``molret.chem.molecule_files`` (the readers every library goes
through), the writing ``molret.chem.graph_folder``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molret.chem import graph_folder
from molret.chem import molecule_files as S
from molret.utils.errors import MolretError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="smiles_to_graph.py",
        description="Convert a molecule library (SMILES or SDF) into challenge-style `.graph` files. "
                    "Writes OUT/raw/<id>.graph and OUT/cids.txt; "
                    "invalid molecules are skipped with a reason, never stopping the run.",
        epilog="Input formats: .csv/.tsv (a header with a 'smiles' column and optionally "
               "cid/id/name, or no header and 'id,SMILES' rows), .smi ('SMILES [id]' per line), "
               ".sdf (id from the title line or --id-property); .gz compressed files too. "
               "Rows without an id get 'line<N>' / 'record<N>'. Example: "
               "python smiles_to_graph.py molecules.tsv --out my_library",
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


def convert(args) -> tuple[int, int, list]:
    """Read ``args.input``, write its graphs to ``args.out``: (written, skipped, skip reasons)."""
    reasons: list[str] = []
    fmt = args.format or S.detect_format(args.input)
    records = S.read_library(args.input, fmt=fmt, smiles_column=args.smiles_column, id_column=args.id_column,
                             id_property=args.id_property, standardize=args.standardize)
    graph_folder.prepare_graph_dir(args.out)  # fail before the progress bar if OUT is not writable
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        total = S.count_records(args.input, fmt=fmt, smiles_column=args.smiles_column, id_column=args.id_column)
        records = bar = tqdm(records, total=total, unit="mol", desc=args.input.name, file=sys.stderr,
                             dynamic_ncols=True)
    try:
        written, skipped = graph_folder.write_graph_dir(records, args.out, on_skip=reasons.append)
    except KeyboardInterrupt:
        raise MolretError("interrupted (files written so far are complete; cids.txt was not updated)") from None
    finally:
        if bar is not None:
            bar.close()
    return written, skipped, reasons


def run(args) -> int:
    """Convert, print the summary; no molecule converted is an error."""
    written, skipped, reasons = convert(args)
    shown = reasons[:max(args.show_skips, 0)]
    print(f"written {written} graph(s) to {args.out / 'raw'}, ids in {args.out / 'cids.txt'}")
    print(f"skipped {skipped}")
    for r in shown:
        print(f"  {r}")
    if skipped > len(shown):
        print(f"  ... and {skipped - max(args.show_skips, 0)} more")
    if written == 0:
        raise MolretError(f"no molecule in {args.input} could be converted")
    return 0
