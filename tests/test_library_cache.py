"""The library caches (molret.library.caches): the graph-embedding key hashes
exactly the graph side of a model, and damaged cache files are rebuilt.
A tiny untrained model and hand-written .graph files."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from molret.library import caches as LC  # noqa: E402
from molret.config import ModelConfig, RunConfig  # noqa: E402
from molret.models.encoders import build_model  # noqa: E402
from molret.data.vocab import Vocab  # noqa: E402
from molret.models.embedder import Embedder  # noqa: E402
from test_cache import cache_warnings  # noqa: E402,F401  (fixture: the warning lines of molret.utils.cache)


def tiny(**model_fields):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    mcfg = ModelConfig(**dict(dict(conv="gcn", num_layers=2, hidden_dim=8, vocab_size=4, substructure_dim=4,
                                   embed_dim=6, proj_hidden=0, text_pooling="mean"), **model_fields))
    hf = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=16, max_position_embeddings=16))
    cfg = RunConfig(model=mcfg)
    cfg.train.eval_batch_size = 2
    vocab = Vocab(np.array([11, 22, 33], np.uint64), np.arange(16, dtype=np.float32).reshape(4, 4))
    return build_model(mcfg, vocab.vectors, hf_model=hf).eval(), cfg, vocab


def bumped(model, param: str):
    other = copy.deepcopy(model)
    with torch.no_grad():
        dict(other.named_parameters())[param].add_(0.25)
    return other


def test_every_model_config_field_is_classified():
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(LC.GRAPH_FIELDS) | set(LC.NON_GRAPH_FIELDS) == names, (
        "classify the new ModelConfig field in molret.library.caches: GRAPH_FIELDS if it changes graph embeddings")
    assert not set(LC.GRAPH_FIELDS) & set(LC.NON_GRAPH_FIELDS)


def test_model_key_hashes_the_graph_side_only():
    model, cfg, vocab = tiny()
    key = LC.model_key(model, cfg, vocab)
    text_side = [n for n, _ in model.named_parameters() if n.startswith(("text_encoder.", "text_proj."))]
    graph_side = [n for n, _ in model.named_parameters() if n.startswith(("graph_encoder.", "graph_proj."))]
    assert text_side and graph_side
    for name in text_side[:3] + text_side[-2:] + ["logit_scale"]:
        assert LC.model_key(bumped(model, name), cfg, vocab) == key, name
    for name in graph_side:
        assert LC.model_key(bumped(model, name), cfg, vocab) != key, name
    # buffers count too (BatchNorm running statistics)
    bn, bn_cfg, _ = tiny(norm="batch")
    other = copy.deepcopy(bn)
    other.graph_encoder.norms[0].running_mean.add_(1.0)
    assert LC.model_key(other, bn_cfg, vocab) != LC.model_key(bn, bn_cfg, vocab)
    # the vocabulary maps identifiers to table rows
    other_vocab = Vocab(np.array([11, 22, 34], np.uint64), vocab.vectors)
    assert LC.model_key(model, cfg, other_vocab) != key


def test_model_key_follows_graph_settings_not_text_settings():
    model, cfg, vocab = tiny()
    key = LC.model_key(model, cfg, vocab)
    for change in (dict(text_model="other"), dict(max_length=7), dict(text_pooling="cls"), dict(dropout=0.5),
                   dict(init_temperature=0.5), dict(train_text_layers=1)):
        assert LC.model_key(model, RunConfig(model=dataclasses.replace(cfg.model, **change)), vocab) == key, change
    # mean and max pooling have the same weights: only the setting tells them apart
    other = RunConfig(model=dataclasses.replace(cfg.model, pooling="max"))
    assert LC.model_key(model, other, vocab) != key


def test_damaged_library_caches_are_rebuilt(tiny_graph_dir, tmp_path, cache_warnings):
    model, cfg, vocab = tiny()
    lib_path = tiny_graph_dir / "raw"
    first = LC.library_embeddings(lib_path, Embedder.single(model, cfg, vocab), cache_dir=tmp_path / "c")
    assert not first.cached and first.library.ids == ["1", "2", "3", "4"]
    second = LC.library_embeddings(lib_path, Embedder.single(model, cfg, vocab), cache_dir=tmp_path / "c")
    assert second.cached and second.library.ids == first.library.ids
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    folder = first.cache_path.parent
    for name in (first.cache_path.name, "library.npz"):
        (folder / name).write_bytes(b"damaged")
    cache_warnings.clear()
    third = LC.library_embeddings(lib_path, Embedder.single(model, cfg, vocab), cache_dir=tmp_path / "c")
    assert not third.cached
    np.testing.assert_allclose(third.embeddings, first.embeddings, atol=1e-6)
    warned = list(cache_warnings.messages)
    assert len(warned) == 2 and all("damaged" in w for w in warned)
    assert LC.library_embeddings(lib_path, Embedder.single(model, cfg, vocab), cache_dir=tmp_path / "c").cached
