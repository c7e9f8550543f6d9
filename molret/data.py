"""Challenge data: paths, graph parsing into a per-split cache, texts,
tokenisation (cached, dynamically padded) and the datasets/collates.

Graphs are stored as substructure *indices* into one embedding table (the
mol2vec dict), never as per-atom copies of 300 floats: a whole split is a few
flat integer arrays, and a batch is cut out of them with numpy.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import GraphFormatError, MolretError
from .graphs import parse_graph_text
from .io_utils import atomic_path

CACHE_VERSION = 2


# ------------------------------------------------------------------ paths

KAGGLE_COMMAND = "kaggle competitions download -c altegrad-2023-data-challenge -p {dir} && unzip {dir}/*.zip -d {dir}"


@dataclass
class DataPaths:
    root: Path
    raw: Path | None            # raw/ folder or raw.zip
    embeddings: Path | None     # token_embedding_dict.npy
    train: Path | None
    val: Path | None
    test_cids: Path | None
    test_text: Path | None

    def need(self, name: str) -> Path:
        path = getattr(self, name)
        if path is None:
            expected = {"raw": "raw/ or raw.zip", "embeddings": "token_embedding_dict.npy",
                        "train": "train.tsv", "val": "val.tsv", "test_cids": "test_cids.txt",
                        "test_text": "test_text.txt"}[name]
            if not any(getattr(self, f) for f in ("raw", "embeddings", "train", "val", "test_cids", "test_text")):
                raise MolretError(f"data folder {self.root} holds none of the challenge files: download them with "
                                  f"'{KAGGLE_COMMAND.format(dir=self.root)}' (README: The real data), or try "
                                  f"'python main.py --demo' (a small built-in dataset)")
            raise MolretError(f"data folder {self.root} has no {expected}")
        return path


def resolve_data_dir(data_dir) -> DataPaths:
    root = Path(data_dir)
    if not root.is_dir():
        raise MolretError(f"data folder {root} does not exist: give --data-dir, download the challenge files with "
                          f"'{KAGGLE_COMMAND.format(dir=root)}', or try --demo (a small built-in dataset)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise MolretError(f"data folder {root} is not readable")

    def opt(name):
        p = root / name
        return p if p.exists() else None

    raw = opt("raw") or opt("raw.zip")
    return DataPaths(root=root, raw=raw, embeddings=opt("token_embedding_dict.npy"), train=opt("train.tsv"),
                     val=opt("val.tsv"), test_cids=opt("test_cids.txt"), test_text=opt("test_text.txt"))


def default_cache_dir(data_dir) -> Path:
    """<data_dir>/cache when the data folder is writable, else a per-user cache
    keyed by the data folder's absolute path."""
    root = Path(data_dir).resolve()
    if os.access(root, os.W_OK):
        return root / "cache"
    key = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    base = Path(os.environ.get("MOLRET_CACHE", Path.home() / ".cache" / "molret"))
    return base / key


# ------------------------------------------------------------ text files

def _read_text_file(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MolretError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise MolretError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise MolretError(f"{path}: cannot read ({e.strerror or e})") from None


def read_pairs_tsv(path) -> tuple[list[str], list[str]]:
    """Read ``cid<TAB>text`` lines verbatim (no CSV quoting: some texts start
    with a double quote). Returns (cids, texts)."""
    cids, texts, seen = [], [], {}
    for n, line in enumerate(_read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise MolretError(f"{path}: line {n}: expected 'cid<TAB>description', found no tab")
        cid, text = line.split("\t", 1)
        cid = cid.strip()
        if not cid.isdigit():
            raise MolretError(f"{path}: line {n}: CID must be a non-negative integer, got {cid!r}")
        if not text.strip():
            raise MolretError(f"{path}: line {n}: empty description for CID {cid}")
        if cid in seen:
            raise MolretError(f"{path}: line {n}: CID {cid} is duplicated (first on line {seen[cid]})")
        seen[cid] = n
        cids.append(cid)
        texts.append(text)
    if not cids:
        raise MolretError(f"{path}: no 'cid<TAB>description' lines")
    return cids, texts


def read_cids(path) -> list[str]:
    cids, seen = [], {}
    for n, line in enumerate(_read_text_file(path).splitlines(), start=1):
        cid = line.strip()
        if not cid:
            continue
        if not cid.isdigit():
            raise MolretError(f"{path}: line {n}: CID must be a non-negative integer, got {cid!r}")
        if cid in seen:
            raise MolretError(f"{path}: line {n}: CID {cid} is duplicated (first on line {seen[cid]})")
        seen[cid] = n
        cids.append(cid)
    if not cids:
        raise MolretError(f"{path}: no CIDs")
    return cids


def read_queries(path) -> list[str]:
    """One query per line (test_text.txt); empty lines are errors, since rows
    of the submission are numbered by line."""
    lines = _read_text_file(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    texts = []
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            raise MolretError(f"{path}: line {n}: empty query")
        texts.append(line)
    if not texts:
        raise MolretError(f"{path}: no queries")
    return texts


def read_test_inputs(paths: "DataPaths") -> tuple[list[str], list[str]]:
    """(test CIDs, test queries), checked to be of the same length."""
    cids = read_cids(paths.need("test_cids"))
    queries = read_queries(paths.need("test_text"))
    if len(cids) != len(queries):
        raise MolretError(f"{paths.test_cids} has {len(cids)} CIDs but {paths.test_text} has "
                          f"{len(queries)} queries: they must have the same length")
    return cids, queries


# ----------------------------------------------------------- vocabulary

class _RefusedGlobal(Exception):
    pass


def _embedding_dict_globals() -> dict:
    """What a pickled dict of numpy vectors refers to, by the names numpy 1
    and numpy 2 write (the challenge's file: numpy.core.multiarray._reconstruct,
    numpy.ndarray, numpy.dtype)."""
    reconstruct = np.empty(0).__reduce__()[0]
    scalar = np.float32(0).__reduce__()[0]
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("builtins", "dict"): dict, ("builtins", "str"): str}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


class _EmbeddingDictUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, strings and numbers, nothing else: no
    other class or function is ever looked up, so the file cannot run code."""

    allowed = None

    def find_class(self, module, name):
        if _EmbeddingDictUnpickler.allowed is None:
            _EmbeddingDictUnpickler.allowed = _embedding_dict_globals()
        try:
            return _EmbeddingDictUnpickler.allowed[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise _RefusedGlobal("a persistent id")


def read_embedding_dict(path) -> dict:
    """``token_embedding_dict.npy`` (the challenge's format: a .npy file of a
    pickled dict identifier -> vector) read with a restricted unpickler:
    a file that refers to anything but numpy arrays is refused unopened."""
    from numpy.lib import format as npy_format
    try:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported here")
            if dtype != np.dtype(object):
                raise MolretError(f"{path}: expected a dict identifier -> vector, found a {dtype} array")
            obj = _EmbeddingDictUnpickler(f).load()
    except _RefusedGlobal as e:
        raise MolretError(f"{path}: refused: it asks to load {e}, which is not part of a substructure embedding "
                          f"dict (numpy arrays and strings only) and could run code") from None
    except MolretError:
        raise
    except Exception as e:  # a truncated or foreign file: pickle and numpy raise many types
        raise MolretError(f"{path}: cannot read the substructure embedding dict "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj[()]
    if not isinstance(obj, dict):
        raise MolretError(f"{path}: expected a dict identifier -> vector")
    return obj


class Vocab:
    """Substructure identifiers -> rows of one embedding table. Row 0 is UNK."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.uint64)       # sorted, without UNK
        self.vectors = np.asarray(vectors, dtype=np.float32)  # [len(ids) + 1, D], row 0 = UNK
        assert len(self.vectors) == len(self.ids) + 1

    @classmethod
    def from_npy(cls, path) -> "Vocab":
        d = read_embedding_dict(path)
        if not isinstance(d, dict) or not d:
            raise MolretError(f"{path}: expected a dict identifier -> vector")
        dim = len(next(iter(d.values())))
        unk = d.get("UNK")
        keys = sorted((int(k), k) for k in d if k != "UNK")
        vectors = np.zeros((len(keys) + 1, dim), dtype=np.float32)
        if unk is not None:
            vectors[0] = unk
        for row, (_, k) in enumerate(keys, start=1):
            vectors[row] = d[k]
        return cls(np.array([k for k, _ in keys], dtype=np.uint64), vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.vectors)

    def lookup(self, identifiers: np.ndarray) -> np.ndarray:
        """Map raw identifiers (uint64) to table rows; unknown ones to UNK (0)."""
        identifiers = np.asarray(identifiers, dtype=np.uint64)
        pos = np.searchsorted(self.ids, identifiers)
        pos_clipped = np.minimum(pos, max(len(self.ids) - 1, 0))
        found = (self.ids[pos_clipped] == identifiers) if len(self.ids) else np.zeros(len(identifiers), bool)
        return np.where(found, pos_clipped + 1, 0).astype(np.int64)


# --------------------------------------------------------------- graphs

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

    def subset(self, n: int) -> "GraphStore":
        """The first n graphs (for quick runs)."""
        n = min(n, len(self))
        a, e = int(self.node_ptr[n]), int(self.edge_ptr[n])
        return GraphStore(self.cids[:n], self.identifiers[:a], self.node_ptr[: n + 1], self.edges[:, :e],
                          self.edge_ptr[: n + 1], None if self.x is None else self.x[:a])

    def collate(self, indices) -> "GraphBatch":
        idx = np.asarray(indices, dtype=np.int64)
        n0, n1 = self.node_ptr[idx], self.node_ptr[idx + 1]
        e0, e1 = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        ncount, ecount = n1 - n0, e1 - e0
        offsets = np.cumsum(ncount) - ncount
        node_rows = _ranges(n0, ncount)
        edge_cols = _ranges(e0, ecount)
        edge_index = self.edges[:, edge_cols].astype(np.int64) + np.repeat(offsets, ecount)[None, :]
        batch = np.repeat(np.arange(len(idx)), ncount)
        return GraphBatch(x=torch.from_numpy(self.x[node_rows]), edge_index=torch.from_numpy(edge_index),
                          batch=torch.from_numpy(batch), num_graphs=len(idx))

    # -- persistence (one .npz per split)
    def save(self, path, fingerprint: str) -> None:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, identifiers=self.identifiers, node_ptr=self.node_ptr, edges=self.edges,
                     edge_ptr=self.edge_ptr, cids=np.array(self.cids, dtype=str),
                     meta=np.frombuffer(json.dumps({"fingerprint": fingerprint,
                                                    "version": CACHE_VERSION}).encode(), dtype=np.uint8))

    @classmethod
    def load(cls, path, fingerprint: str | None = None) -> "GraphStore | None":
        """The cached store, or None if absent, stale or unreadable."""
        try:
            with np.load(path) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("version") != CACHE_VERSION or (fingerprint and meta.get("fingerprint") != fingerprint):
                    return None
                return cls(cids=[str(c) for c in z["cids"].tolist()], identifiers=z["identifiers"],
                           node_ptr=z["node_ptr"], edges=z["edges"], edge_ptr=z["edge_ptr"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            return None


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
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
                      desc: str = "parsing graphs") -> GraphStore:
    from tqdm.auto import tqdm
    ids_parts, edge_parts = [], []
    ncount = np.zeros(len(cids), dtype=np.int64)
    ecount = np.zeros(len(cids), dtype=np.int64)
    for g, cid in enumerate(tqdm(cids, desc=desc, unit="mol", disable=not progress, mininterval=1.0)):
        where = source.location(cid)
        edge_index, identifiers = parse_graph_text(source.read(cid), where)
        ids_parts.append(parse_identifiers(identifiers, where))
        edge_parts.append(edge_index.astype(np.int32))
        ncount[g] = len(identifiers)
        ecount[g] = edge_index.shape[1]
    node_ptr = np.concatenate([[0], np.cumsum(ncount)]).astype(np.int64)
    edge_ptr = np.concatenate([[0], np.cumsum(ecount)]).astype(np.int64)
    identifiers = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.uint64)
    edges = np.concatenate(edge_parts, axis=1) if edge_parts else np.zeros((2, 0), np.int32)
    return GraphStore(list(cids), identifiers, node_ptr, edges, edge_ptr)


def load_graphs(split: str, cids: Sequence[str], source: GraphSource, cache_dir, vocab: Vocab | None = None,
                progress: bool = True) -> GraphStore:
    """Graphs of ``cids``, from the split's cache file when it is up to date,
    else parsed and cached (one file per split)."""
    cids = list(cids)
    h = hashlib.sha1(source.fingerprint(cids).encode())
    h.update(",".join(cids).encode())
    fingerprint = h.hexdigest()
    path = Path(cache_dir) / f"graphs-{split}.npz"
    store = GraphStore.load(path, fingerprint) if path.exists() else None
    if store is None:
        store = build_graph_store(cids, source, progress=progress, desc=f"parsing {split} graphs")
        try:
            store.save(path, fingerprint)
        except MolretError:
            pass  # a read-only cache only costs time
    if vocab is not None:
        store.attach_vocab(vocab)
    return store


@dataclass
class GraphBatch:
    x: torch.Tensor            # [num_nodes] table rows
    edge_index: torch.Tensor   # [2, num_edges]
    batch: torch.Tensor        # [num_nodes] graph of each node
    num_graphs: int

    def to(self, device) -> "GraphBatch":
        return GraphBatch(self.x.to(device, non_blocking=True), self.edge_index.to(device, non_blocking=True),
                          self.batch.to(device, non_blocking=True), self.num_graphs)


# ----------------------------------------------------------------- texts

def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class TextBatch:
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    features: torch.Tensor | None = None   # precomputed (frozen) encoder outputs
    hidden_states: torch.Tensor | None = None  # cached token states entering the trained top layers

    def to(self, device) -> "TextBatch":
        f = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return TextBatch(f(self.input_ids), f(self.attention_mask), f(self.features), f(self.hidden_states))

    def __len__(self) -> int:
        for t in (self.features, self.hidden_states, self.input_ids):
            if t is not None:
                return t.shape[0]
        return 0


class TokenizedTexts:
    """Token ids of a split, unpadded; padded per batch to the batch's longest."""

    def __init__(self, ids: np.ndarray, ptr: np.ndarray, pad_id: int):
        self.ids, self.ptr, self.pad_id = ids, ptr, pad_id

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.ptr)

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def subset(self, n: int) -> "TokenizedTexts":
        n = min(n, len(self))
        return TokenizedTexts(self.ids[: self.ptr[n]], self.ptr[: n + 1], self.pad_id)

    def collate(self, indices) -> TextBatch:
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
        mask = np.arange(width)[None, :] < lengths[:, None]
        input_ids[mask] = self.ids[_ranges(self.ptr[idx], lengths)]
        return TextBatch(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask.astype(np.int64)))


def load_keyed_npz(path, key: str) -> dict | None:
    """The arrays of a cache file written by ``save_keyed_npz`` with the same
    key; None if absent, stale or unreadable."""
    if not Path(path).exists():
        return None
    try:
        with np.load(path) as z:
            if bytes(z["key"]).decode() != key:
                return None
            return {name: z[name] for name in z.files if name != "key"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def save_keyed_npz(path, key: str, **arrays) -> None:
    """Atomically write ``arrays`` with ``key``; a read-only cache only costs time."""
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, key=np.frombuffer(key.encode(), np.uint8), **arrays)
    except MolretError:
        pass


def tokenize(texts: Sequence[str], tokenizer, max_length: int, cache_path=None) -> TokenizedTexts:
    """Tokenise once (truncated, unpadded); cached in ``cache_path`` if given."""
    key = texts_hash(texts)
    cached = load_keyed_npz(cache_path, key) if cache_path is not None else None
    if cached is not None:
        return TokenizedTexts(cached["ids"], cached["ptr"], int(cached["pad_id"]))
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate([np.asarray(x, dtype=np.int32) for x in enc["input_ids"]])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = TokenizedTexts(ids, ptr, pad_id)
    if cache_path is not None:
        save_keyed_npz(cache_path, key, ids=ids, ptr=ptr, pad_id=np.int64(pad_id))
    return out


class TokenStates:
    """Cached token states (float32, unpadded) of the frozen lower text layers,
    one block of rows per text; padded per batch like TokenizedTexts."""

    def __init__(self, states: np.ndarray, ptr: np.ndarray):
        self.states, self.ptr = states, ptr

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.ptr)

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def collate(self, indices) -> TextBatch:
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        hidden = np.zeros((len(idx), width, self.states.shape[1]), dtype=np.float32)
        mask = np.arange(width)[None, :] < lengths[:, None]
        hidden[mask] = self.states[_ranges(self.ptr[idx], lengths)]
        return TextBatch(hidden_states=torch.from_numpy(hidden), attention_mask=torch.from_numpy(mask.astype(np.int64)))


class TextFeatures:
    """Precomputed frozen text-encoder outputs, one row per text."""

    def __init__(self, features: np.ndarray):
        self.features = np.asarray(features, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def lengths(self) -> np.ndarray:
        return np.ones(len(self), dtype=np.int64)

    def subset(self, n: int) -> "TextFeatures":
        return TextFeatures(self.features[:n])

    def collate(self, indices) -> TextBatch:
        return TextBatch(features=torch.from_numpy(self.features[np.asarray(indices, dtype=np.int64)]))


# -------------------------------------------------------------- datasets

class GraphTextDataset(Dataset):
    """Aligned (graph, text) pairs of train/val. Items are indices; ``collate``
    builds a whole batch at once from the flat arrays."""

    def __init__(self, graphs: GraphStore, texts, cids: Sequence[str] | None = None):
        if len(graphs) != len(texts):
            raise MolretError(f"{len(graphs)} graphs but {len(texts)} texts")
        self.graphs, self.texts = graphs, texts
        self.cids = list(cids) if cids is not None else list(graphs.cids)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, indices) -> "PairBatch":
        idx = list(indices)
        return PairBatch(graph=self.graphs.collate(idx), text=self.texts.collate(idx),
                         index=torch.as_tensor(idx, dtype=torch.long))


class GraphDataset(Dataset):
    """Molecules only (test_cids.txt, or any library)."""

    def __init__(self, graphs: GraphStore):
        self.graphs = graphs

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, indices) -> GraphBatch:
        return self.graphs.collate(list(indices))


class TextDataset(Dataset):
    """Queries only (test_text.txt)."""

    def __init__(self, texts):
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, indices) -> TextBatch:
        return self.texts.collate(list(indices))


@dataclass
class PairBatch:
    graph: GraphBatch
    text: TextBatch
    index: torch.Tensor

    def to(self, device) -> "PairBatch":
        return PairBatch(self.graph.to(device), self.text.to(device), self.index)


# -------------------------------------------------------------- batching

def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    perm = rng.permutation(n)
    batches = [perm[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= 2]  # a 1-pair batch has no negative


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            chunk_batches: int = 50) -> list[list[int]]:
    """Shuffle, cut into chunks of ``chunk_batches`` batches, sort each chunk by
    length and split it into batches, then shuffle the batches: padding drops
    while batch composition stays random at the chunk scale."""
    perm = rng.permutation(len(lengths))
    batches = []
    chunk = batch_size * chunk_batches
    for i in range(0, len(perm), chunk):
        part = perm[i:i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[j:j + batch_size].tolist() for j in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[k] for k in order if len(batches[k]) >= 2]
