"""Molecule graphs as flat arrays: ``.graph`` files read from raw/ or
raw.zip (``GraphSource``), all graphs of a split in one ``GraphStore``
cached per split (``load_graphs``, molret.utils.cache), and their batches.

Graphs are stored as substructure *indices* into one embedding table (the
mol2vec dict), never as per-atom copies of 300 floats: a whole split is a few
flat integer arrays, and a batch is cut out of them with numpy.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from molret.utils import cache
from molret.utils.errors import GraphFormatError, MolretError
from molret.chem.graph_format import parse_graph_text
from molret.data.vocab import Vocab

CACHE_VERSION = 2


class GraphSource:
    """Reads `<cid>.graph` texts from a raw/ folder or straight from raw.zip."""

    def __init__(self, path):
        self.path = Path(path)
        self._zip = None
        if self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile) as e:
                raise MolretError(f"{self.path}: not a readable zip file ({e})") from None
            names = self._zip.namelist()
            self._members = {}
            for name in names:
                if name.endswith(".graph"):
                    self._members[Path(name).stem] = name
        elif not self.path.is_dir():
            raise MolretError(f"graph source {self.path} does not exist")

    def location(self, cid: str) -> str:
        if self._zip is not None:
            return f"{self.path}:{self._members.get(cid, f'raw/{cid}.graph')}"
        return str(self.path / f"{cid}.graph")

    def read(self, cid: str) -> str:
        if self._zip is not None:
            name = self._members.get(cid)
            if name is None:
                raise MolretError(f"CID {cid}: no graph file raw/{cid}.graph in {self.path}")
            data = self._zip.read(name)
        else:
            p = self.path / f"{cid}.graph"
            try:
                data = p.read_bytes()
            except FileNotFoundError:
                raise MolretError(f"CID {cid}: graph file {p} is missing") from None
            except OSError as e:
                raise MolretError(f"CID {cid}: cannot read {p} ({e.strerror or e})") from None
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise GraphFormatError(f"{self.location(cid)}: not a text .graph file") from None

    def fingerprint(self, cids: Sequence[str]) -> str:
        h = hashlib.sha1()
        if self._zip is not None:
            st = self.path.stat()
            h.update(f"zip:{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            for cid in cids:
                try:
                    st = os.stat(self.path / f"{cid}.graph")
                    h.update(f"{cid}:{st.st_size}:{st.st_mtime_ns};".encode())
                except OSError:
                    h.update(f"{cid}:missing;".encode())
        return h.hexdigest()


@dataclass
class GraphStore:
    """All graphs of one split as flat arrays.

    ``identifiers[node_ptr[g]:node_ptr[g+1]]`` are graph g's atoms (raw Morgan
    ids) and ``edges[:, edge_ptr[g]:edge_ptr[g+1]]`` its bonds with node
    indices local to the graph.
    """
    cids: list
    identifiers: np.ndarray   # uint64 [num_atoms]
    node_ptr: np.ndarray      # int64 [G + 1]
    edges: np.ndarray         # int32 [2, num_edges]
    edge_ptr: np.ndarray      # int64 [G + 1]
    x: np.ndarray | None = None  # int64 table rows, set by attach_vocab
    num_unknown: int = 0
    # float32 [G, F] curated molecule features (molret.chem.mol_features.attach_features), for --mol-features models
    features: np.ndarray | None = None
    feature_families: tuple = ()
    cache_dir: Path | None = None   # where load_graphs cached it: derived caches (decoding, features) go there too

    def __len__(self) -> int:
        return len(self.cids)

    def attach_vocab(self, vocab: Vocab) -> "GraphStore":
        self.x = vocab.lookup(self.identifiers)
        self.num_unknown = int((self.x == 0).sum())
        return self

    def nbytes(self) -> int:
        arrays = [self.identifiers, self.node_ptr, self.edges, self.edge_ptr]
        if self.x is not None:
            arrays.append(self.x)
        return sum(a.nbytes for a in arrays)

    @classmethod
    def from_parts(cls, cids, id_parts: list, edge_parts: list) -> "GraphStore":
        """One store from per-graph identifier arrays and [2, E] edge arrays."""
        ncount = np.array([len(a) for a in id_parts], dtype=np.int64)
        ecount = np.array([e.shape[1] for e in edge_parts], dtype=np.int64)
        node_ptr = np.concatenate([[0], np.cumsum(ncount)]).astype(np.int64)
        edge_ptr = np.concatenate([[0], np.cumsum(ecount)]).astype(np.int64)
        identifiers = np.concatenate(id_parts) if id_parts else np.zeros(0, np.uint64)
        edges = np.concatenate(edge_parts, axis=1) if edge_parts else np.zeros((2, 0), np.int32)
        return cls(list(cids), identifiers, node_ptr, edges, edge_ptr)

    def collate(self, indices) -> "GraphBatch":
        idx = np.asarray(indices, dtype=np.int64)
        n0, n1 = self.node_ptr[idx], self.node_ptr[idx + 1]
        e0, e1 = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        ncount, ecount = n1 - n0, e1 - e0
        offsets = np.cumsum(ncount) - ncount
        node_rows = concat_ranges(n0, ncount)
        edge_cols = concat_ranges(e0, ecount)
        edge_index = self.edges[:, edge_cols].astype(np.int64) + np.repeat(offsets, ecount)[None, :]
        batch = np.repeat(np.arange(len(idx)), ncount)
        features = torch.from_numpy(self.features[idx]) if self.features is not None else None
        return GraphBatch(x=torch.from_numpy(self.x[node_rows]), edge_index=torch.from_numpy(edge_index),
                          batch=torch.from_numpy(batch), num_graphs=len(idx), features=features)

    # -- persistence (molret.utils.cache; one file per split, or per library)
    def to_arrays(self) -> dict:
        return {"identifiers": self.identifiers, "node_ptr": self.node_ptr, "edges": self.edges,
                "edge_ptr": self.edge_ptr, "cids": cache.json_array(self.cids)}

    @classmethod
    def from_arrays(cls, z: dict) -> "GraphStore":
        cids = cache.from_json_array(z["cids"])
        node_ptr, edge_ptr = z["node_ptr"], z["edge_ptr"]
        if len(node_ptr) != len(cids) + 1 or len(edge_ptr) != len(cids) + 1:
            raise ValueError(f"{len(cids)} ids but {len(node_ptr) - 1} graphs")
        return cls([str(c) for c in cids], z["identifiers"], node_ptr, z["edges"], edge_ptr)

    def save(self, path, fingerprint: str) -> None:
        cache.save(path, fingerprint, CACHE_VERSION, self.to_arrays())

    @classmethod
    def load(cls, path, fingerprint: str | None = None) -> "GraphStore | None":
        """The cached store, or None if absent, stale or unreadable (molret.utils.cache)."""
        return cache.load(path, fingerprint, CACHE_VERSION, lambda z, meta: cls.from_arrays(z))


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(offsets, counts) + np.repeat(starts, counts)


def parse_identifiers(identifiers: list[str], source: str) -> np.ndarray:
    try:
        out = np.array([int(s) for s in identifiers], dtype=np.uint64)
    except (ValueError, OverflowError):
        bad = next(s for s in identifiers if not s.isdigit() or int(s) >= 2 ** 64)
        raise GraphFormatError(f"{source}: substructure identifier {bad!r} is not a non-negative integer") from None
    return out


def build_graph_store(cids: Sequence[str], source: GraphSource, progress: bool = True,
                      desc: str = "parsing graphs", on_error=None) -> GraphStore:
    """The graphs of ``cids`` parsed from ``source``. A malformed graph raises,
    or with ``on_error`` is passed to it (the MolretError) and skipped."""
    from tqdm.auto import tqdm
    kept, ids_parts, edge_parts = [], [], []
    for cid in tqdm(cids, desc=desc, unit="mol", disable=not progress, mininterval=1.0):
        where = source.location(cid)
        try:
            edge_index, identifiers = parse_graph_text(source.read(cid), where)
            ids_parts.append(parse_identifiers(identifiers, where))
        except MolretError as e:
            if on_error is None:
                raise
            on_error(e)
            continue
        edge_parts.append(edge_index.astype(np.int32))
        kept.append(cid)
    return GraphStore.from_parts(kept, ids_parts, edge_parts)


def load_graphs(split: str, cids: Sequence[str], source: GraphSource, cache_dir, vocab: Vocab | None = None,
                progress: bool = True) -> GraphStore:
    """Graphs of ``cids``, from the split's cache file when it is up to date,
    else parsed and cached (one file per split)."""
    cids = list(cids)
    h = hashlib.sha1(source.fingerprint(cids).encode())
    h.update(",".join(cids).encode())
    fingerprint = h.hexdigest()
    path = Path(cache_dir) / f"graphs-{split}.npz"
    store = GraphStore.load(path, fingerprint)
    if store is None:
        store = build_graph_store(cids, source, progress=progress, desc=f"parsing {split} graphs")
        try:
            store.save(path, fingerprint)
        except MolretError:
            pass  # a read-only cache only costs time
    store.cache_dir = Path(cache_dir)
    if vocab is not None:
        store.attach_vocab(vocab)
    return store


@dataclass
class GraphBatch:
    x: torch.Tensor            # [num_nodes] table rows
    edge_index: torch.Tensor   # [2, num_edges]
    batch: torch.Tensor        # [num_nodes] graph of each node
    num_graphs: int
    features: torch.Tensor | None = None   # [num_graphs, F] molecule features (--mol-features models)

    def to(self, device) -> "GraphBatch":
        return GraphBatch(self.x.to(device, non_blocking=True), self.edge_index.to(device, non_blocking=True),
                          self.batch.to(device, non_blocking=True), self.num_graphs,
                          None if self.features is None else self.features.to(device, non_blocking=True))
