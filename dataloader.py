"""Datasets of the challenge data (re-exported from molret.data: challenge, graph_store, vocab):
GraphTextDataset (train/val pairs), GraphStore (molecules; ``collate``),
tokenised texts (``tokenize``), plus the graph parser and caches."""
from molret.data.graph_store import GraphSource, GraphStore, load_graphs
from molret.data.challenge import (GraphTextDataset, read_cids, read_pairs_tsv, read_queries, resolve_data_dir,
                                   tokenize)
from molret.data.vocab import Vocab
from molret.chem.graph_format import parse_graph_text  # noqa: F401
