"""Datasets of the challenge data (re-exported from molret.data):
GraphTextDataset (train/val pairs), GraphDataset (test molecules),
TextDataset (test queries), plus the graph parser and caches."""
from molret.data import (GraphDataset, GraphSource, GraphStore, GraphTextDataset, TextDataset,  # noqa: F401
                         Vocab, load_graphs, read_cids, read_pairs_tsv, read_queries, resolve_data_dir, tokenize)
from molret.graphs import parse_graph_text  # noqa: F401
