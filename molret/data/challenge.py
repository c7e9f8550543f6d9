"""Challenge data: the data folder and its caches, text files, tokenisation
(cached, dynamically padded) and the training pairs and their batches.

The graphs are ``molret.data.graph_store``, the substructure vocabulary
``molret.data.vocab``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from molret.utils import cache
from molret.utils.errors import MolretError
from molret.data.graph_store import GraphBatch, GraphStore, concat_ranges


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
                                  f"'{KAGGLE_COMMAND.format(dir=self.root)}' (README: The data), or try "
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
    """<data_dir>/cache when it can be written, else a per-user cache keyed by
    the data folder's absolute path (molret.utils.cache.preferred_or_user_dir)."""
    root = Path(data_dir).resolve()
    return cache.preferred_or_user_dir(root / "cache", cache.path_tag(root))


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
    # --text-bow: the TF-IDF rows (molret.models.text_bow), EmbeddingBag's inputs
    bow_ids: torch.Tensor | None = None
    bow_offsets: torch.Tensor | None = None
    bow_weights: torch.Tensor | None = None

    def to(self, device) -> "TextBatch":
        f = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return TextBatch(f(self.input_ids), f(self.attention_mask), f(self.features), f(self.hidden_states),
                         f(self.bow_ids), f(self.bow_offsets), f(self.bow_weights))

    def bow_rows(self, start: int, stop: int) -> dict:
        """The bag-of-words fields of rows start..stop-1 (empty without --text-bow)."""
        if self.bow_ids is None:
            return {}
        n = len(self.bow_offsets)
        lo = int(self.bow_offsets[start]) if start < n else len(self.bow_ids)
        hi = int(self.bow_offsets[stop]) if stop < n else len(self.bow_ids)
        return {"bow_ids": self.bow_ids[lo:hi], "bow_offsets": self.bow_offsets[start:stop] - lo,
                "bow_weights": self.bow_weights[lo:hi]}

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

    def take(self, indices) -> "TokenizedTexts":
        """The texts at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[idx]
        return TokenizedTexts(self.ids[concat_ranges(self.ptr[idx], lengths)],
                              np.concatenate([[0], np.cumsum(lengths)]).astype(self.ptr.dtype), self.pad_id)

    def collate(self, indices) -> TextBatch:
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
        mask = np.arange(width)[None, :] < lengths[:, None]
        input_ids[mask] = self.ids[concat_ranges(self.ptr[idx], lengths)]
        return TextBatch(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask.astype(np.int64)))


KEYED_VERSION = 1   # tokens and frozen text features (molret.utils.cache)


def load_keyed_npz(path, key: str) -> dict | None:
    """The arrays of a cache file written by ``save_keyed_npz`` with the same
    key; None if absent, stale or unreadable (molret.utils.cache: one warning line)."""
    return cache.load(path, key, KEYED_VERSION)


def save_keyed_npz(path, key: str, **arrays) -> None:
    """Atomically write ``arrays`` with ``key``; a read-only cache only costs time."""
    try:
        cache.save(path, key, KEYED_VERSION, arrays)
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
        hidden[mask] = self.states[concat_ranges(self.ptr[idx], lengths)]
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

    def collate(self, indices) -> TextBatch:
        return TextBatch(features=torch.from_numpy(self.features[np.asarray(indices, dtype=np.int64)]))


# -------------------------------------------------------------- datasets

class GraphTextDataset:
    """Aligned (graph, text) pairs of training, addressed by index: ``collate``
    builds a whole batch at once from the flat arrays."""

    def __init__(self, graphs: GraphStore, texts, cids: Sequence[str] | None = None):
        if len(graphs) != len(texts):
            raise MolretError(f"{len(graphs)} graphs but {len(texts)} texts")
        self.graphs, self.texts = graphs, texts
        self.cids = list(cids) if cids is not None else list(graphs.cids)

    def __len__(self) -> int:
        return len(self.graphs)

    def collate(self, indices) -> "PairBatch":
        idx = list(indices)
        return PairBatch(graph=self.graphs.collate(idx), text=self.texts.collate(idx),
                         index=torch.as_tensor(idx, dtype=torch.long))


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
