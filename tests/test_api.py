"""The Python API (molret.MolRetriever): the README's example as written, each method against the engines it
wraps, and predictions.py's submission through the API equal byte for byte to the engines' own."""
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from molret.utils.errors import MolretError

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def retriever(web_checkpoint):
    from molret import MolRetriever
    return MolRetriever.from_checkpoint(str(web_checkpoint), device="cpu")


def test_readme_example_runs_as_written(web_checkpoint, demo_dir, tmp_path):
    code = readme_example()
    for placeholder in ("runs/demo/best.pt", '"data/demo"', "/tmp/molret-cache"):
        assert placeholder in code                      # the substitutions below hit what the README shows
    code = (code.replace("runs/demo/best.pt", str(web_checkpoint)).replace('"data/demo"', repr(str(demo_dir)))
            .replace("/tmp/molret-cache", str(tmp_path / "cache")))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (Python API)", "exec"), {})
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\[\[\s*-?[\d.e+-]+\s+-?[\d.e+-]+\s*\]\]", lines[0]), lines[0]   # a 1 x 2 similarity
    hits = [line.split(" ", 3) for line in lines[1:]]
    assert [int(h[0]) for h in hits] == [1, 2, 3, 4, 5]
    scores = [float(h[2]) for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert any((tmp_path / "cache").rglob("emb-*.npz"))   # embed_library cached the library's embeddings


def test_methods_match_the_engines(retriever, demo_dir, tmp_path):
    from molret.models.encoding import similarity_matrix
    from molret.data.challenge import tokenize
    from molret.models.encoding import embed_texts
    from molret.models.text_bow import attach
    texts = ["The molecule is a carboxylic acid.", "An aromatic amine."]
    text_emb = retriever.encode_text(texts)
    tokens = attach(tokenize(texts, retriever.tokenizer, retriever.cfg.model.max_length), texts, retriever.model)
    assert np.array_equal(text_emb, embed_texts(retriever.model, tokens, retriever.device, 64))
    assert np.allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    graph_emb = retriever.encode_graphs(["CCO", "c1ccccc1N", "CC(=O)O"])
    assert graph_emb.shape == (3, text_emb.shape[1])
    assert np.array_equal(retriever.similarity(text_emb, graph_emb), similarity_matrix(text_emb, graph_emb))
    # a SMILES list and the same molecules as a library file embed alike
    lib = tmp_path / "three.smi"
    lib.write_text("CCO a\nc1ccccc1N b\nCC(=O)O c\n")
    assert np.allclose(retriever.encode_graphs(lib), graph_emb, atol=1e-6)
    library = retriever.embed_library(lib, cache_dir=tmp_path / "cache")
    hits = retriever.search(texts, library, k=2)
    assert [[h.rank for h in q] for q in hits] == [[1, 2], [1, 2]]
    best = similarity_matrix(text_emb, graph_emb).argmax(axis=1)
    assert [q[0].id for q in hits] == [["a", "b", "c"][j] for j in best]


def test_clear_errors(retriever):
    with pytest.raises(MolretError, match="invalid SMILES"):
        retriever.encode_graphs(["CCO", "C1CC"])
    with pytest.raises(MolretError, match="list of queries"):
        retriever.search("one string", "unused.smi")
    with pytest.raises(MolretError, match="k must be at least 1"):
        retriever.search(["q"], "unused.smi", k=0)


def test_predictions_through_the_api_equal_the_engines(web_checkpoint, demo_dir, tmp_path):
    """predictions.py (its CLI -> PredictionOptions -> MolRetriever) writes the same bytes as the engines
    called directly: load the checkpoint, embed the test split, cosine similarity, write the CSV."""
    import torch
    import predictions as predictions_script
    from molret.api.predictions import query_input
    from molret.data.challenge import read_test_inputs, resolve_data_dir
    from molret.data.graph_store import GraphSource, load_graphs
    from molret.evaluation.submission import write_submission
    from molret.models.checkpoint import load_model
    from molret.models.encoding import embed_test, similarity_matrix
    out = tmp_path / "api.csv"
    predictions_script.main(["--model", str(web_checkpoint), "--data-dir", str(demo_dir), "--out", str(out),
                             "--cache-dir", str(tmp_path / "c1"), "--device", "cpu", "--no-pool", "--no-progress"])
    device = torch.device("cpu")
    model, cfg, vocab, tokenizer = load_model(web_checkpoint, device)
    paths = resolve_data_dir(demo_dir)
    cids, queries = read_test_inputs(paths)
    cache = tmp_path / "c2"
    graphs = load_graphs("test", cids, GraphSource(paths.need("raw")), cache, vocab)
    tokens = query_input("test", queries, model, cfg, tokenizer, cache, device, False)
    text_emb, graph_emb = embed_test(model, tokens, graphs, device, cfg.train.eval_batch_size, cfg.train.amp)
    write_submission(similarity_matrix(text_emb, graph_emb), tmp_path / "engines.csv")
    assert out.read_bytes() == (tmp_path / "engines.csv").read_bytes()
