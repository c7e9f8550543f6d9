"""Cached-gradient (GradCache) step: the same loss and gradients as the plain
full-batch step, dropout replayed exactly, and Trainer.train_step wired to it."""
import copy
import logging

import numpy as np
import pytest
import torch
from torch import nn

from molret.config import ModelConfig, RunConfig
from molret.data.graph_store import GraphStore
from molret.data.challenge import GraphTextDataset, TextFeatures, TokenizedTexts
from molret.training.gradcache import chunk_sizes, even_sizes, grad_cache_step, split_pair_batch
from molret.training.losses import clip_loss
from molret.models.encoders import build_model

@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_module):
    yield


def random_pairs(n=11, vocab=10, seed=0, features=False):
    """A dataset of n random molecules (1-6 atoms) and texts (3-12 tokens)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n)
    node_ptr = np.concatenate([[0], np.cumsum(sizes)])
    edges, edge_ptr = [], [0]
    for s in sizes:
        e = [(i, i + 1) for i in range(s - 1)] + [(i + 1, i) for i in range(s - 1)]
        if s > 2:
            e += [(0, s - 1), (s - 1, 0)]
        edges += e
        edge_ptr.append(edge_ptr[-1] + len(e))
    edges = np.array(edges, dtype=np.int32).T.reshape(2, -1)
    ids = rng.integers(0, vocab, node_ptr[-1]).astype(np.uint64)
    store = GraphStore([str(i) for i in range(n)], ids, node_ptr, edges, np.array(edge_ptr))
    store.x = ids.astype(np.int64)
    if features:
        texts = TextFeatures(rng.normal(size=(n, 16)))
        if torch.get_default_dtype() == torch.float64:  # the float64 fixture: features as the model's dtype
            texts.features = texts.features.astype(np.float64)
    else:
        lengths = rng.integers(3, 13, n)
        ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        texts = TokenizedTexts(rng.integers(4, 50, ptr[-1]).astype(np.int32), ptr, pad_id=0)
    return GraphTextDataset(store, texts)


def tiny_model(dropout=0.0, norm="layer", seed=0):
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    hf = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=dropout,
                              attention_probs_dropout_prob=dropout))
    cfg = ModelConfig(conv="gatv2", num_layers=2, hidden_dim=16, heads=2, vocab_size=10, substructure_dim=8,
                      embed_dim=8, proj_hidden=12, dropout=dropout, norm=norm, pooling="attention",
                      train_substructure_emb=True)
    return build_model(cfg, torch.randn(10, 8), hf_model=hf).train()


def grads(model):
    return {n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()}


def assert_same_grads(a, b, atol=1e-6, rtol=1e-5):
    assert a.keys() == b.keys()
    checked = 0
    for name in a:
        if a[name] is None or b[name] is None:
            assert a[name] is None and b[name] is None, name
            continue
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=rtol, msg=name)
        checked += 1
    assert checked > 10


def loss_fn(model):
    return lambda text_emb, graph_emb: clip_loss(text_emb, graph_emb, model.temperature_scale())


def plain_step(model, batch):
    model.zero_grad(set_to_none=True)
    text_emb, graph_emb = model(batch)
    loss = loss_fn(model)(text_emb, graph_emb)
    loss.backward()
    return loss.detach(), grads(model)


def cached_step(model, batch, chunk):
    model.zero_grad(set_to_none=True)
    chunks = split_pair_batch(batch, chunk_sizes(len(batch.index), chunk))
    loss = grad_cache_step(model, loss_fn(model), chunks, module=model)
    return loss, grads(model)


def test_chunk_sizes():
    assert even_sizes(10, 3) == [4, 3, 3]
    assert chunk_sizes(10, 4) == [4, 3, 3] and chunk_sizes(8, 4) == [4, 4] and chunk_sizes(3, 8) == [3]


@pytest.mark.parametrize("features", [False, True])
def test_split_matches_collate(features):
    ds = random_pairs(features=features)
    parts = split_pair_batch(ds.collate(range(11)), [4, 1, 6])
    for part, (a, b) in zip(parts, [(0, 4), (4, 5), (5, 11)]):
        ref = ds.collate(range(a, b))
        for x, y in [(part.graph.x, ref.graph.x), (part.graph.edge_index, ref.graph.edge_index),
                     (part.graph.batch, ref.graph.batch), (part.index, ref.index)]:
            assert torch.equal(x, y)
        assert part.graph.num_graphs == ref.graph.num_graphs
        for f in ("input_ids", "attention_mask", "features"):
            x, y = getattr(part.text, f), getattr(ref.text, f)
            assert (x is None and y is None) or torch.equal(x, y), f  # padding trimmed per part


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("chunk", [2, 4, 11])
@pytest.mark.parametrize("features", [False, True])
def test_same_loss_and_gradients_as_plain_step(chunk, features, float64):
    """Without dropout the chunked step is the full-batch step: same loss and
    parameter gradients, the temperature's included. In float64, so that the
    tolerances hold on any CPU: in float32 the chunked and the whole-batch
    reductions round differently (by up to ~1e-6 on some AVX-512 CPUs)."""
    ds = random_pairs(features=features)
    model = tiny_model(dropout=0.0)  # with features, the text side is the projection of cached features
    batch = ds.collate(range(11))
    assert model.logit_scale.dtype == torch.float64
    loss_ref, g_ref = plain_step(model, batch)
    loss, g = cached_step(model, batch, chunk)
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=1e-6)
    assert g["logit_scale"] is not None and g["logit_scale"].abs() > 0
    assert_same_grads(g, g_ref)


def test_dropout_is_replayed():
    """With dropout on, the chunked step equals the full-batch loss of the same
    chunk-wise forward pass (same RNG): the replay draws the same masks."""
    ds = random_pairs()
    model = tiny_model(dropout=0.3)
    batch = ds.collate(range(11))
    sizes = chunk_sizes(11, 4)

    torch.manual_seed(123)
    model.zero_grad(set_to_none=True)
    outs = [model(c) for c in split_pair_batch(batch, sizes)]
    loss_ref = loss_fn(model)(torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]))
    loss_ref.backward()
    g_ref, rng_after_ref = grads(model), torch.get_rng_state()

    torch.manual_seed(123)
    loss, g = cached_step(model, batch, 4)
    torch.testing.assert_close(loss, loss_ref.detach(), atol=1e-6, rtol=1e-6)
    assert_same_grads(g, g_ref)
    assert torch.equal(torch.get_rng_state(), rng_after_ref)  # the replay leaves the generator as pass 1 did

    torch.manual_seed(124)  # dropout really is on: other masks, another loss
    other, _ = cached_step(model, batch, 4)
    assert abs(float(other) - float(loss)) > 1e-4


def test_batchnorm_statistics_updated_once_per_chunk():
    ds = random_pairs()
    model = tiny_model(norm="batch")
    ref = copy.deepcopy(model)
    batch = ds.collate(range(11))
    for c in split_pair_batch(batch, chunk_sizes(11, 4)):
        ref(c)
    cached_step(model, batch, 4)
    for (name, b), (_, b_ref) in zip(model.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(b, b_ref, msg=name)


def test_nonfinite_loss_backpropagates_nothing():
    ds = random_pairs()
    model = tiny_model()
    model.zero_grad(set_to_none=True)
    chunks = split_pair_batch(ds.collate(range(11)), [6, 5])
    loss = grad_cache_step(model, lambda t, g: clip_loss(t, g, 1.0) * float("nan"), chunks)
    assert not torch.isfinite(loss)
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------ in Trainer

@pytest.fixture(scope="module")
def trainer(demo_dir, tiny_text_model, tmp_path_factory):
    from molret.training.trainer import Trainer
    cfg = RunConfig()
    t, m = cfg.train, cfg.model
    t.data_dir, t.cache_dir, t.device, t.write_submission = str(demo_dir), str(tmp_path_factory.mktemp("cache")), \
        "cpu", False
    t.batch_size, t.grad_clip, t.seed = 12, 0.0, 1
    m.text_model, m.hidden_dim, m.heads, m.embed_dim, m.proj_hidden, m.max_length = tiny_text_model, 32, 2, 16, 0, 48
    tr = Trainer(cfg, tmp_path_factory.mktemp("run"), progress=False)
    tr.start()  # the schedule train_step advances
    for mod in tr.model.modules():  # exact comparison with the full-batch step needs no dropout
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
    return tr


def test_trainer_step_with_grad_cache_equals_plain_step(trainer):
    tr = trainer
    batch = tr.train_set.collate(tr.make_batches(0)[0])
    start = copy.deepcopy(tr.model.state_dict())
    tr.cfg.train.grad_cache_chunk = 0
    loss_ref = tr.train_step(batch)
    g_ref = grads(tr.model)
    tr.model.load_state_dict(start)
    tr.cfg.train.grad_cache_chunk = 5
    try:
        loss = tr.train_step(batch)
    finally:
        tr.cfg.train.grad_cache_chunk = 0
    g = grads(tr.model)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert_same_grads(g, g_ref)


def test_trainer_grad_cache_skips_nonfinite_loss(trainer, monkeypatch):
    tr = trainer
    batch = tr.train_set.collate(tr.make_batches(0)[1])
    before = copy.deepcopy(tr.model.state_dict())
    skipped = tr.nonfinite_batches
    monkeypatch.setattr(tr, "compute_loss", lambda t, g, b: clip_loss(t, g, 1.0) * float("nan"))
    monkeypatch.setattr(tr.cfg.train, "grad_cache_chunk", 4)
    assert tr.train_step(batch) is None
    assert tr.nonfinite_batches == skipped + 1
    assert all(torch.equal(v, before[k]) for k, v in tr.model.state_dict().items())


def test_compile_is_skipped_on_cpu():
    from molret.models.encoding import compile_encoders, log
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        model = tiny_model()
        compile_encoders(model, torch.device("cpu"))
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert any("skipped on CPU" in r.getMessage() for r in records)
