"""Graph libraries searched with their decoded SMILES: search.py (text and --html), predictions.py
--top-k --smiles and a shard folder of a graph library show the structures decoded from the graphs,
with the no-stereochemistry note, and a --smiles-map entry replaces a decoded SMILES.

The tiny random checkpoint and the hand-written molecules are those of tests/test_shards.py.
"""
from __future__ import annotations

import csv

import pytest

from test_shards import INVALID_ROWS, QUERIES, SMI, loaded, tiny_ckpt  # noqa: E402,F401  (fixtures)
from conftest import run_script  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402
from molret.chem.graph_decoder import NO_STEREO_NOTE  # noqa: E402


def canonical(smiles: str) -> str:
    from rdkit import Chem
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


@pytest.fixture(scope="module")
def graph_lib(tmp_path_factory):
    """(a folder of 12 .graph files built from SMI + 2 damaged ones, id -> canonical SMILES)."""
    from molret.chem.smiles_graph import graph_to_text, smiles_to_graph
    raw = tmp_path_factory.mktemp("decodedlib") / "raw"
    raw.mkdir()
    truth = {}
    for k, line in enumerate(SMI.splitlines()[1:]):
        ident = str(100 + k)
        try:
            g = smiles_to_graph(line.split()[0])
        except MolretError:
            (raw / f"{ident}.graph").write_text("edgelist:\nnot a graph\n")
            continue
        (raw / f"{ident}.graph").write_text(graph_to_text(*g))
        truth[ident] = canonical(line.split()[0])
    assert len(truth) == 12 and len(INVALID_ROWS) == 2
    return raw, truth


_run = run_script


def test_search_prints_and_draws_decoded_smiles(graph_lib, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    raw, truth = graph_lib
    mapped = "100"                         # ethanol, given by the map with an (invented) isotope label
    smap = tmp_path / "map.tsv"
    smap.write_text(f"CID\tSMILES\n{mapped}\t[13CH3]CO\n")
    html = tmp_path / "report.html"
    code, res, cap = _run("search", capsys, "--model", tiny_ckpt, "--library", raw, "--cache-dir", tmp_path / "c",
                          "--smiles-map", smap, "-k", 12, "--no-progress", "--html", html, QUERIES[0])
    assert code == 0, cap.err
    hits = {h.id: h for h in res["results"][0]}
    assert len(hits) == 12
    assert hits[mapped].smiles == "[13CH3]CO" and not hits[mapped].decoded     # the map wins over the decoder
    for ident, smi in truth.items():
        if ident != mapped:
            assert hits[ident].smiles == smi and hits[ident].decoded, ident
    assert f"note: 11 of the 12 SMILES above were {NO_STEREO_NOTE}" in cap.out
    assert cap.out.count("note:") == 1 and " - " not in cap.out.replace("query 1: ", "")
    page = html.read_text()
    assert page.count("<svg") == 12 and page.count("no stereo</div>") == 11 and "structure unknown" not in page
    # the second run reads the library from the cache: still decoded
    code, res, cap = _run("search", capsys, "--model", tiny_ckpt, "--library", raw, "--cache-dir", tmp_path / "c",
                          "-k", 3, "--no-progress", QUERIES[1])
    assert code == 0 and res["engine"].lib.cached and all(h.decoded and h.smiles for h in res["results"][0])
    assert f"note: the SMILES above were {NO_STEREO_NOTE}" in cap.out


def test_predictions_top_k_with_smiles(graph_lib, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    raw, truth = graph_lib
    qfile = tmp_path / "q.txt"
    qfile.write_text("".join(q + "\n" for q in QUERIES))
    base = ["--model", tiny_ckpt, "--library", raw, "--queries", qfile, "--cache-dir", tmp_path / "c",
            "--no-progress", "--threads", 1]
    code, res, cap = _run("predictions", capsys, *base, "--top-k", 3, "--smiles", "--out", tmp_path / "top.csv")
    assert code == 0 and "(query,rank,id,score,smiles)" in cap.out and NO_STEREO_NOTE in cap.out, cap.err
    with open(tmp_path / "top.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["query", "rank", "id", "score", "smiles"] and len(rows) == 1 + 3 * len(QUERIES)
    assert all(r[4] == truth[r[2]] for r in rows[1:])
    code, _, cap = _run("predictions", capsys, *base, "--smiles", "--out", tmp_path / "x.csv")
    assert code == 2 and "--smiles adds a column to the --top-k output" in cap.err
    code, _, cap = _run("predictions", capsys, "--model", tiny_ckpt, "--smiles", "--out", tmp_path / "y.csv")
    assert code == 2 and "--smiles applies to --library with --top-k only" in cap.err


def test_shard_folder_of_a_graph_library_has_decoded_smiles(graph_lib, loaded, tmp_path):  # noqa: F811
    from molret.library import shards as SH
    from molret.library.shard_folder import open_shard_folder
    from molret.search.engine import FolderSmiles
    from molret.models.embedder import Embedder
    raw, truth = graph_lib
    model, cfg, vocab, _ = loaded
    out = tmp_path / "g.shards"
    for i in range(2):
        SH.embed_shard(raw, out, i, 2, Embedder.single(model, cfg, vocab), chunk_size=4)
    lib = open_shard_folder(out)
    assert lib.meta["smiles_decoded"] and lib.meta["invalid"] == 2
    assert {lib.ids[j]: lib.smiles[j] for j in range(len(lib))} == truth
    folder = FolderSmiles(lib.smiles, lib.ids, {}, lib.meta["smiles_decoded"])
    assert all(folder.is_decoded(j) for j in range(len(lib)))
    # a shard written before the decoder (no smiles_decoded in its manifest) is redone
    import json
    manifest = out / f"{SH.shard_name(0, 2)}.json"
    m = json.loads(manifest.read_text())
    del m["smiles_decoded"]
    manifest.write_text(json.dumps(m))
    assert not SH.embed_shard(raw, out, 0, 2, Embedder.single(model, cfg, vocab), chunk_size=4).skipped
    assert SH.embed_shard(raw, out, 1, 2, Embedder.single(model, cfg, vocab), chunk_size=4).skipped
