"""Molecule libraries: what a library path holds, reading it into graphs,
the fingerprint of its content, and id -> SMILES maps.

A *library* is either

* a SMILES library (``.smi``/``.csv``/``.tsv``/``.sdf``, optionally ``.gz``),
  read with ``molret.chem.molecule_files.read_library``; invalid rows are skipped and
  counted, each valid molecule becomes a challenge-style graph
  (``mol_to_graph``); or
* a challenge-style graph library: a ``raw.zip``, a folder of ``<id>.graph``
  files, or a folder holding ``raw/`` or ``raw.zip`` (the challenge data
  folder, or what ``smiles_to_graph.py`` writes: its ``cids.txt`` then sets
  the ids and their order).  Ids are the file names (CIDs); the SMILES are
  decoded from the graphs themselves (``molret.chem.store_decoding``: exact
  structures, without stereochemistry, which the graphs do not carry; a
  ``--smiles-map`` may give better ones), and ``Library.smiles_status`` says
  why a graph could not be decoded.

Caching the parsed library and its embeddings is ``molret.library.caches``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from molret.utils.errors import MolretError
from molret.utils.files import atomic_write_text

if TYPE_CHECKING:  # graph_store imports torch: loaded only where graphs are parsed
    from molret.data.graph_store import GraphStore

FINGERPRINT_VERSION = 1
MAX_REPORTED_INVALID = 20
DECODING_CACHE = "decoded.npz"         # a graph library's decoded SMILES, in its cache folder


@dataclass
class Library:
    """Molecules of one library file/folder, in library order."""
    path: Path
    kind: str                              # "smiles" | "graphs"
    ids: list
    smiles: list                           # SMILES per molecule, None when unknown
    fingerprint: str
    invalid: int = 0                       # rows/files skipped
    invalid_examples: list = field(default_factory=list)
    graphs: GraphStore | None = None       # None when only embeddings were loaded from the cache
    # Graph libraries: per molecule, the decoder's status ("exact", or why the graph could not be decoded);
    # None for SMILES libraries, or when not known (loaded from an embedding cache).
    smiles_status: list | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def smiles_decoded(self) -> bool:
        """True when the SMILES were decoded from the graphs (no stereochemistry)."""
        return self.kind == "graphs"


@dataclass
class ReaderOptions:
    """How a SMILES library is read (part of the library fingerprint)."""
    fmt: str | None = None
    smiles_column: str | None = None
    id_column: str | None = None
    id_property: str | None = None
    standardize: str = "none"


# ------------------------------------------------------------------ layout

def library_cache_dir(path, cache_dir=None) -> Path:
    """Where a library's caches live (``molret.library.caches``, and the decoded SMILES of a graph library).

    ``<library>.molret-cache/`` next to the library when its folder is
    writable; with ``cache_dir`` (or when the library's folder is read-only:
    ``$MOLRET_CACHE`` or ``~/.cache/molret``) ``<base>/search/<name>-<hash of
    the library's absolute path>/``.
    """
    from molret.utils import cache
    p = Path(path).resolve()
    tag = f"{p.name}-{cache.path_tag(p)}"
    if cache_dir:
        return Path(cache_dir) / "search" / tag
    return cache.preferred_or_user_dir(p.parent / f"{p.name}.molret-cache", f"search/{tag}")


def library_kind(path) -> str:
    p = Path(path)
    if not p.exists():
        raise MolretError(f"library {p} does not exist")
    if p.is_dir() or p.suffix.lower() == ".zip":
        return "graphs"
    return "smiles"


def graph_layout(path) -> tuple:
    """(graph source path: raw.zip or a folder of .graph files, ids file or None) of a graph library."""
    path = Path(path)
    if not path.exists():
        raise MolretError(f"library {path} does not exist")
    if path.is_file():
        return path, None
    ids_file = path / "cids.txt" if (path / "cids.txt").is_file() else None
    if (path / "raw").is_dir():
        return path / "raw", ids_file
    if (path / "raw.zip").is_file():
        return path / "raw.zip", ids_file
    try:
        has_graphs = any(e.name.endswith(".graph") for e in os.scandir(path))
    except OSError as e:
        raise MolretError(f"cannot read library folder {path}: {e.strerror or e}") from None
    if not has_graphs:
        raise MolretError(f"library folder {path} has no raw/, raw.zip or .graph files")
    return path, ids_file


def id_sort_key(ident: str):
    """Numeric ids (CIDs) in numeric order, then the others by name."""
    return (0, int(ident), "") if ident.isdigit() else (1, 0, ident)


def list_graph_ids(source_path, ids_file=None) -> list:
    """The ids of a graph library (as ``graph_layout`` gives its parts): the lines of ``ids_file``, else
    the names of its ``.graph`` files in ``id_sort_key`` order; MolretError when unreadable or empty."""
    source_path = Path(source_path)
    if ids_file is not None:
        try:
            lines = ids_file.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise MolretError(f"cannot read {ids_file}: {e.strerror or e}") from None
        return [line.strip() for line in lines if line.strip()]
    if source_path.is_file():
        try:
            with zipfile.ZipFile(source_path) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile) as e:
            raise MolretError(f"{source_path}: not a readable zip file ({e})") from None
        ids = [Path(n).stem for n in names if n.endswith(".graph")]
    else:
        ids = [e.name[:-len(".graph")] for e in os.scandir(source_path) if e.name.endswith(".graph")]
    if not ids:
        raise MolretError(f"{source_path}: no .graph files")
    return sorted(set(ids), key=id_sort_key)


# ------------------------------------------------------------- fingerprint

def _sha1_file(path: Path, h=None):
    h = h or hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise MolretError(f"cannot read {path}: {e.strerror or e}") from None
    return h


def _file_content_hash(path: Path, memo_dir: Path | None) -> str:
    """sha1 of a file's bytes, memoised in ``memo_dir`` under its (size, mtime, inode)."""
    st = path.stat()
    stamp = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    memo = memo_dir / "content-hash.json" if memo_dir is not None else None
    if memo is not None and memo.is_file():
        try:
            d = json.loads(memo.read_text())
            if d.get("stamp") == stamp:
                return d["sha1"]
        except (OSError, ValueError, KeyError):
            pass
    digest = _sha1_file(path).hexdigest()
    if memo is not None:
        try:
            memo_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(memo, json.dumps({"stamp": stamp, "sha1": digest}))
        except (MolretError, OSError):
            pass
    return digest


def library_fingerprint(path, options: ReaderOptions | None = None, memo_dir: Path | None = None) -> str:
    """A key of the library's content (and of how it is read).

    Files (SMILES libraries, raw.zip, cids.txt): sha1 of their bytes
    (memoised by size/mtime/inode).  A folder of ``.graph`` files: the names,
    sizes and modification times of its graph files (reading 100k files on
    every search would cost seconds).
    """
    from molret.chem.smiles_graph import MORGAN_RADIUS
    p = Path(path)
    h = hashlib.sha1()
    kind = library_kind(p)
    desc = {"version": FINGERPRINT_VERSION, "kind": kind}
    if kind == "smiles":
        desc.update(dataclasses.asdict(options or ReaderOptions()), morgan_radius=MORGAN_RADIUS)
    h.update(json.dumps(desc, sort_keys=True).encode())
    if kind == "smiles" or p.is_file():
        h.update(_file_content_hash(p, memo_dir).encode())
        return h.hexdigest()
    source, ids_file = graph_layout(p)
    if ids_file is not None:
        h.update(b"ids:")
        _sha1_file(ids_file, h)
    if source.is_file():
        h.update(b"zip:" + _file_content_hash(source, memo_dir).encode())
    else:
        entries = []
        for e in os.scandir(source):
            if e.name.endswith(".graph"):
                st = e.stat()
                entries.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}")
        for line in sorted(entries):
            h.update(line.encode() + b";")
    return h.hexdigest()


# ------------------------------------------------------------------ reading

class SkippedRows:
    """Invalid rows or files: counted, the first MAX_REPORTED_INVALID kept as examples."""

    def __init__(self):
        self.count, self.examples = 0, []

    def __call__(self, msg) -> None:
        self.count += 1
        if len(self.examples) < MAX_REPORTED_INVALID:
            self.examples.append(str(msg))


def _read_smiles_library(path: Path, options: ReaderOptions, progress: bool, skipped: SkippedRows):
    from tqdm.auto import tqdm
    from molret.data.graph_store import GraphStore, parse_identifiers
    from molret.chem.smiles_graph import mol_to_graph
    from molret.chem.molecule_files import read_library
    records = read_library(path, fmt=options.fmt, smiles_column=options.smiles_column,
                           id_column=options.id_column, id_property=options.id_property,
                           standardize=options.standardize)
    ids, smiles, id_parts, edge_parts = [], [], [], []
    for rec in tqdm(records, desc="reading library", unit="mol", disable=not progress, mininterval=1.0):
        if not rec.ok:
            skipped(rec.error or f"{rec.where}: no molecule")
            continue
        try:
            edge_index, identifiers = mol_to_graph(rec.mol)
            id_parts.append(parse_identifiers(identifiers, rec.where))
        except MolretError as e:
            skipped(f"{rec.where}: {e}")
            continue
        edge_parts.append(edge_index.astype(np.int32))
        ids.append(rec.id)
        smiles.append(rec.smiles)
    return smiles, GraphStore.from_parts(ids, id_parts, edge_parts)


def read_library(path, options: ReaderOptions | None = None, fingerprint: str | None = None,
                 progress: bool = False, decode_cache=None, workers: int | None = None) -> Library:
    """Every valid molecule of the library at ``path`` as graphs
    (``Library.graphs`` set), invalid ones counted.  A graph library's SMILES
    are decoded from its graphs (``molret.chem.store_decoding``, ``workers``
    processes), the decoding read from / written to ``decode_cache`` (a
    ``molret.utils.cache`` file; None: computed now)."""
    from molret.data.graph_store import GraphSource, build_graph_store
    p = Path(path)
    options = options or ReaderOptions()
    fingerprint = fingerprint or library_fingerprint(p, options)
    kind = library_kind(p)
    skipped = SkippedRows()
    if kind == "smiles":
        smiles, store = _read_smiles_library(p, options, progress, skipped)
    else:
        source_path, ids_file = graph_layout(p)
        store = build_graph_store(list_graph_ids(source_path, ids_file), GraphSource(source_path), progress,
                                  on_error=skipped)
    if not len(store):
        more = f": {skipped.examples[0]}" if skipped.examples else ""
        raise MolretError(f"library {p} has no valid molecules ({skipped.count} invalid){more}")
    status = None
    if kind == "graphs":
        from molret.chem.store_decoding import cached_decode_store
        decoding = cached_decode_store(store, decode_cache, workers=workers, progress=progress)
        smiles, status = decoding.smiles, decoding.status
    return Library(p, kind, list(store.cids), smiles, fingerprint, skipped.count, skipped.examples, store, status)


# --------------------------------------------------------------- smiles map

def read_smiles_map(path) -> dict:
    """id -> SMILES from a TSV/CSV (header naming cid/id and smiles columns,
    e.g. ChEBI-20's ``CID SMILES description``) or ``id<TAB>SMILES`` lines."""
    import csv
    from molret.chem.molecule_files import ID_COLUMN_NAMES, SMILES_COLUMN_NAMES
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise MolretError(f"cannot read --smiles-map {p}: {e.strerror or e}") from None
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines:
        raise MolretError(f"--smiles-map {p} is empty")
    delim = "\t" if "\t" in lines[0] else ","
    rows = [r for r in csv.reader(lines, delimiter=delim, quoting=csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL)]
    head = [c.strip().lower() for c in rows[0]]
    s_col = next((head.index(n) for n in SMILES_COLUMN_NAMES if n in head), None)
    if s_col is not None:
        i_col = next((head.index(n) for n in ID_COLUMN_NAMES if n in head), 0 if s_col != 0 else 1)
        rows = rows[1:]
    else:
        i_col, s_col = 0, 1
    out = {}
    for r in rows:
        if len(r) > max(i_col, s_col) and r[i_col].strip() and r[s_col].strip():
            out.setdefault(r[i_col].strip(), r[s_col].strip())
    if not out:
        raise MolretError(f"--smiles-map {p}: no id/SMILES pairs found")
    return out
