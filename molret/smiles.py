"""SMILES / molecule libraries -> challenge `.graph` files.

The ALTEGRAD-2023 graphs have one node per atom, both directions of every
bond, and one Morgan substructure identifier per atom (the mol2vec
vocabulary).  Measured against the 6,601 official graphs whose SMILES are in
ChEBI-20 (``bench/verify_smiles_graphs.py``), the identifiers are:

* RDKit Morgan environments of **radius 1**, unfolded (32-bit identifiers,
  ``GetMorganFingerprint(mol, 1, bitInfo=...)`` / ``GetMorganGenerator(radius=1)``),
  default options: bond types on, no chirality, no feature invariants, no
  hydrogens added (hydrogens count through the atom invariants only);
* per atom, the radius-1 identifier; when RDKit drops an atom's radius-1
  environment as a duplicate of another atom's (e.g. the second atom of a
  diatomic molecule) or the atom has no bonds, its radius-0 identifier;
* atom invariants as RDKit computed them before it changed the isotope term:
  ``[atomic number, total degree, total Hs, formal charge,
  int(mass - average atomic weight), (1 if in a ring)]``, boost-hashed.  The
  current RDKit default differs only for isotope-labelled atoms ([2H] ...),
  so we compute these invariants ourselves (see ``atom_invariants``).

Radius 0 matches 0.5 % of the molecules, radius 2 2 %, chirality 35 %,
radius 1 without the radius-0 fallback 95 %; this choice matches 99.9 %.  The
remaining differences are structures that PubChem (the source of the official
graphs) draws differently from ChEBI (charge placement / resonance forms, a
metal's implicit hydrogens), not something a SMILES option reproduces.
"""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import MolretError
from .io_utils import atomic_write_text, check_writable_dir

MORGAN_RADIUS = 1
STANDARDIZE_CHOICES = ("none", "normalize", "uncharge")

SMILES_COLUMN_NAMES = ("smiles", "canonical_smiles", "isomeric_smiles")
ID_COLUMN_NAMES = ("cid", "id", "name", "mol_id", "molecule_id", "compound_id")

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv",
    ".smi": "smi", ".smiles": "smi", ".ism": "smi", ".can": "smi",
    ".sdf": "sdf", ".sd": "sdf", ".mol": "sdf",
}
FORMATS = ("csv", "tsv", "smi", "sdf")


class SmilesError(MolretError):
    """A SMILES string (or molecule record) that RDKit cannot turn into a molecule."""


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


# --------------------------------------------------------------------------
# RDKit helpers
# --------------------------------------------------------------------------

_rdkit_quiet = False


def _rdkit():
    """Import RDKit lazily with its logger silenced (we report in our own words)."""
    global _rdkit_quiet
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MolretError(f"RDKit is required for SMILES conversion (pip install rdkit): {e}") from None
    if not _rdkit_quiet:
        RDLogger.DisableLog("rdApp.*")
        _rdkit_quiet = True
    return Chem


_U32 = 0xFFFFFFFF


def _boost_hash(values) -> int:
    """boost::hash_combine over 32-bit ints, as RDKit hashes atom invariants."""
    seed = 0
    for v in values:
        v &= _U32
        seed ^= (v + 0x9E3779B9 + ((seed << 6) & _U32) + (seed >> 2)) & _U32
    return seed


def atom_invariants(mol) -> list[int]:
    """RDKit's Morgan connectivity invariants as used for the challenge graphs.

    Same as RDKit's default except for the isotope term, which current RDKit
    releases compute differently; the official graphs use
    ``int(atom mass - average atomic weight)`` (e.g. 1 for deuterium).
    """
    Chem = _rdkit()
    table = Chem.GetPeriodicTable()
    if mol.NeedsUpdatePropertyCache():  # unsanitised input: compute implicit Hs
        mol.UpdatePropertyCache(strict=False)
    try:
        mol.GetRingInfo().NumAtomRings(0)
    except RuntimeError:  # ring perception not run (unsanitised molecule)
        Chem.FastFindRings(mol)
    ring_info = mol.GetRingInfo()
    out = []
    for atom in mol.GetAtoms():
        z = atom.GetAtomicNum()
        inv = [z, atom.GetTotalDegree(), atom.GetTotalNumHs(), atom.GetFormalCharge(),
               int(atom.GetMass() - table.GetAtomicWeight(z))]
        if ring_info.NumAtomRings(atom.GetIdx()):
            inv.append(1)
        out.append(_boost_hash(inv))
    return out


_generators: dict = {}


def atom_identifiers(mol, radius: int = MORGAN_RADIUS) -> list[str]:
    """One Morgan identifier per atom (atom order of ``mol``), as strings.

    The identifier of the largest radius <= ``radius`` that RDKit kept for
    that atom (duplicate environments are dropped by RDKit).
    """
    _rdkit()
    from rdkit.Chem import rdFingerprintGenerator

    gen = _generators.get(radius)
    if gen is None:
        gen = _generators[radius] = rdFingerprintGenerator.GetMorganGenerator(radius=radius)
    ao = rdFingerprintGenerator.AdditionalOutput()
    ao.AllocateBitInfoMap()
    gen.GetSparseCountFingerprint(mol, customAtomInvariants=atom_invariants(mol), additionalOutput=ao)
    best: list[tuple[int, int] | None] = [None] * mol.GetNumAtoms()
    for ident, envs in ao.GetBitInfoMap().items():
        for atom_idx, r in envs:
            cur = best[atom_idx]
            if cur is None or r > cur[0]:
                best[atom_idx] = (r, ident)
    missing = [i for i, b in enumerate(best) if b is None]
    if missing:  # cannot happen for radius 0 environments; guard anyway
        raise SmilesError(f"RDKit produced no Morgan identifier for atom(s) {missing}")
    return [str(b[1]) for b in best]


def mol_to_graph(mol):
    """RDKit molecule -> ``(edge_index, identifiers)`` in the challenge convention.

    ``edge_index`` is int64 ``[2, 2*bonds]``: for each bond (RDKit order)
    ``(begin, end)`` then ``(end, begin)``; ``identifiers`` has one string per
    atom.  A molecule without bonds gives an empty ``[2, 0]`` edge_index.
    ``mol`` should be sanitised (as ``parse_smiles`` returns it); aromaticity
    and hydrogens are taken as they are in ``mol``.
    """
    if mol is None:
        raise SmilesError("no molecule (None) given to mol_to_graph")
    if mol.GetNumAtoms() == 0:
        raise SmilesError("molecule has no atoms")
    edges = []
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edges.append((a, b))
        edges.append((b, a))
    edge_index = np.array(edges, dtype=np.int64).reshape(-1, 2).T.copy()
    return edge_index, atom_identifiers(mol)


def _standardize(mol, standardize: str):
    if standardize == "none":
        return mol
    from rdkit.Chem.MolStandardize import rdMolStandardize
    if standardize == "normalize":
        return rdMolStandardize.Normalize(mol)
    if standardize == "uncharge":
        return rdMolStandardize.Uncharger().uncharge(mol)
    raise MolretError(f"unknown standardize option {standardize!r}; choose from {', '.join(STANDARDIZE_CHOICES)}")


def _sanitize_reason(mol) -> str | None:
    """Why RDKit refuses to sanitise ``mol`` (None if it would not)."""
    Chem = _rdkit()
    problems = Chem.DetectChemistryProblems(mol)
    if problems:
        msgs = "; ".join(p.Message() for p in problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return f"chemically invalid: {msgs}{more}"
    try:
        Chem.SanitizeMol(Chem.Mol(mol))
    except Exception as e:  # RDKit raises several exception types
        return f"chemically invalid: {e}"
    return None


def parse_smiles(smiles: str, *, standardize: str = "none"):
    """SMILES -> sanitised RDKit molecule (hydrogens removed, isotopes kept).

    Raises SmilesError with the reason (empty, syntax error, valence/aromaticity problem).
    """
    Chem = _rdkit()
    if smiles is None or not str(smiles).strip():
        raise SmilesError("empty SMILES")
    smiles = str(smiles).strip()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None:
            raise SmilesError(f"invalid SMILES {smiles!r}: not valid SMILES syntax (unknown element, unclosed ring or "
                              "bracket, or a stray character)")
        raise SmilesError(f"invalid SMILES {smiles!r}: {_sanitize_reason(raw) or 'RDKit cannot sanitise it'}")
    if mol.GetNumAtoms() == 0:
        raise SmilesError(f"invalid SMILES {smiles!r}: no atoms")
    return _standardize(mol, standardize)


def smiles_to_graph(smiles: str, *, standardize: str = "none"):
    """SMILES -> ``(edge_index, identifiers)``; raises SmilesError on invalid SMILES."""
    return mol_to_graph(parse_smiles(smiles, standardize=standardize))


def graph_to_text(edge_index, identifiers) -> str:
    """Write one graph in the challenge `.graph` format (``"\\n"`` line endings).

    The official files use CRLF line endings; ``molret.graphs.parse_graph_text``
    accepts both, so the text written here round-trips through it.
    """
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    n = len(identifiers)
    if n == 0:
        raise MolretError("graph_to_text: a graph needs at least one atom")
    if ei.size and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise MolretError(f"graph_to_text: edge_index refers to atoms outside 0..{n - 1}")
    parts = ["edgelist:\n"]
    parts.extend(f"{a} {b}\n" for a, b in zip(ei[0].tolist(), ei[1].tolist()))
    parts.append("\nidx to identifier:\n")
    for i, ident in enumerate(identifiers):
        ident = str(ident)
        if not ident or any(c.isspace() for c in ident):
            raise MolretError(f"graph_to_text: identifier {ident!r} of atom {i} is empty or contains whitespace")
        parts.append(f"{i} {ident}\n")
    return "".join(parts)


# --------------------------------------------------------------------------
# Library readers
# --------------------------------------------------------------------------

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


def _read_table(path, delimiter, smiles_column, id_column, standardize) -> Iterator[Record]:
    name = Path(path).name
    rows = _lines(path)
    header_done = False
    s_col = i_col = None
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


def _read_smi(path, standardize) -> Iterator[Record]:
    name = Path(path).name
    first = True
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


def _read_sdf(path, id_property, standardize) -> Iterator[Record]:
    Chem = _rdkit()
    name = Path(path).name
    for rec_no, (start, lines) in enumerate(_sd_blocks(path), 1):
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
            reason = _sanitize_reason(raw) or ("no atoms" if raw.GetNumAtoms() == 0 else "RDKit cannot sanitise it")
            yield Record(ident, None, None, f"{where}: {reason}", where)
            continue
        try:
            mol = _standardize(mol, standardize)
            smiles = Chem.MolToSmiles(mol)
        except Exception as e:
            yield Record(ident, None, None, f"{where}: {e}", where)
            continue
        yield Record(ident, smiles, mol, None, where)


def read_library(path, *, fmt: str | None = None, smiles_column=None, id_column=None,
                 id_property: str | None = None, standardize: str = "none") -> Iterator[Record]:
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
    """
    fmt = (fmt or detect_format(path)).lower()
    if fmt not in FORMATS:
        raise LibraryError(f"unknown library format {fmt!r}; choose from {', '.join(FORMATS)}")
    if standardize not in STANDARDIZE_CHOICES:
        raise MolretError(f"unknown standardize option {standardize!r}; choose from {', '.join(STANDARDIZE_CHOICES)}")
    _open_text(path).close()  # fail now, not on the first next(), if the file cannot be read
    if fmt == "csv":
        return _read_table(path, ",", smiles_column, id_column, standardize)
    if fmt == "tsv":
        return _read_table(path, "\t", smiles_column, id_column, standardize)
    if fmt == "smi":
        return _read_smi(path, standardize)
    return _read_sdf(path, id_property, standardize)


# --------------------------------------------------------------------------
# Writing a challenge-style folder
# --------------------------------------------------------------------------

def check_graph_id(ident: str) -> str | None:
    """Why ``ident`` cannot name a graph file / cids.txt line (None if it can)."""
    if not ident:
        return "empty id"
    if any(c.isspace() for c in ident):
        return f"id {ident!r} contains whitespace (ids are file names and cids.txt lines)"
    if ident in (".", "..") or any(c in ident for c in "/\\\0"):
        return f"id {ident!r} is not a valid file name"
    if len(ident.encode("utf-8")) > 200:
        return f"id {ident[:40]!r}... is longer than 200 bytes"
    return None


def prepare_graph_dir(out_dir) -> Path:
    """Create ``<out_dir>/raw`` and check that files can be written there; returns it.

    Raises MolretError naming the folder if it cannot be created or written.
    """
    out = Path(out_dir)
    return check_writable_dir(out / "raw", shown=out)


def write_graph_dir(records: Iterable[Record], out_dir, *,
                    on_skip: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Write ``<out_dir>/raw/<id>.graph`` per valid record and ``<out_dir>/cids.txt``.

    Each file is written atomically (temporary file + ``os.replace``);
    cids.txt lists the written ids in input order and is written last, so it
    only names graphs that exist.  Records with an error, an id unfit for a
    file name, or an id already written are skipped and reported through
    ``on_skip(message)``.  Other ``.graph`` files already in ``raw/`` are left
    alone; cids.txt defines the library.  Returns ``(written, skipped)``.
    Raises MolretError if the folder cannot be written.
    """
    out = Path(out_dir)
    raw = prepare_graph_dir(out)
    written_ids: list[str] = []
    seen: set[str] = set()
    skipped = 0

    def skip(msg):
        nonlocal skipped
        skipped += 1
        if on_skip is not None:
            on_skip(msg)

    for rec in records:
        if rec.error is not None or rec.mol is None:
            skip(rec.error or f"{rec.where}: no molecule")
            continue
        bad = check_graph_id(rec.id)
        if bad:
            skip(f"{rec.where}: {bad}")
            continue
        if rec.id in seen:
            skip(f"{rec.where}: duplicate id {rec.id!r} (first occurrence kept)")
            continue
        try:
            text = graph_to_text(*mol_to_graph(rec.mol))
        except MolretError as e:
            skip(f"{rec.where}: {e}")
            continue
        try:
            atomic_write_text(raw / f"{rec.id}.graph", text, fsync=False)
        except OSError as e:
            raise MolretError(f"cannot write {raw / (rec.id + '.graph')}: {e.strerror or e}") from None
        seen.add(rec.id)
        written_ids.append(rec.id)
    try:
        atomic_write_text(out / "cids.txt", "".join(f"{i}\n" for i in written_ids))
    except OSError as e:
        raise MolretError(f"cannot write {out / 'cids.txt'}: {e.strerror or e}") from None
    return len(written_ids), skipped
