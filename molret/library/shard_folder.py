"""Reading a shard folder (written by molret.library.shards): shard names, manifests, and the folder opened as one library.

``open_shard_folder`` returns the library in shard order (shard 0's molecules,
then shard 1's, ...): ids and SMILES as lazily decoded line tables (their
line offsets memory-mapped from the ``.offsets.npy`` files written at embed
time, so opening reads no text; folders written before are scanned), the
embeddings as the per-shard memmaps seen as one
``[N, D]`` array (``ShardedArray``: row gathers and chunked scans, no copy),
and each molecule's record number in the library (``rows``, memory-mapped:
the library order, used to break score ties as a whole-library search does).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molret.utils.errors import MolretError

FOLDER_FILE = "folder.json"


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}"


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise MolretError(f"cannot read {path}: {e}") from None


def shard_manifests(folder) -> list[dict]:
    """Manifests of the finished shards in ``folder`` (sorted by shard count, index)."""
    folder = Path(folder)
    out = []
    for p in sorted(folder.glob("shard-*-of-*.json")):
        m = read_json(p)
        if isinstance(m, dict) and m.get("format") == "molret-shard":
            m["_path"] = str(p)
            out.append(m)
    return sorted(out, key=lambda m: (m["num_shards"], m["shard"]))


def mismatch(a: dict, b: dict) -> str | None:
    for key, what in (("model_key", "model"), ("fingerprint", "library (or reader options)"),
                      ("num_shards", "shard count"), ("dtype", "dtype"), ("dim", "embedding dimension")):
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            va, vb = a[key], b[key]
            if key in ("model_key", "fingerprint"):
                va, vb = str(va)[:12], str(vb)[:12]
            return f"{what} {va} vs {vb}"
    return None


def line_offsets_ext(text_ext: str) -> str:
    """The offsets file of a shard's text file: ``.ids.txt`` -> ``.ids.offsets.npy``."""
    return text_ext[:-len(".txt")] + ".offsets.npy"


class LineTable:
    """The lines of a text file as a read-only sequence of str, decoded on access.

    With ``offsets`` (an ``.offsets.npy`` written at embed time: int64 [count + 1] line starts, the last
    being the file's size) both files are memory-mapped and nothing is read at open; without it (folders
    written before), the text is scanned once for its newlines (16 bytes per line in memory)."""

    def __init__(self, path, count: int, offsets=None):
        self.path = Path(path)
        size = self.path.stat().st_size
        self._buf = np.memmap(self.path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        off = _read_offsets(offsets, count, size) if offsets is not None else None
        self.mapped = off is not None
        if off is not None:
            self._starts, self._ends = off[:-1], off[1:]
            self._newline = 1
            return
        ends = np.flatnonzero(self._buf == 10)
        if len(ends) != count:
            raise MolretError(f"{self.path}: {len(ends)} lines, its manifest says {count}")
        self._starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if count else np.zeros(0, np.int64)
        self._ends, self._newline = ends, 0

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        i = range(len(self))[i]
        return bytes(self._buf[int(self._starts[i]):int(self._ends[i]) - self._newline]).decode("utf-8")


def _read_offsets(path, count: int, size: int):
    """The memory-mapped offsets at ``path`` when they fit a text of ``count`` lines and ``size`` bytes
    (checked at both ends only: reading them all would cost what the offsets save), else None."""
    try:
        off = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise MolretError(f"cannot read {path}: {e}") from None
    if off.dtype != np.int64 or off.shape != (count + 1,) or int(off[0]) != 0 or int(off[-1]) != size:
        raise MolretError(f"{path} does not fit its text file ({count:,} lines, {size:,} bytes): remove it "
                          f"(the text is then scanned) or embed the shard again")
    return off


class ShardedVector:
    """Row-wise concatenation of per-shard 1-d memmaps (the record numbers), without copying them."""

    def __init__(self, parts: list, offsets: np.ndarray):
        self.parts, self.offsets = parts, offsets
        self.dtype = parts[0].dtype if parts else np.dtype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def take(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty(idx.shape, self.dtype)
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        for s in np.unique(part):
            sel = part == s
            out[sel] = np.asarray(self.parts[s])[idx[sel] - self.offsets[s]]
        return out

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            i = range(len(self))[i]
            s = int(np.searchsorted(self.offsets, i, side="right") - 1)
            return self.parts[s][i - int(self.offsets[s])]
        return np.asarray(self)[i]

    def __array__(self, dtype=None, copy=None):
        a = np.concatenate([np.asarray(p) for p in self.parts]) if self.parts else np.zeros(0, self.dtype)
        return a.astype(dtype) if dtype is not None else a


class ShardedArray:
    """Row-wise concatenation of per-shard [n_i, D] memmaps, without copying them."""

    def __init__(self, parts: list):
        self.parts = parts
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.dim = int(parts[0].shape[1]) if parts else 0
        self.dtype = parts[0].dtype if parts else np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.offsets[-1]), self.dim

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def take(self, idx) -> np.ndarray:
        """Rows ``idx`` (global positions) as float32."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), self.dim), np.float32)
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        for s in np.unique(part):
            sel = part == s
            local = idx[sel] - self.offsets[s]
            order = np.argsort(local)  # memmap reads in file order
            rows = np.asarray(self.parts[s][local[order]], dtype=np.float32)
            tmp = np.empty_like(rows)
            tmp[order] = rows
            out[sel] = tmp
        return out

    def chunks(self, size: int = 65536):
        """(global start, float32 block) over all rows, in order."""
        for s, p in enumerate(self.parts):
            for i in range(0, len(p), size):
                yield int(self.offsets[s]) + i, np.asarray(p[i:i + size], dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        a = np.concatenate([np.asarray(p) for p in self.parts]) if self.parts else np.zeros((0, 0), np.float32)
        return a.astype(dtype) if dtype is not None else a


class _ConcatLines:
    """Concatenated LineTables as one sequence."""

    def __init__(self, tables: list, offsets: np.ndarray):
        self.tables, self.offsets = tables, offsets

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> str:
        i = range(len(self))[i]
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.tables[s][i - int(self.offsets[s])]

    def __iter__(self):
        for t in self.tables:
            for i in range(len(t)):
                yield t[i]


@dataclass
class ShardLibrary:
    """A shard folder opened as one library: rows in shard order (shard 0's molecules, then shard 1's, ...)."""
    folder: Path
    ids: _ConcatLines
    smiles: _ConcatLines               # "" where unknown (meta["smiles_decoded"]: decoded from the graphs)
    embeddings: ShardedArray           # memory-mapped, L2-normalised rows
    rows: ShardedVector                # int64 record number in the library of each row (the library order;
                                       # np.asarray(rows) for one array, rows.take(idx) for some)
    model_key: str
    meta: dict                         # folder.json plus totals (count, invalid, num_shards, signature)

    def __len__(self) -> int:
        return len(self.rows)


def is_shard_folder(path) -> bool:
    """True when ``path`` is a folder written by ``embed_shard`` (to tell it from a graph library)."""
    p = Path(path)
    return p.is_dir() and ((p / FOLDER_FILE).is_file() or any(p.glob("shard-*-of-*.json")))


def open_shard_folder(folder) -> ShardLibrary:
    """Open a folder written by ``embed_shard`` as one library; every shard must
    be finished and all must come from one model, library and shard count."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MolretError(f"shard folder {folder} does not exist")
    manifests = shard_manifests(folder)
    if not manifests:
        raise MolretError(f"{folder} holds no finished shard (run embed_library.py --out {folder} first)")
    ref = read_json(folder / FOLDER_FILE)
    ref = ref if isinstance(ref, dict) else {k: manifests[0][k] for k in ("model_key", "fingerprint", "num_shards",
                                                                           "dtype", "dim", "library")}
    for m in manifests:
        why = mismatch(m, ref)
        if why:
            raise MolretError(f"{folder} mixes shards of different embeddings ({why}, {Path(m['_path']).name})")
    n = ref["num_shards"]
    have = {m["shard"] for m in manifests}
    missing = [i for i in range(n) if i not in have]
    if missing:
        shown = ", ".join(f"{i}/{n}" for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise MolretError(f"{folder}: {len(missing)} of {n} shards not finished yet ({shown})")
    parts, ids, smiles, rows = [], [], [], []
    for m in manifests:
        name = shard_name(m["shard"], n)
        try:
            emb = np.load(folder / f"{name}.npy", mmap_mode="r")
            r = np.load(folder / f"{name}.rows.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise MolretError(f"{folder}: cannot open shard {name}: {e}") from None
        if emb.shape[0] != m["count"] or len(r) != m["count"]:
            raise MolretError(f"{folder}: shard {name} has {emb.shape[0]} rows, its manifest says {m['count']}")
        parts.append(emb)
        rows.append(r)
        ids.append(LineTable(folder / f"{name}.ids.txt", m["count"], folder / f"{name}{line_offsets_ext('.ids.txt')}"))
        smiles.append(LineTable(folder / f"{name}.smiles.txt", m["count"],
                                folder / f"{name}{line_offsets_ext('.smiles.txt')}"))
    emb = ShardedArray(parts)
    sig = hashlib.sha1(json.dumps([[m["shard"], m["count"], m["written"]] for m in manifests]).encode()).hexdigest()
    meta = {**ref, "count": len(emb), "invalid": sum(m["invalid"] for m in manifests), "signature": sig,
            "smiles_decoded": all(m.get("smiles_decoded", False) for m in manifests)}
    return ShardLibrary(folder, _ConcatLines(ids, emb.offsets), _ConcatLines(smiles, emb.offsets), emb,
                        ShardedVector(rows, emb.offsets), ref["model_key"], meta)
