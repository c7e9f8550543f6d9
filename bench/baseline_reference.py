"""A faithful re-implementation of the organisers' baseline data path, used
only as the reference of bench/benchmark.py:

* every molecule is processed once into its own ``item_<cid>.pt`` file
  (torch.save of the tensors of a torch_geometric Data with 300 floats per
  atom copied from the mol2vec dict, plus the description tokenised with
  ``padding="max_length", max_length=256``);
* every item is read back with ``torch.load`` (``weights_only=True``: the
  baseline pickled the Data object itself, which only the unsafe loader
  reads) and batched by torch_geometric's DataLoader (Batch.from_data_list).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class BaselineGraphTextDataset(torch.utils.data.Dataset):
    def __init__(self, processed_dir, cids, texts, source, embedding_dict, tokenizer, max_length=256):
        from molret.chem.graph_format import parse_graph_text

        self.dir = Path(processed_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cids = list(cids)
        for cid, text in zip(self.cids, texts):
            path = self.dir / f"item_{cid}.pt"
            if path.exists():
                continue
            edge_index, identifiers = parse_graph_text(source.read(cid), cid)
            x = [embedding_dict.get(i, embedding_dict["UNK"]) for i in identifiers]
            enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=max_length,
                            padding="max_length", add_special_tokens=True)
            torch.save({"x": torch.FloatTensor(np.array(x)), "edge_index": torch.LongTensor(edge_index),
                        "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, path)

    def __len__(self):
        return len(self.cids)

    def __getitem__(self, idx):
        from torch_geometric.data import Data
        return Data(**torch.load(self.dir / f"item_{self.cids[idx]}.pt", weights_only=True))


def baseline_loader(dataset, batch_size, seed=0):
    from torch_geometric.loader import DataLoader
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)


def encode_baseline_batch(model, batch):
    """Our model on a baseline batch: the graph encoder receives the 300-float
    atom features directly (bypassing the embedding table, same layers after)."""
    enc = model.graph_encoder
    h = enc.input(batch.x)
    for conv, norm in zip(enc.convs, enc.norms):
        out = conv(h, batch.edge_index)
        out = norm(out, batch.batch) if norm.__class__.__name__ == "GraphNorm" else norm(out)
        out = enc.dropout(torch.nn.functional.gelu(out))
        h = h + out if enc.cfg.residual else out
    g = enc.pool(h, batch.batch, dim_size=batch.num_graphs)
    graph_emb = torch.nn.functional.normalize(model.graph_proj(g), dim=-1)
    text = model.text_encoder(batch.input_ids, batch.attention_mask)
    text_emb = torch.nn.functional.normalize(model.text_proj(text), dim=-1)
    return text_emb, graph_emb
