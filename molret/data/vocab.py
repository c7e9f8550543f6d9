"""The substructure vocabulary: ``token_embedding_dict.npy`` read with a
restricted unpickler (it is a pickle by the challenge's format), and
``Vocab``, substructure identifiers -> rows of one embedding table."""
from __future__ import annotations

import pickle

import numpy as np

from molret.utils.errors import MolretError


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
