"""The one cache mechanism (molret.utils.cache) and its users in molret.data.challenge: a
damaged file is rebuilt with one warning line, a stale key or another
version is rebuilt, writes are atomic. Tiny hand-written data only."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from molret.utils import cache
from molret.data.graph_store import GraphSource, load_graphs
from molret.data.challenge import default_cache_dir, load_keyed_npz, save_keyed_npz
from molret.utils.errors import MolretError


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def clear(self):
        self.messages.clear()


@pytest.fixture
def cache_warnings():
    """The warning lines of molret.utils.cache, collected on its own logger (a training test may have
    set the "molret" logger not to propagate, so the root logger's capture would miss them)."""
    handler = _Collect()
    logger = logging.getLogger("molret.utils.cache")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "c" / "x.npz"
    cache.save(path, "k1", 3, {"a": np.arange(4, dtype=np.int64)}, meta={"note": "hi"})
    return path


def test_roundtrip_keeps_arrays_and_meta(npz, cache_warnings):
    got = cache.load(npz, "k1", 3, lambda z, meta: (z["a"].tolist(), meta["note"], meta["key"]))
    assert got == ([0, 1, 2, 3], "hi", "k1")
    assert cache.load(npz, None, 3)["a"].tolist() == [0, 1, 2, 3]  # key None: any key
    assert list(npz.parent.iterdir()) == [npz]  # no temporary file left
    assert cache.load(npz.parent / "absent.npz", "k1", 3) is None
    assert cache_warnings.messages == []  # absent: silent


@pytest.mark.parametrize("damage", [lambda p: p.write_bytes(b"not a zip"),
                                    lambda p: p.write_bytes(p.read_bytes()[:40]),
                                    lambda p: np.savez(p, meta=np.frombuffer(b"{not json", np.uint8))],
                         ids=["garbage", "truncated", "bad-meta"])
def test_damaged_file_is_rebuilt_with_one_warning(npz, damage, cache_warnings):
    damage(npz)
    assert cache.load(npz, "k1", 3) is None
    assert len(cache_warnings.messages) == 1
    assert str(npz) in cache_warnings.messages[0] and "damaged" in cache_warnings.messages[0]
    cache.save(npz, "k1", 3, {"a": np.ones(2)})
    assert cache.load(npz, "k1", 3)["a"].tolist() == [1.0, 1.0]


def test_decode_failure_counts_as_damaged(npz, cache_warnings):
    def decode(z, meta):
        raise ValueError("3 ids but 4 rows")
    assert cache.load(npz, "k1", 3, decode) is None
    assert len(cache_warnings.messages) == 1 and "3 ids but 4 rows" in cache_warnings.messages[0]


def test_stale_key_is_rebuilt(npz, cache_warnings):
    assert cache.load(npz, "k2", 3) is None
    assert len(cache_warnings.messages) == 1 and "stale" in cache_warnings.messages[0]
    cache.save(npz, "k2", 3, {"a": np.zeros(1)})
    assert cache.load(npz, "k2", 3)["a"].tolist() == [0.0]


def test_version_bump_invalidates(npz, cache_warnings, monkeypatch):
    assert cache.load(npz, "k1", 4) is None          # the cache kind's version
    monkeypatch.setattr(cache, "FORMAT", cache.FORMAT + 1)
    assert cache.load(npz, "k1", 3) is None          # the file format itself
    assert len(cache_warnings.messages) == 2
    np.savez(npz, a=np.arange(3))                    # written before molret.utils.cache (no meta)
    assert cache.load(npz, "k1", 3) is None
    assert "older molret" in cache_warnings.messages[-1]


def test_unwritable_cache_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MolretError, match="cannot write"):
        cache.save(blocker / "x.npz", "k", 1, {"a": np.zeros(1)})


def test_keyed_npz_wrappers(tmp_path, cache_warnings):
    path = tmp_path / "tokens.npz"
    save_keyed_npz(path, "texts-1", ids=np.arange(5), ptr=np.array([0, 5]))
    assert load_keyed_npz(path, "texts-1")["ids"].tolist() == [0, 1, 2, 3, 4]
    assert load_keyed_npz(path, "texts-2") is None
    path.write_bytes(b"junk")
    assert load_keyed_npz(path, "texts-1") is None
    assert len(cache_warnings.messages) == 2
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    save_keyed_npz(blocker / "x.npz", "k", a=np.zeros(1))  # unwritable: silently not cached (costs only time)


def test_damaged_graph_cache_is_rebuilt_with_one_warning(tiny_graph_dir, tmp_path, cache_warnings):
    source = GraphSource(tiny_graph_dir / "raw")
    first = load_graphs("train", ["1", "3"], source, tmp_path / "cache")
    path = tmp_path / "cache" / "graphs-train.npz"
    path.write_bytes(path.read_bytes()[:100])
    again = load_graphs("train", ["1", "3"], source, tmp_path / "cache")
    assert again.identifiers.tolist() == first.identifiers.tolist() and again.cids == ["1", "3"]
    assert len(cache_warnings.messages) == 1 and "graphs-train.npz" in cache_warnings.messages[0]
    cache_warnings.clear()
    load_graphs("train", ["1", "3"], source, tmp_path / "cache")
    assert cache_warnings.messages == []  # the rebuilt file is valid again


def test_default_cache_dir_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    assert default_cache_dir(data) == data.resolve() / "cache"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(data.resolve()) else real_access(p, mode))
    monkeypatch.setenv("MOLRET_CACHE", str(tmp_path / "user"))
    assert default_cache_dir(data) == tmp_path / "user" / cache.path_tag(data)
