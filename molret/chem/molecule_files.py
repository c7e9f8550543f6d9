"""Molecule library files (CSV/TSV, .smi, SDF; optionally gzipped) read as ``Record``s, one per molecule.

``read_library`` streams a file and parses each row with RDKit
(``molret.chem.smiles_graph.parse_smiles``); a molecule's graph is
``molret.chem.smiles_graph.mol_to_graph``, writing a folder of ``.graph`` files
``molret.chem.graph_folder.write_graph_dir``.
"""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from molret.utils.errors import MolretError
from molret.chem.smiles_graph import STANDARDIZE_CHOICES, SmilesError, parse_smiles, rdkit_chem
from molret.chem.smiles_graph import sanitize_reason, standardize_mol  # the SDF reader checks and standardises molecules too

SMILES_COLUMN_NAMES = ("smiles", "canonical_smiles", "isomeric_smiles")
ID_COLUMN_NAMES = ("cid", "id", "name", "mol_id", "molecule_id", "compound_id")

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv",
    ".smi": "smi", ".smiles": "smi", ".ism": "smi", ".can": "smi",
    ".sdf": "sdf", ".sd": "sdf", ".mol": "sdf",
}
FORMATS = ("csv", "tsv", "smi", "sdf")


class LibraryError(MolretError):
    """A molecule library file that cannot be read at all (missing, unreadable, bad header)."""


@dataclass
class Record:
    """One entry of a molecule library.

    ``mol`` is a sanitised RDKit molecule, or None with ``error`` saying why
    (the message names the file and the line or record).  ``where`` is
    ``"file:line N"`` / ``"file:record N"``.
    """
    id: str
    smiles: str | None
    mol: object | None
    error: str | None
    where: str

    @property
    def ok(self) -> bool:
        return self.mol is not None


def detect_format(path) -> str:
    """Library format from the file name (``.gz`` allowed): csv, tsv, smi or sdf."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise LibraryError(
            f"{path}: cannot tell the format from the extension {p.suffix!r}; "
            f"use .csv, .tsv, .smi or .sdf (or pass the format explicitly)")
    return fmt


def _open_text(path):
    path = Path(path)
    if not path.exists():
        raise LibraryError(f"input file {path} does not exist")
    if path.is_dir():
        raise LibraryError(f"input {path} is a folder, expected a molecule file")
    try:
        if path.suffix.lower() == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
        return open(path, encoding="utf-8", errors="replace", newline="")
    except OSError as e:
        raise LibraryError(f"cannot read {path}: {e.strerror or e}") from None


def _lines(path):
    """(line number, line without its end) for each line; read errors become LibraryError."""
    f = _open_text(path)
    try:
        with f:
            for n, line in enumerate(f, 1):
                yield n, line.rstrip("\r\n")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise LibraryError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def _record(ident, smiles, where, standardize) -> Record:
    try:
        mol = parse_smiles(smiles, standardize=standardize)
    except SmilesError as e:
        return Record(ident, smiles, None, f"{where}: {e}", where)
    return Record(ident, smiles, mol, None, where)


def _find_column(header, wanted, names, what, path):
    low = [h.strip().lower() for h in header]
    if wanted is not None:
        w = str(wanted).strip()
        if w.lower() in low:
            return low.index(w.lower())
        if w.isdigit() and 1 <= int(w) <= len(header):
            return int(w) - 1
        raise LibraryError(f"{path}: no {what} column {w!r}; the header has: {', '.join(header)}")
    for name in names:
        if name in low:
            return low.index(name)
    return None


def _read_table(path, delimiter, smiles_column, id_column, standardize, select=None) -> Iterator[Record]:
    name = Path(path).name
    rows = _lines(path)
    header_done = False
    s_col = i_col = None
    rec_no = -1
    for n, line in rows:
        if not line.strip():
            continue
        if delimiter == "\t":
            cells = line.split("\t")
        else:
            cells = next(csv.reader([line], delimiter=delimiter))
        cells = [c.strip() for c in cells]
        if not header_done:
            header_done = True
            low = [c.lower() for c in cells]
            is_header = any(c in SMILES_COLUMN_NAMES or c in ID_COLUMN_NAMES for c in low) or (
                smiles_column is not None and not str(smiles_column).isdigit())
            if is_header:
                s_col = _find_column(cells, smiles_column, SMILES_COLUMN_NAMES, "SMILES", path)
                if s_col is None:
                    raise LibraryError(
                        f"{path}: the header ({', '.join(cells)}) has no SMILES column "
                        f"(looked for {'/'.join(SMILES_COLUMN_NAMES)}); name it with the SMILES column option")
                i_col = _find_column(cells, id_column, ID_COLUMN_NAMES, "id", path)
                continue
            # No header: column numbers (1-based) or the default layout.
            s_col = int(smiles_column) - 1 if smiles_column is not None else None
            i_col = int(id_column) - 1 if id_column is not None and str(id_column).isdigit() else None
            if id_column is not None and i_col is None:
                raise LibraryError(f"{path}: id column {id_column!r} given by name but the file has no header")
        rec_no += 1
        if select is not None and not select(rec_no):
            continue
        where = f"{name}:line {n}"
        if s_col is None:  # default layout: id, SMILES (or a lone SMILES)
            if len(cells) == 1:
                smiles, ident = cells[0], f"line{n}"
            else:
                ident, smiles = cells[0], cells[1]
        else:
            if s_col >= len(cells):
                yield Record(f"line{n}", None, None,
                             f"{where}: only {len(cells)} column(s), no SMILES in column {s_col + 1}", where)
                continue
            smiles = cells[s_col]
            ident = cells[i_col] if i_col is not None and i_col < len(cells) else ""
        if not ident:
            ident = f"line{n}"
        yield _record(ident, smiles, where, standardize)


def _read_smi(path, standardize, select=None) -> Iterator[Record]:
    name = Path(path).name
    first = True
    rec_no = -1
    for n, line in _lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 1)
        smiles = parts[0]
        ident = parts[1].strip() if len(parts) > 1 else ""
        if first:
            first = False
            if smiles.lower() in SMILES_COLUMN_NAMES:  # a header line "SMILES Name"
                continue
        rec_no += 1
        if select is not None and not select(rec_no):
            continue
        yield _record(ident or f"line{n}", smiles, f"{name}:line {n}", standardize)


def _sd_blocks(path):
    """(first line number, mol block, data items) per SDF record."""
    block: list[str] = []
    start = None
    for n, line in _lines(path):
        if start is None:
            start = n
        if line.strip() == "$$$$":
            yield start, block
            block, start = [], None
        else:
            block.append(line)
    if block and any(l.strip() for l in block):
        yield start, block


def _read_sdf(path, id_property, standardize, select=None) -> Iterator[Record]:
    Chem = rdkit_chem()
    name = Path(path).name
    for rec_no, (start, lines) in enumerate(_sd_blocks(path), 1):
        if select is not None and not select(rec_no - 1):
            continue
        where = f"{name}:record {rec_no} (line {start})"
        end = next((i for i, l in enumerate(lines) if l.startswith("M  END")), None)
        if end is None:
            yield Record(f"record{rec_no}", None, None, f"{where}: no 'M  END' line, not a mol block", where)
            continue
        props: dict[str, str] = {}
        key = None
        for l in lines[end + 1:]:
            if l.startswith(">"):
                lt, rt = l.find("<"), l.rfind(">")
                key = l[lt + 1:rt] if 0 < lt < rt else None
                if key is not None:
                    props[key] = ""
            elif key is not None:
                if l.strip() == "":
                    key = None
                else:
                    props[key] = (props[key] + "\n" + l) if props[key] else l
        title = lines[0].strip() if lines else ""
        if id_property:
            ident = props.get(id_property, "").strip()
            if not ident:
                yield Record(f"record{rec_no}", None, None,
                             f"{where}: no value for the id property {id_property!r}", where)
                continue
        else:
            ident = title or f"record{rec_no}"
        block = "\n".join(lines[:end + 1]) + "\n"
        raw = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False)
        if raw is None:
            yield Record(ident, None, None, f"{where}: cannot read the mol block (bad counts, atom or bond lines)", where)
            continue
        mol = Chem.MolFromMolBlock(block)  # sanitises and removes hydrogens
        if mol is None or mol.GetNumAtoms() == 0:
            reason = sanitize_reason(raw) or ("no atoms" if raw.GetNumAtoms() == 0 else "RDKit cannot sanitise it")
            yield Record(ident, None, None, f"{where}: {reason}", where)
            continue
        try:
            mol = standardize_mol(mol, standardize)
            smiles = Chem.MolToSmiles(mol)
        except Exception as e:
            yield Record(ident, None, None, f"{where}: {e}", where)
            continue
        yield Record(ident, smiles, mol, None, where)


def read_library(path, *, fmt: str | None = None, smiles_column=None, id_column=None,
                 id_property: str | None = None, standardize: str = "none",
                 select: Callable[[int], bool] | None = None) -> Iterator[Record]:
    """Yield a ``Record`` per molecule of a library file.

    Formats (from the extension unless ``fmt`` is given; ``.gz`` allowed):

    * ``csv`` / ``tsv``: a header is recognised by a column named smiles
      (canonical_smiles, isomeric_smiles; any case) or cid/id/name; without
      one the layout is ``id, SMILES`` (or a lone SMILES column).
      ``smiles_column`` / ``id_column`` pick columns by header name or by
      1-based number.  TSV is split on tabs verbatim (no quoting).
    * ``smi``: ``SMILES [whitespace id]`` per line; ``#`` lines are comments.
    * ``sdf``: id from the title line (``_Name``) or the data item ``id_property``.

    Rows without an id get ``line<N>`` / ``record<N>``.  Invalid rows are
    yielded with ``mol=None`` and ``error`` naming file, line/record and
    reason; only an unreadable file or a bad header raises (LibraryError).
    A missing or unreadable file raises at the call, before any iteration.

    ``select(r)``, when given, gets the 0-based number of each record (every
    data row / SDF record, valid or not, in file order) and a False skips
    it before any RDKit parsing (how ``molret.library.shards`` reads one shard).
    """
    fmt = (fmt or detect_format(path)).lower()
    if fmt not in FORMATS:
        raise LibraryError(f"unknown library format {fmt!r}; choose from {', '.join(FORMATS)}")
    if standardize not in STANDARDIZE_CHOICES:
        raise MolretError(f"unknown standardize option {standardize!r}; choose from {', '.join(STANDARDIZE_CHOICES)}")
    _open_text(path).close()  # fail now, not on the first next(), if the file cannot be read
    if fmt == "csv":
        return _read_table(path, ",", smiles_column, id_column, standardize, select)
    if fmt == "tsv":
        return _read_table(path, "\t", smiles_column, id_column, standardize, select)
    if fmt == "smi":
        return _read_smi(path, standardize, select)
    return _read_sdf(path, id_property, standardize, select)


def count_records(path, *, fmt: str | None = None, smiles_column=None, id_column=None) -> int | None:
    """How many records ``read_library`` yields for ``path`` (rows after the header it recognises, SDF
    records), counted without parsing a molecule: for a progress bar (None when the file cannot be read)."""
    n = 0

    def count(_record_number: int) -> bool:
        nonlocal n
        n += 1
        return False

    try:
        for _ in read_library(path, fmt=fmt, smiles_column=smiles_column, id_column=id_column, select=count):
            pass
    except MolretError:
        return None
    return n or None
