import pytest
import torch

from molret.config import ModelConfig
from molret.data.graph_store import GraphStore
from molret.data.challenge import TextBatch
from molret.utils.errors import MolretError
from molret.models.encoders import build_model


def tiny_store():
    import numpy as np
    # graphs: 3-atom chain, single atom, 4-ring
    ids = np.array([1, 2, 3, 1, 2, 2, 3, 0], dtype=np.uint64)
    edges = np.array([[0, 1, 1, 2, 0, 1, 1, 2, 2, 3, 3, 0], [1, 0, 2, 1, 1, 0, 2, 1, 3, 2, 0, 3]], dtype=np.int32)
    store = GraphStore(["a", "b", "c"], ids, np.array([0, 3, 4, 8]), edges, np.array([0, 4, 4, 12]))
    store.x = ids.astype(np.int64)
    return store


@pytest.fixture(scope="module")
def hf_tiny():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    return lambda: BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=32, max_position_embeddings=32))


@pytest.mark.parametrize("conv", ["gcn", "gat", "gatv2"])
@pytest.mark.parametrize("pooling,norm", [("mean", "layer"), ("max", "batch"), ("attention", "graph")])
def test_forward_shapes_and_normalised(conv, pooling, norm, hf_tiny):
    cfg = ModelConfig(conv=conv, pooling=pooling, norm=norm, num_layers=2, hidden_dim=16, heads=4, vocab_size=4,
                      substructure_dim=5, embed_dim=8, proj_hidden=12, text_pooling="mean")
    model = build_model(cfg, torch.randn(4, 5), hf_model=hf_tiny()).eval()
    graph_emb = model.encode_graph(tiny_store().collate([0, 1, 2]))
    assert graph_emb.shape == (3, 8)
    assert torch.allclose(graph_emb.norm(dim=1), torch.ones(3), atol=1e-5)
    text = TextBatch(input_ids=torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]),
                     attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    text_emb = model.encode_text(text)
    assert text_emb.shape == (2, 8)
    assert torch.allclose(text_emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_substructure_table_frozen_by_default_and_initialised(hf_tiny):
    vectors = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    cfg = ModelConfig(vocab_size=4, substructure_dim=5, hidden_dim=16, heads=4)
    model = build_model(cfg, vectors, hf_model=hf_tiny())
    assert torch.equal(model.graph_encoder.substructure_emb.weight, vectors)
    assert not model.graph_encoder.substructure_emb.weight.requires_grad
    cfg2 = ModelConfig(vocab_size=4, substructure_dim=5, hidden_dim=16, heads=4, train_substructure_emb=True)
    assert build_model(cfg2, vectors, hf_model=hf_tiny()).graph_encoder.substructure_emb.weight.requires_grad


def test_train_text_layers(hf_tiny):
    def trainable(n):
        cfg = ModelConfig(vocab_size=4, substructure_dim=5, hidden_dim=16, heads=4, train_text_layers=n)
        model = build_model(cfg, hf_model=hf_tiny())
        return {name.split(".")[3] if ".layer." in name else name.split(".")[1]
                for name, p in model.text_encoder.named_parameters() if p.requires_grad}
    assert trainable(0) == set()
    assert trainable(1) == {"1"}          # only the top layer
    assert {"0", "1", "embeddings"} <= trainable(-1)


def test_bad_heads_is_a_clear_error(hf_tiny):
    with pytest.raises(MolretError, match="divisible"):
        build_model(ModelConfig(vocab_size=4, substructure_dim=5, hidden_dim=10, heads=4, conv="gat"), hf_model=hf_tiny())


def test_temperature_learnable():
    cfg = ModelConfig()
    assert cfg.init_temperature == pytest.approx(0.07)


@pytest.mark.parametrize("n_top", [1, 2])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_top_layers_from_cached_states_equal_full_encoder(hf_tiny, n_top, pooling):
    """--train-text-layers N with cached lower layers computes what the whole encoder computes."""
    from molret.data.challenge import TokenizedTexts
    from molret.models.encoding import lower_token_states
    cfg = ModelConfig(vocab_size=4, substructure_dim=5, hidden_dim=16, heads=4, train_text_layers=n_top,
                      text_pooling=pooling, embed_dim=8)
    model = build_model(cfg, hf_model=hf_tiny()).eval()
    import numpy as np
    lengths = [5, 3, 7, 2]
    rng = np.random.default_rng(0)
    ids = np.concatenate([rng.integers(5, 50, n) for n in lengths]).astype(np.int32)
    tokens = TokenizedTexts(ids, np.concatenate([[0], np.cumsum(lengths)]), pad_id=0)
    states = lower_token_states(model, tokens, n_top, "cpu", batch_size=3, progress=False)
    with torch.no_grad():
        full = model.encode_text(tokens.collate([0, 1, 2, 3]))
        cached = model.encode_text(states.collate([0, 1, 2, 3]))
    assert torch.allclose(full, cached, atol=1e-5)
    # and gradients reach exactly the top layers
    model.train()
    model.encode_text(states.collate([2, 0])).sum().backward()
    grads = {n.split(".")[3] for n, p in model.text_encoder.named_parameters() if p.grad is not None and ".layer." in n}
    assert grads == {str(i) for i in range(2 - n_top, 2)}


def test_layer_lr_decay_groups_by_hand(hf_tiny):
    """--layer-lr-decay 0.5 with --text-lr 1e-3 on a 2-layer BERT: top layer 1e-3,
    the one below 5e-4, the embeddings 2.5e-4 (the pooler with the top); 1.0 is
    the plain single group; only trainable layers get groups."""
    from molret.training.steps import text_param_groups
    hf = hf_tiny()
    layers = hf.encoder.layer
    groups = text_param_groups(hf, 1e-3, 0.5)
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert all(lrs[id(p)] == pytest.approx(1e-3) for p in layers[1].parameters())
    assert all(lrs[id(p)] == pytest.approx(5e-4) for p in layers[0].parameters())
    assert all(lrs[id(p)] == pytest.approx(2.5e-4) for p in hf.embeddings.parameters())
    assert all(lrs[id(p)] == pytest.approx(1e-3) for p in hf.pooler.parameters())
    assert len(lrs) == len(list(hf.parameters()))
    plain = text_param_groups(hf, 1e-3, 1.0)
    assert len(plain) == 1 and plain[0]["lr"] == 1e-3 and len(plain[0]["params"]) == len(lrs)
    for p in hf.parameters():
        p.requires_grad = False
    for p in layers[1].parameters():
        p.requires_grad = True
    top_only = text_param_groups(hf, 1e-3, 0.5)
    assert [g["lr"] for g in top_only] == [1e-3]
    for p in hf.parameters():
        p.requires_grad = False
    assert text_param_groups(hf, 1e-3, 0.5) == []
