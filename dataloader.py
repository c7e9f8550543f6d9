"""Datasets of the challenge data (re-exported from molret.data):
GraphTextDataset (train/val pairs), GraphStore (molecules; ``collate``),
tokenised texts (``tokenize``), plus the graph parser and caches."""
from molret.data import (GraphSource, GraphStore, GraphTextDataset,  # noqa: F401
                         Vocab, load_graphs, read_cids, read_pairs_tsv, read_queries, resolve_data_dir, tokenize)
from molret.graphs import parse_graph_text  # noqa: F401
