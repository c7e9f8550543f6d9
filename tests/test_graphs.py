import numpy as np
import pytest

from molret.data.graph_store import GraphSource, build_graph_store, load_graphs
from molret.data.vocab import Vocab
from molret.data.challenge import read_pairs_tsv
from molret.utils.errors import GraphFormatError, MolretError
from molret.chem.graph_format import parse_graph_text


def test_parse_basic_and_crlf():
    text = "edgelist:\r\n0 1\r\n1 0\r\n\r\nidx to identifier:\r\n0 3537119515\r\n1 2059730245\r\n"
    edges, ids = parse_graph_text(text)
    assert edges.tolist() == [[0, 1], [1, 0]]
    assert ids == ["3537119515", "2059730245"]


def test_single_atom_has_no_edges():
    edges, ids = parse_graph_text("edgelist:\n\nidx to identifier:\n0 1035331342\n")
    assert edges.shape == (2, 0)
    assert ids == ["1035331342"]


@pytest.mark.parametrize("text,needle", [
    ("edgelist:\n0 x\n\nidx to identifier:\n0 5\n1 6\n", "line 2: node indices must be integers"),
    ("edgelist:\n0 1\n1 0\n\n", "missing 'idx to identifier:'"),
    ("edgelist:\n0 5\n\nidx to identifier:\n0 5\n1 6\n", "refers to an atom that does not exist"),
    ("edges:\n", "expected 'edgelist:'"),
    ("edgelist:\n0 1 2\n\nidx to identifier:\n0 5\n", "expected two node indices"),
    ("edgelist:\n\nidx to identifier:\n1 5\n", "atom indices must be 0..N-1"),
    ("edgelist:\n\nidx to identifier:\n", "no atoms"),
])
def test_malformed_graphs_name_file_and_line(text, needle):
    with pytest.raises(GraphFormatError) as e:
        parse_graph_text(text, "raw/42.graph")
    assert "raw/42.graph" in str(e.value) and needle in str(e.value)


def test_store_collate_offsets_and_unknown(tiny_graph_dir):
    vocab = Vocab.from_npy(tiny_graph_dir / "token_embedding_dict.npy")
    store = build_graph_store(["1", "2", "3", "4"], GraphSource(tiny_graph_dir / "raw"), progress=False)
    store.attach_vocab(vocab)
    assert store.num_unknown == 1  # identifier 999 is not in the dict
    batch = store.collate([2, 1])  # the ring (4 atoms) then the single atom
    assert batch.num_graphs == 2
    assert batch.batch.tolist() == [0, 0, 0, 0, 1]
    # table rows: sorted ids 11, 22, 33 -> rows 1, 2, 3; unknown -> 0
    assert batch.x.tolist() == [2, 2, 3, 0, 1]
    assert batch.edge_index.shape == (2, 8)
    assert int(batch.edge_index.max()) == 3
    batch = store.collate([1, 3])  # single atom, then the CRLF 2-atom graph: offset 1
    assert batch.edge_index.tolist() == [[1, 2], [2, 1]]
    assert vocab.vectors[batch.x.numpy()].tolist() == [[1.0] * 4, [3.0] * 4, [1.0] * 4]


def test_cache_roundtrip_and_rebuild_on_change(tiny_graph_dir, tmp_path):
    source = GraphSource(tiny_graph_dir / "raw")
    cache = tmp_path / "cache"
    first = load_graphs("train", ["1", "3"], source, cache)
    assert (cache / "graphs-train.npz").exists()
    assert len(list(cache.iterdir())) == 1  # one file per split, no temp leftovers
    again = load_graphs("train", ["1", "3"], source, cache)
    assert again.identifiers.tolist() == first.identifiers.tolist()
    # change a source file: the cache must be rebuilt
    import os
    import time
    path = tiny_graph_dir / "raw" / "1.graph"
    path.write_text("edgelist:\n\nidx to identifier:\n0 77\n")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    rebuilt = load_graphs("train", ["1", "3"], source, cache)
    assert rebuilt.identifiers[:1].tolist() == [77]


def test_missing_graph_names_cid_and_path(tiny_graph_dir, tmp_path):
    with pytest.raises(MolretError) as e:
        load_graphs("train", ["1", "12345"], GraphSource(tiny_graph_dir / "raw"), tmp_path / "c")
    assert "12345" in str(e.value) and "12345.graph" in str(e.value)
    assert not any((tmp_path / "c").glob("*")) if (tmp_path / "c").exists() else True


def test_tsv_read_verbatim_with_leading_quote(tiny_graph_dir):
    cids, texts = read_pairs_tsv(tiny_graph_dir / "train.tsv")
    assert cids == ["1", "2"]
    assert texts[0] == '"Quoted" start, a chain.'


@pytest.mark.parametrize("content,needle", [
    ("1\tok\n1\tagain\n", "duplicated"),
    ("1 no tab here\n", "no tab"),
    ("1\t   \n", "empty description"),
    ("abc\ttext\n", "CID must be"),
])
def test_tsv_errors(tmp_path, content, needle):
    p = tmp_path / "bad.tsv"
    p.write_text(content)
    with pytest.raises(MolretError, match=needle):
        read_pairs_tsv(p)


def test_real_zip_graphs_parse(altegrad):
    source = GraphSource(altegrad / "raw.zip")
    cids = [line.split("\t")[0] for line in (altegrad / "val.tsv").read_text().splitlines()[:50]]
    store = build_graph_store(cids, source, progress=False)
    store.attach_vocab(Vocab.from_npy(altegrad / "token_embedding_dict.npy"))
    assert len(store) == 50
    assert np.all(np.diff(store.node_ptr) >= 1)
    # both directions of every bond
    for g in range(50):
        e = store.edges[:, store.edge_ptr[g]:store.edge_ptr[g + 1]]
        assert set(map(tuple, e.T.tolist())) == set(map(tuple, e[::-1].T.tolist()))
