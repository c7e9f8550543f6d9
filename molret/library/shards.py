"""Sharded library embedding: a library embedded in N parts (streamed, resumable) into one shard folder.

Shard ``I`` of ``N`` takes the library's records whose number ``r`` (0-based,
in library order, invalid rows included) has ``r % N == I``: a SMILES file
(``.smi``/``.csv``/``.tsv``/``.sdf``, optionally ``.gz``) is streamed line by
line and only the shard's records are parsed by RDKit
(``molret.chem.molecule_files.read_library(select=...)``); a graph library (``raw.zip``, a
folder of ``.graph`` files) is numbered in the order of its sorted ids, as
``molret.search.engine`` reads it.  Memory stays at one chunk of graphs
(``--chunk-size``) plus the output buffers, whatever the library's size.

Folder layout (``NAME = shard-IIIII-of-NNNNN``):

* ``NAME.npy``         embeddings ``[n_i, D]`` (float16 or float32), L2-normalised
  rows, for ``np.load(mmap_mode="r")``;
* ``NAME.ids.txt``     one id per line; ``NAME.smiles.txt`` the SMILES (for a
  graph library decoded from its graphs, ``molret.chem.store_decoding``, one
  environment table shared by the shard's chunks; empty line: undecodable);
* ``NAME.rows.npy``    int64 record number of each molecule in the library;
* ``NAME.json``        the manifest (model key, library fingerprint, counts,
  invalid count and examples, ``smiles_decoded``: the SMILES come from the
  graph decoder), written last: a shard is finished iff its manifest exists
  and matches its files (a graph library's shard written before the decoder,
  without ``smiles_decoded``, is redone);
* ``folder.json``      what every shard of the folder must share: model key,
  library fingerprint, shard count, dtype, dimension.

Every file is written to a temporary name and ``os.replace``d in place, so a
killed shard leaves only ``.*.tmp`` files (ignored, and never reused) and is
redone from scratch; a finished shard is skipped.  N processes on one
machine, N machines sharing a filesystem or N GPUs can fill the same folder.
Reading the folder back as one library is ``molret.library.shard_folder``.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molret.utils.errors import MolretError
from molret.utils.files import atomic_path, atomic_write_text
from molret.library.shard_folder import (FOLDER_FILE, line_offsets_ext, mismatch, read_json, shard_manifests,
                                         shard_name)

FORMAT_VERSION = 1
DTYPES = ("float16", "float32")
CHUNK_SIZE = 4096              # molecules parsed and embedded at a time
NPY_HEADER_BYTES = 128         # fixed .npy header, rewritten in place once the row count is known
MAX_SHARDS = 100_000


# ------------------------------------------------------------ shard specs

def parse_shard_spec(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N; anything else raises MolretError."""
    text = str(spec).strip()
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise MolretError(f"--shard {spec!r}: expected I/N with whole numbers, e.g. 0/4 (the first of 4 shards)")
    index, count = int(parts[0]), int(parts[1])
    if not 1 <= count <= MAX_SHARDS:
        raise MolretError(f"--shard {spec!r}: the shard count N must be between 1 and {MAX_SHARDS:,}")
    if index >= count:
        raise MolretError(f"--shard {spec!r}: the shard index I must be between 0 and N-1 = {count - 1}")
    return index, count


# ------------------------------------------------------ streaming records

def _smiles_chunks(path: Path, index: int, count: int, options, chunk_size: int, skipped):
    from molret.data.graph_store import GraphStore, parse_identifiers
    from molret.chem.smiles_graph import mol_to_graph
    from molret.chem.molecule_files import read_library
    records = read_library(path, fmt=options.fmt, smiles_column=options.smiles_column, id_column=options.id_column,
                           id_property=options.id_property, standardize=options.standardize,
                           select=lambda r: r % count == index)
    rows, ids, smiles, id_parts, edge_parts, seen = [], [], [], [], [], 0
    for n, rec in enumerate(records):
        seen += 1
        try:
            if not rec.ok:
                raise MolretError(rec.error or f"{rec.where}: no molecule")
            edge_index, identifiers = mol_to_graph(rec.mol)
            id_parts.append(parse_identifiers(identifiers, rec.where))
        except MolretError as e:
            skipped(str(e) if not rec.ok else f"{rec.where}: {e}")
        else:
            edge_parts.append(edge_index.astype(np.int32))
            rows.append(index + n * count)
            ids.append(rec.id)
            smiles.append(rec.smiles)
        if len(rows) >= chunk_size:
            yield seen, rows, smiles, GraphStore.from_parts(ids, id_parts, edge_parts)
            rows, ids, smiles, id_parts, edge_parts, seen = [], [], [], [], [], 0
    yield seen, rows, smiles, GraphStore.from_parts(ids, id_parts, edge_parts)


def _graph_chunks(path: Path, index: int, count: int, chunk_size: int, skipped):
    from molret.chem.morgan_env import EnvironmentTable
    from molret.data.graph_store import GraphSource, build_graph_store
    from molret.library.reading import graph_layout, list_graph_ids
    from molret.chem.store_decoding import decode_store
    source_path, ids_file = graph_layout(path)
    source = GraphSource(source_path)
    all_ids = list_graph_ids(source_path, ids_file)
    mine = range(index, len(all_ids), count)
    table = EnvironmentTable.shipped()   # grows with what each chunk's graphs teach the next
    for start in range(0, len(mine), chunk_size):
        rows = mine[start:start + chunk_size]
        row_of = {all_ids[r]: r for r in rows}
        store = build_graph_store([all_ids[r] for r in rows], source, progress=False, on_error=skipped)
        smiles = decode_store(store, table).smiles if len(store) else []
        yield len(rows), [row_of[c] for c in store.cids], smiles, store


def shard_chunks(path, index: int, count: int, options=None, chunk_size: int = CHUNK_SIZE, skipped=None):
    """Yield ``(records read, record numbers, SMILES, GraphStore)`` for the valid
    molecules of shard ``index``/``count`` of the library at ``path``, at most
    ``chunk_size`` molecules at a time; invalid ones go to ``skipped(message)``."""
    from molret.library.reading import ReaderOptions, library_kind
    p = Path(path)
    skipped = skipped or (lambda msg: None)
    if library_kind(p) == "smiles":
        return _smiles_chunks(p, index, count, options or ReaderOptions(), chunk_size, skipped)
    return _graph_chunks(p, index, count, chunk_size, skipped)


def shard_size_hint(path, index: int, count: int) -> int | None:
    """Records in the shard when cheap to know (graph libraries), else None."""
    from molret.library.reading import graph_layout, library_kind, list_graph_ids
    p = Path(path)
    if library_kind(p) == "smiles":
        return None
    return len(range(index, len(list_graph_ids(*graph_layout(p))), count))


# ------------------------------------------------------------- npy output

def _npy_header(rows: int, dim: int, dtype) -> bytes:
    """A version-1.0 .npy header of exactly NPY_HEADER_BYTES bytes."""
    d = f"{{'descr': '{np.dtype(dtype).str}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    body_len = NPY_HEADER_BYTES - 10
    if len(d) + 1 > body_len:
        raise MolretError(f"array of shape ({rows}, {dim}) too large for the shard format")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + (d.ljust(body_len - 1) + "\n").encode("latin1")


class _NpyAppender:
    """Rows appended to an open .npy file whose header is fixed at the end."""

    def __init__(self, f, dim: int, dtype):
        self.f, self.dim, self.dtype, self.rows = f, dim, np.dtype(dtype), 0
        f.write(_npy_header(0, dim, self.dtype))

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        self.f.write(block.tobytes())
        self.rows += len(block)

    def finish(self) -> None:
        self.f.seek(0)
        self.f.write(_npy_header(self.rows, self.dim, self.dtype))
        self.f.flush()
        os.fsync(self.f.fileno())


def _clean_line(text) -> str:
    return "" if text is None else str(text).replace("\r", " ").replace("\n", " ")


class _LineWriter:
    """Lines written to a text file, with the byte offset of each line's start kept (the line tables of
    ``molret.library.shard_folder`` memory-map them instead of scanning the text at every open)."""

    def __init__(self, f):
        self.f, self.ends, self.size = f, [], 0

    def write(self, texts) -> None:
        data = [(_clean_line(x) + "\n").encode("utf-8") for x in texts]
        lengths = np.fromiter((len(b) for b in data), dtype=np.int64, count=len(data))
        self.ends.append(self.size + np.cumsum(lengths))
        self.size += int(lengths.sum())
        self.f.write(b"".join(data))

    def save_offsets(self, path) -> None:
        """int64 [n + 1] saved to ``path``: line i is bytes offsets[i] .. offsets[i + 1] - 2 (then its newline)."""
        with open(path, "wb") as f:
            np.save(f, np.concatenate([np.zeros(1, np.int64)] + self.ends), allow_pickle=False)


# --------------------------------------------------------------- manifests

def check_folder(folder, expect: dict) -> None:
    """Raise when ``folder`` already holds shards that ``expect`` (model key,
    fingerprint, shard count, dtype, dim) cannot be mixed with."""
    folder = Path(folder)
    ref = read_json(folder / FOLDER_FILE)
    others = ([ref] if isinstance(ref, dict) else []) + shard_manifests(folder)
    for m in others:
        why = mismatch(m, expect)
        if why:
            where = m.get("_path", str(folder / FOLDER_FILE))
            raise MolretError(f"{folder} already holds shards of another embedding ({why}, {Path(where).name}): "
                              f"use another --out folder, or remove it")


def _shard_done(folder: Path, name: str, expect: dict) -> dict | None:
    m = read_json(folder / f"{name}.json")
    if not isinstance(m, dict) or mismatch(m, expect) or m.get("format") != "molret-shard":
        return None
    if expect.get("smiles_decoded") and not m.get("smiles_decoded"):
        return None   # a graph library's shard written before the decoder: no SMILES
    try:
        emb = np.load(folder / f"{name}.npy", mmap_mode="r")
        rows = np.load(folder / f"{name}.rows.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if emb.shape[0] != m["count"] or rows.shape[0] != m["count"]:
        return None
    return m


def _expectation(lib_path: Path, embedder, count: int, dtype: str, options) -> dict:
    """What every shard of this embedding shares (checked against folder.json and the manifests)."""
    from molret.library.caches import embedder_key
    from molret.library.reading import library_fingerprint, library_kind
    return {"model_key": embedder_key(embedder), "fingerprint": library_fingerprint(lib_path, options),
            "num_shards": count, "dtype": dtype, "dim": int(embedder.dim),
            "smiles_decoded": library_kind(lib_path) == "graphs"}   # graph libraries: SMILES from the decoder


def _finished(folder: Path, index: int, count: int, expect: dict):
    done = _shard_done(folder, shard_name(index, count), expect)
    if done is None:
        return None
    return ShardResult(folder, index, count, done["count"], done["invalid"], True, done.get("seconds", 0.0),
                       done.get("invalid_examples", []))


def finished_shards(library, out_dir, count: int, embedder, *, dtype: str = "float16", options=None):
    """{shard: ShardResult} when every shard of ``count`` is already finished in ``out_dir`` for this
    embedding (nothing computed, nothing written), else None."""
    from molret.library.reading import ReaderOptions
    folder = Path(out_dir)
    if not all((folder / f"{shard_name(i, count)}.json").is_file() for i in range(count)):
        return None
    expect = _expectation(Path(library), embedder, count, dtype, options or ReaderOptions())
    out = {i: _finished(folder, i, count, expect) for i in range(count)}
    return out if all(r is not None for r in out.values()) else None


# ---------------------------------------------------------------- embedding

@dataclass
class ShardResult:
    folder: Path
    shard: int
    num_shards: int
    count: int
    invalid: int
    skipped: bool               # True: already finished, nothing recomputed
    seconds: float = 0.0
    invalid_examples: list = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def embed_shard(library, out_dir, index: int, count: int, embedder, *, dtype: str = "float16",
                options=None, batch_size: int | None = None, chunk_size: int = CHUNK_SIZE,
                progress: bool = False, on_chunk=None) -> ShardResult:
    """Embed shard ``index``/``count`` of ``library`` into ``out_dir`` with ``embedder`` (a checkpoint or an
    ensemble; skipped when already finished); ``on_chunk(shard, molecules so far)`` after each chunk."""
    from tqdm.auto import tqdm
    from molret.models import encoding as inference
    from molret.utils.files import check_writable_dir
    from molret.library.reading import ReaderOptions, SkippedRows
    if dtype not in DTYPES or not 0 <= index < count or chunk_size < 1:
        raise MolretError(f"bad shard arguments: dtype {dtype!r} (one of {', '.join(DTYPES)}), shard {index}/{count}, "
                          f"chunk size {chunk_size}")
    lib_path = Path(library)
    options = options or ReaderOptions()
    folder = check_writable_dir(out_dir)
    expect = _expectation(lib_path, embedder, count, dtype, options)
    check_folder(folder, expect)
    name = shard_name(index, count)
    done = _finished(folder, index, count, expect)
    if done is not None:
        return done
    if not (folder / FOLDER_FILE).is_file():
        atomic_write_text(folder / FOLDER_FILE, json.dumps({"format": "molret-shard-folder", **expect,
                                                            "library": str(lib_path.resolve())}, indent=1))
    t0 = time.perf_counter()
    skipped, rows = SkippedRows(), []
    with contextlib.ExitStack() as stack:
        # Entered in this order, replaced in reverse on success (rows, smiles, ids, embeddings); removed on error.
        tmp = {ext: stack.enter_context(atomic_path(folder / f"{name}{ext}"))
               for ext in (".npy", ".ids.txt", ".smiles.txt", ".rows.npy", line_offsets_ext(".ids.txt"),
                           line_offsets_ext(".smiles.txt"))}
        out = _NpyAppender(stack.enter_context(open(tmp[".npy"], "r+b")), expect["dim"], dtype)
        lines = {e: _LineWriter(stack.enter_context(open(tmp[e], "wb"))) for e in (".ids.txt", ".smiles.txt")}
        bar = stack.enter_context(tqdm(total=shard_size_hint(lib_path, index, count), desc=f"shard {index}/{count}",
                                       unit="mol", disable=not progress, mininterval=1.0))
        for seen, chunk_rows, smiles, store in shard_chunks(lib_path, index, count, options, chunk_size, skipped):
            if len(store):
                emb = embedder.encode_store(store, batch_size, inference.SEARCH_AMP).astype(np.float32)
                out.append(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))
                lines[".ids.txt"].write(store.cids)
                lines[".smiles.txt"].write(smiles)
                rows.append(np.asarray(chunk_rows, dtype=np.int64))
            bar.update(seen)
            if on_chunk is not None:
                on_chunk(index, sum(len(r) for r in rows))
        out.finish()
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        with open(tmp[".rows.npy"], "wb") as f:
            np.save(f, rows, allow_pickle=False)
        for ext, writer in lines.items():
            writer.save_offsets(tmp[line_offsets_ext(ext)])
    manifest = {"format": "molret-shard", "version": FORMAT_VERSION, **expect, "shard": index, "count": len(rows),
                "invalid": skipped.count, "invalid_examples": skipped.examples, "library": str(lib_path.resolve()),
                "seconds": round(time.perf_counter() - t0, 3), "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(folder / f"{name}.json", json.dumps(manifest, indent=1))
    return ShardResult(folder, index, count, len(rows), skipped.count, False, manifest["seconds"], skipped.examples)

