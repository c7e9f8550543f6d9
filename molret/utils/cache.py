"""Cache files: one keyed, versioned, atomically written ``.npz`` format and
one policy for every cache of molret (parsed graphs, tokens, frozen text
features, library graphs and library embeddings), plus where caches live.

A cache file holds named arrays and a ``meta`` entry (JSON bytes) with the
helper's format number, the cache kind's ``version`` and the ``key`` of the
inputs it was computed from.  ``load`` returns nothing for an absent file;
for a damaged file (unreadable, truncated, missing arrays), a stale one
(another key) or one of another format or version it returns nothing too
and logs one warning line: the caller rebuilds it and ``save`` replaces it
(temporary file + ``os.replace``).  Nothing is ever unpickled
(``allow_pickle=False``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from molret.utils.errors import MolretError
from molret.utils.files import atomic_path

log = logging.getLogger("molret.utils.cache")

FORMAT = 1          # layout of the file itself (meta entry + arrays); bump to invalidate every cache
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError, zipfile.BadZipFile)


# ------------------------------------------------------------------ places

def user_cache_base() -> Path:
    """``$MOLRET_CACHE``, else ``~/.cache/molret``."""
    return Path(os.environ.get("MOLRET_CACHE", Path.home() / ".cache" / "molret"))


def path_tag(path) -> str:
    """12 hex digits naming an absolute path (per-user caches of read-only folders)."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:12]


def preferred_or_user_dir(preferred: Path, fallback: str) -> Path:
    """``preferred`` when files can be written there (a writable folder, or a
    new one in a writable parent), else ``user_cache_base() / fallback``."""
    if preferred.is_dir() and os.access(preferred, os.W_OK | os.X_OK):
        return preferred
    if not preferred.exists() and os.access(preferred.parent, os.W_OK | os.X_OK):
        return preferred
    return user_cache_base() / fallback


# -------------------------------------------------------------- json arrays

def json_array(obj) -> np.ndarray:
    """``obj`` as JSON bytes in a uint8 array (lists of strings without pickling)."""
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def from_json_array(a) -> object:
    return json.loads(bytes(a).decode("utf-8"))


# -------------------------------------------------------------- read/write

def save(path, key: str, version: int, arrays: dict, meta: dict | None = None) -> None:
    """Write ``arrays`` (and JSON-able ``meta``) under ``key`` atomically;
    MolretError when the file cannot be written."""
    head = dict(meta or {}, format=FORMAT, version=version, key=key)
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, meta=json_array(head), **arrays)
    except OSError as e:
        raise MolretError(f"cannot write {path}: {e.strerror or e}") from None


def load(path, key: str | None, version: int, decode: Callable[[dict, dict], object] | None = None):
    """The cache at ``path`` written with ``key`` (None: any key) and
    ``version``, as ``decode(arrays, meta)`` (default: the arrays dict).

    None when it must be rebuilt: absent (silently), or damaged, stale or of
    another version (one warning line; a ``decode`` that raises ValueError,
    KeyError, TypeError or IndexError marks the file damaged)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = from_json_array(z["meta"]) if "meta" in z.files else {}
            if "format" not in meta:
                return _rebuild(path, "was written by an older molret")
            if meta.get("format") != FORMAT or meta.get("version") != version:
                return _rebuild(path, f"has format/version {meta.get('format')}/{meta.get('version')}, this "
                                      f"molret uses {FORMAT}/{version}")
            if key is not None and meta.get("key") != key:
                return _rebuild(path, "is stale (its inputs changed)")
            arrays = {name: z[name] for name in z.files if name != "meta"}
        return decode(arrays, meta) if decode is not None else arrays
    except _READ_ERRORS as e:
        detail = str(e).splitlines()[0][:120] if str(e) else ""
        return _rebuild(path, f"is damaged ({type(e).__name__}{': ' + detail if detail else ''})")


def _rebuild(path: Path, why: str) -> None:
    log.warning(f"cache {path} {why}: rebuilding it")
    return None
