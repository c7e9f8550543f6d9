"""Encoders: a GNN over mol2vec substructure embeddings and a Hugging Face
text encoder, each followed by a projection head into one shared space where
outputs are L2-normalised; plus a learnable temperature."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from molret.config import ModelConfig
from molret.utils.errors import MolretError
from molret.models.text_bow import BowEncoder


class GraphEncoder(nn.Module):
    """Embedding table -> input projection -> [conv -> norm -> act -> dropout
    (+ residual)] x L -> pooling; with --mol-features, the molecule-features
    MLP (``FeatureEncoder``) joined to the pooled output, or (--conv features)
    in place of the graph layers."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.conv not in GRAPH_LAYERS:
            raise MolretError(f"unknown --conv {cfg.conv!r} ({', '.join(GRAPH_LAYERS)})")
        self.has_graph = GRAPH_LAYERS[cfg.conv].build is not None
        self.features = None
        if cfg.mol_features or not self.has_graph:
            if cfg.mol_features_dim <= 1:
                raise MolretError("model config has no molecule-feature width (mol_features_dim): the features "
                                  "are attached before the model is built (molret.chem.mol_features)")
            self.features = FeatureEncoder(cfg.mol_features_dim, cfg.hidden_dim, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        if not self.has_graph:
            return
        from torch_geometric import nn as gnn

        if cfg.vocab_size <= 0:
            raise MolretError("model config has no substructure vocabulary (vocab_size = 0)")
        self.substructure_emb = nn.Embedding(cfg.vocab_size, cfg.substructure_dim)
        self.substructure_emb.weight.requires_grad = cfg.train_substructure_emb
        self.input = nn.Linear(cfg.substructure_dim, cfg.hidden_dim)
        h = cfg.hidden_dim
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        if cfg.conv in ("gat", "gatv2") and h % cfg.heads:
            raise MolretError(f"--hidden-dim {h} must be divisible by --heads {cfg.heads}")
        for _ in range(cfg.num_layers):
            self.convs.append(GRAPH_LAYERS[cfg.conv].build(h, cfg.heads))
            self.norms.append({"batch": lambda: nn.BatchNorm1d(h), "layer": lambda: nn.LayerNorm(h),
                               "graph": lambda: gnn.GraphNorm(h), "none": nn.Identity}[cfg.norm]())
        if cfg.pooling == "attention":
            self.pool = gnn.aggr.AttentionalAggregation(gate_nn=nn.Linear(h, 1))
        elif cfg.pooling == "max":
            self.pool = gnn.aggr.MaxAggregation()
        elif cfg.pooling == "mean":
            self.pool = gnn.aggr.MeanAggregation()
        else:
            raise MolretError(f"unknown --pooling {cfg.pooling!r}")

    @property
    def out_dim(self) -> int:
        return self.cfg.hidden_dim * (int(self.has_graph) + int(self.features is not None))

    def forward(self, graph) -> torch.Tensor:
        parts = []
        if self.has_graph:
            h = self.input(self.substructure_emb(graph.x))
            for conv, norm in zip(self.convs, self.norms):
                out = conv(h, graph.edge_index)
                out = norm(out, graph.batch) if isinstance(norm, _graph_norm_type()) else norm(out)
                out = self.dropout(F.gelu(out))
                h = h + out if self.cfg.residual else out
            parts.append(self.pool(h, graph.batch, dim_size=graph.num_graphs))
        if self.features is not None:
            if graph.features is None:
                raise MolretError("this model reads molecule features (--mol-features) but the graphs came "
                                  "without them (molret.chem.mol_features.attach_features)")
            parts.append(self.features(graph.features))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class FeatureEncoder(nn.Module):
    """Curated molecule features (molret.chem.mol_features: the families' columns,
    then the ``undecoded`` indicator) -> standardised with statistics of the
    training molecules (buffers, saved in the checkpoint) -> dropout ->
    Linear(hidden) -> GELU -> dropout.  A molecule without a structure
    (indicator 1) has standardised values 0 (the training mean) and keeps
    its indicator."""

    def __init__(self, n_features: int, hidden: int, dropout: float):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features - 1))
        self.register_buffer("std", torch.ones(n_features - 1))
        self.linear = nn.Linear(n_features, hidden)
        self.dropout = nn.Dropout(dropout)

    @torch.no_grad()
    def set_standardisation(self, features) -> None:
        """Mean and standard deviation of each column over the rows of
        ``features`` that have a structure (constant columns: std 1)."""
        x = torch.as_tensor(features, dtype=torch.float32)
        if x.shape[1] != len(self.mean) + 1:
            raise MolretError(f"{x.shape[1]} feature columns, the model expects {len(self.mean) + 1}")
        x = x[x[:, -1] == 0, :-1]
        if len(x) == 0:
            return
        std = x.std(0, unbiased=False)
        self.mean.copy_(x.mean(0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != len(self.mean) + 1:
            raise MolretError(f"molecule features have {features.shape[-1]} columns, the model expects "
                              f"{len(self.mean) + 1} (other families or another RDKit version?)")
        features = features.float()
        known = 1.0 - features[:, -1:]
        z = (features[:, :-1] - self.mean) / self.std * known
        return self.dropout(F.gelu(self.linear(self.dropout(torch.cat([z, features[:, -1:]], dim=-1)))))


class NodeMLP(nn.Module):
    """A per-atom linear layer that ignores the bonds: stacked, with the
    pooling, a bag-of-substructures encoder (fast, and a diverse ensemble member)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - bonds unused
        return self.linear(h)


def _gnn():
    from torch_geometric import nn as gnn
    return gnn


@dataclass(frozen=True)
class GraphLayer:
    """A --conv choice: ``build(width, heads)`` makes one layer (None: no graph layers); ``doc`` is its help."""
    build: Callable | None
    doc: str


# --conv name -> GraphLayer: one entry per graph layer type (the flag's choices and help are made from it)
GRAPH_LAYERS = {
    "gcn": GraphLayer(lambda h, heads: _gnn().GCNConv(h, h), "torch-geometric GCNConv"),
    "gat": GraphLayer(lambda h, heads: _gnn().GATConv(h, h // heads, heads=heads, concat=True, dropout=0.0),
                      "torch-geometric GATConv"),
    "gatv2": GraphLayer(lambda h, heads: _gnn().GATv2Conv(h, h // heads, heads=heads, concat=True, dropout=0.0),
                        "torch-geometric GATv2Conv"),
    "mlp": GraphLayer(lambda h, heads: NodeMLP(h),
                      "per-atom layers that ignore the bonds: a fast bag-of-substructures encoder"),
    "features": GraphLayer(None, "no graph layers: an MLP over the curated RDKit features of --mol-features, "
                                 "the fast chemistry member"),
}


def _graph_norm_type():
    from torch_geometric.nn import GraphNorm
    return GraphNorm


class TextEncoder(nn.Module):
    """Any Hugging Face encoder; CLS or masked-mean pooling."""

    def __init__(self, hf_model: nn.Module, pooling: str = "cls"):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise MolretError(f"unknown --text-pooling {pooling!r} (cls or mean)")
        self.hf_model, self.pooling = hf_model, pooling

    @property
    def out_dim(self) -> int:
        return self.hf_model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.hf_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    # Partial fine-tuning with the frozen lower layers computed once: the
    # token states entering the top N layers are cached per split, so a
    # training step only runs (and back-propagates through) those N layers.
    @torch.no_grad()
    def lower_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_top: int) -> torch.Tensor:
        """Token states after the bottom (L - n_top) layers."""
        out = self.hf_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[len(out.hidden_states) - 1 - n_top]

    def forward_top(self, hidden: torch.Tensor, attention_mask: torch.Tensor, n_top: int) -> torch.Tensor:
        """Pooled output from cached ``lower_states``: the top n_top layers only."""
        from transformers.masking_utils import create_bidirectional_mask
        layers = transformer_layers(self.hf_model)
        mask = create_bidirectional_mask(config=self.hf_model.config, inputs_embeds=hidden,
                                         attention_mask=attention_mask)
        for layer in list(layers)[len(layers) - n_top:]:
            out = layer(hidden, attention_mask=mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.pool(hidden, attention_mask)

    def set_trainable_layers(self, n: int) -> None:
        """-1: all; 0: none; N: only the top N transformer layers."""
        params = list(self.hf_model.parameters())
        if n < 0:
            for p in params:
                p.requires_grad = True
            return
        for p in params:
            p.requires_grad = False
        if n == 0:
            return
        layers = transformer_layers(self.hf_model)
        if layers is None:
            raise MolretError("--train-text-layers: cannot find the transformer layers of this text model")
        for layer in list(layers)[-n:]:
            for p in layer.parameters():
                p.requires_grad = True


def transformer_layers(hf_model):
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = hf_model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    return None


def projection_head(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class MolRetModel(nn.Module):
    def __init__(self, cfg: ModelConfig, text_encoder: TextEncoder):
        super().__init__()
        self.cfg = cfg
        self.graph_encoder = GraphEncoder(cfg)
        self.text_encoder = text_encoder
        self.graph_proj = projection_head(self.graph_encoder.out_dim, cfg.proj_hidden, cfg.embed_dim, cfg.dropout)
        self.text_proj = projection_head(text_encoder.out_dim, cfg.proj_hidden, cfg.embed_dim, cfg.dropout)
        # --text-bow: a learned bag-of-words view added to the text projection's first layer
        self.text_bow = (BowEncoder(cfg.text_bow, cfg.proj_hidden if cfg.proj_hidden > 0 else cfg.embed_dim,
                                    cfg.text_bow_rank, cfg.text_bow_dropout, cfg.text_bow_chars)
                         if cfg.text_bow else None)
        # CLIP's parametrisation: logits = exp(logit_scale) * cosine.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)),
                                        requires_grad=cfg.learn_temperature)
        self.text_encoder.set_trainable_layers(cfg.train_text_layers)

    def encode_graph(self, graph) -> torch.Tensor:
        return F.normalize(self.graph_proj(self.graph_encoder(graph)).float(), dim=-1)

    def text_features(self, text) -> torch.Tensor:
        """The text encoder's pooled output (what --freeze-text caches)."""
        if text.features is not None:
            return text.features
        if text.hidden_states is not None:
            return self.text_encoder.forward_top(text.hidden_states, text.attention_mask, self.cfg.train_text_layers)
        return self.text_encoder(text.input_ids, text.attention_mask)

    def encode_text(self, text) -> torch.Tensor:
        features = self.text_features(text)
        if self.text_bow is None:
            return F.normalize(self.text_proj(features).float(), dim=-1)
        if text.bow_ids is None:
            raise MolretError("this model has a bag-of-words text view (--text-bow) but the texts came without "
                              "their TF-IDF rows (molret.models.text_bow.attach)")
        bow = self.text_bow(text.bow_ids, text.bow_offsets, text.bow_weights)
        if isinstance(self.text_proj, nn.Linear):
            return F.normalize((self.text_proj(features) + bow).float(), dim=-1)
        hidden = self.text_proj[0](features)
        return F.normalize(self.text_proj[1:](hidden + bow.to(hidden.dtype)).float(), dim=-1)

    def forward(self, batch):
        return self.encode_text(batch.text), self.encode_graph(batch.graph)

    def temperature_scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)


def build_model(cfg: ModelConfig, substructure_vectors=None, hf_model: nn.Module | None = None) -> MolRetModel:
    """The model of ``cfg``. ``substructure_vectors`` initialises the embedding
    table (mol2vec); ``hf_model`` is the text encoder (loaded from
    ``cfg.text_model`` when not given)."""
    if hf_model is None:
        from molret.models.text_models import load_encoder
        hf_model = load_encoder(cfg.text_model)
    model = MolRetModel(cfg, TextEncoder(hf_model, cfg.text_pooling))
    if substructure_vectors is not None and model.graph_encoder.has_graph:
        vectors = torch.as_tensor(substructure_vectors, dtype=torch.float32)
        if tuple(vectors.shape) != (cfg.vocab_size, cfg.substructure_dim):
            raise MolretError(f"substructure table is {tuple(vectors.shape)}, config expects "
                              f"({cfg.vocab_size}, {cfg.substructure_dim})")
        with torch.no_grad():
            model.graph_encoder.substructure_emb.weight.copy_(vectors)
    return model
