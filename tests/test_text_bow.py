"""The bag-of-words text view (--text-bow): terms, IDF and TF-IDF rows by hand,
the model variant against the plain model, batching, checkpoints, the CLIs."""
import math

import numpy as np
import pytest
import torch

from molret.models import text_bow as B
from molret.config import ModelConfig
from molret.data.challenge import TextBatch, TextFeatures
from molret.models.encoders import build_model


def test_terms_words_and_pairs():
    assert B.terms("2-Hydroxybutanoic acid, an acid.") == [
        "2-hydroxybutanoic", "acid", "an", "acid", "2-hydroxybutanoic acid", "acid an", "an acid"]
    assert B.terms("(R)-lactate is") == ["(r)-lactate", "is", "(r)-lactate is"]
    assert B.terms("") == []


def test_bucket_is_stable_crc32():
    # zlib.crc32(b"acid") = 380587948; Python's salted hash() would change between runs
    assert B.bucket("acid", 1 << 32) == 380587948
    assert B.bucket("acid", 1000) == 380587948 % 1000


def _no_collisions(n):
    """A bucket count where the terms of these tests do not collide."""
    texts = ["an acid", "an acid an acid", "a base"]
    used = [B.bucket(t, n) for t in {t for x in texts for t in B.terms(x)}]
    assert len(set(used)) == len(used)
    return n


def test_character_ngrams_by_hand():
    assert B.terms("an acid", chars=0) == ["an", "acid", "an acid"]
    assert B.terms("an acid", chars=2) == B.terms("an acid")          # below 3: words and pairs only
    # "acid" (4 characters) inside marks: 3-grams "#<ac" "#aci" "#cid" "#id>", 4-grams "#<aci" "#acid" "#cid>";
    # "an" is too short to have any
    assert B.terms("an acid", chars=4) == ["an", "acid", "an acid", "#<ac", "#aci", "#cid", "#id>",
                                           "#<aci", "#acid", "#cid>"]
    assert len(B.terms("chloro", chars=5)) == 1 + 6 + 5 + 4        # the word; 8-char "<chloro>": 6 + 5 + 4 n-grams


def test_character_ngrams_reach_the_idf_and_the_rows():
    texts = ["a chloro acid", "the chloro base", "an acid"]
    n = 1 << 20
    plain, grams = B.fit_idf(texts, n, min_df=2), B.fit_idf(texts, n, min_df=2, chars=3)
    # "#<ch", "#chl", "#hlo", "#lor", "#oro", "#ro>" (from both chloro) and "#<ac", "#aci", "#cid", "#id>"
    assert np.count_nonzero(grams) == np.count_nonzero(plain) + 10
    assert grams[B.bucket("#chl", n)] > 0 and plain[B.bucket("#chl", n)] == 0
    enc = B.BowEncoder(n, 4, chars=3)
    enc.set_idf(grams)
    assert len(enc.rows(["chloro"]).ids) == 1 + 6      # the word and its six 3-grams
    assert len(B.BowEncoder(n, 4).rows(["chloro"]).ids) == 0   # no IDF yet: nothing kept


def test_idf_by_hand():
    n = _no_collisions(4099)
    idf = B.fit_idf(["an acid", "an acid an acid", "a base"], n, min_df=2)
    # "an", "acid", "an acid" are in 2 of 3 texts: ln(4 / 3) + 1; "acid an" (1 text) and "a", "base": min_df
    for t in ("an", "acid", "an acid"):
        assert idf[B.bucket(t, n)] == pytest.approx(math.log(4 / 3) + 1)
    for t in ("acid an", "a", "base", "a base"):
        assert idf[B.bucket(t, n)] == 0.0
    assert np.count_nonzero(idf) == 3


def test_tfidf_rows_by_hand():
    n = _no_collisions(4099)
    idf = B.fit_idf(["an acid", "an acid an acid", "a base"], n, min_df=2)
    rows = B.tfidf_rows(["an acid an acid", "a base", "an"], idf)
    assert list(np.diff(rows.ptr)) == [3, 0, 1]   # "acid an" has IDF 0; "a base" has no known term
    w = math.log(4 / 3) + 1
    first = {int(b): float(x) for b, x in zip(rows.ids[:3], rows.weights[:3])}
    # tf: "an" 2, "acid" 2, "an acid" 2 -> (1 + ln 2) w each, then L2-normalised: 1/sqrt(3) each
    for t in ("an", "acid", "an acid"):
        assert first[B.bucket(t, n)] == pytest.approx(1 / math.sqrt(3))
    assert rows.weights[3] == pytest.approx(1.0) and rows.ids[3] == B.bucket("an", n)
    assert w > 0


def test_batch_is_embeddingbag_input():
    rows = B.BowRows(np.array([5, 7, 1, 2, 3]), np.array([.1, .2, .3, .4, .5], np.float32), np.array([0, 2, 2, 5]))
    ids, offsets, weights = rows.batch([2, 0, 1])
    assert ids.tolist() == [1, 2, 3, 5, 7] and offsets.tolist() == [0, 3, 5]  # row 1 is empty
    assert weights.tolist() == pytest.approx([.3, .4, .5, .1, .2])
    ids, offsets, weights = rows.batch([])
    assert len(ids) == len(offsets) == 0


def test_bow_rows_slice_equals_direct_batch():
    """gradcache's chunks: TextBatch.bow_rows(start, stop) is the batch of those rows."""
    rows = B.BowRows(np.array([5, 7, 1, 2, 3, 9]), np.arange(6, dtype=np.float32), np.array([0, 2, 2, 5, 6]))
    ids, offsets, weights = rows.batch([0, 1, 2, 3])
    full = TextBatch(features=torch.zeros(4, 1), bow_ids=ids, bow_offsets=offsets, bow_weights=weights)
    for start, stop in ((0, 2), (1, 3), (2, 4), (3, 4)):
        part = full.bow_rows(start, stop)
        want = rows.batch(list(range(start, stop)))
        assert part["bow_ids"].tolist() == want[0].tolist()
        assert part["bow_offsets"].tolist() == want[1].tolist()
        assert part["bow_weights"].tolist() == want[2].tolist()
    assert TextBatch(features=torch.zeros(2, 1)).bow_rows(0, 1) == {}


def _models(proj_hidden, rank=0):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    hf = lambda: BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,  # noqa: E731
                                      num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))
    kw = dict(vocab_size=4, substructure_dim=5, hidden_dim=16, heads=4, embed_dim=8, proj_hidden=proj_hidden,
              train_text_layers=0)
    plain = build_model(ModelConfig(**kw), hf_model=hf()).eval()
    bow = build_model(ModelConfig(**kw, text_bow=64, text_bow_rank=rank), hf_model=hf()).eval()
    missing = bow.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing.missing_keys) == {"text_bow.table.weight", "text_bow.idf"} | (
        {"text_bow.widen.weight"} if rank else set())
    return plain, bow


@pytest.mark.parametrize("proj_hidden,rank", [(12, 0), (0, 0), (12, 3)])
def test_variant_with_zero_table_equals_plain_model(proj_hidden, rank):
    """--text-bow adds table rows to the projection's first layer: a zero table
    gives exactly the plain model; a non-zero one moves the embedding."""
    plain, bow = _models(proj_hidden, rank)
    bow.text_bow.set_idf(B.fit_idf(["an acid", "an acid an base"], 64))
    texts = ["an acid", "a base", "zzz"]
    feats = TextFeatures(np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32))
    data = B.attach(feats, texts, bow)
    batch = data.collate([0, 1, 2])
    with torch.no_grad():
        torch.nn.init.zeros_(bow.text_bow.table.weight)
        assert torch.allclose(bow.encode_text(batch), plain.encode_text(feats.collate([0, 1, 2])), atol=1e-6)
        torch.nn.init.normal_(bow.text_bow.table.weight)
        moved = bow.encode_text(batch)
        base = plain.encode_text(feats.collate([0, 1, 2]))
    assert not torch.allclose(moved[0], base[0])
    assert torch.allclose(moved[2], base[2], atol=1e-6)  # no known word: the plain embedding
    assert B.attach(feats, texts, plain) is feats


def test_by_hand_projection_sum():
    """encode_text = normalize(proj[1:](proj[0](features) + SCALE * sum_i w_i table[b_i]))."""
    _, bow = _models(12)
    n = 64
    bow.text_bow.set_idf(B.fit_idf(["an acid", "an acid"], n))
    feats = TextFeatures(np.ones((1, 16), np.float32))
    batch = B.attach(feats, ["an acid"], bow).collate([0])
    rows = bow.text_bow.rows(["an acid"])
    with torch.no_grad():
        table = bow.text_bow.table.weight
        added = sum(B.SCALE * float(w) * table[int(b)] for b, w in zip(rows.ids, rows.weights))
        h = bow.text_proj[0](torch.ones(1, 16)) + added
        want = torch.nn.functional.normalize(bow.text_proj[1:](h), dim=-1)
        assert torch.allclose(bow.encode_text(batch), want, atol=1e-6)


def test_missing_rows_is_a_clear_error():
    from molret.utils.errors import MolretError
    _, bow = _models(12)
    with pytest.raises(MolretError, match="text-bow"):
        bow.encode_text(TextFeatures(np.ones((1, 16), np.float32)).collate([0]))


def test_train_save_predict_with_text_bow(demo_dir, tiny_text_model, tmp_path):
    """Training fits the IDF on the training texts and the checkpoint carries
    it: predictions.py from best.pt reproduces the run's submission; a
    --text-bow out of range is refused (test_config covers every flag)."""
    import json
    import main as main_script
    import predictions as predictions_script
    main_script.main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--freeze-text",
                      "--text-pooling", "mean", "--epochs", "2", "--hidden-dim", "32", "--heads", "2",
                      "--max-length", "64", "--text-bow", "4096", "--runs-dir", str(tmp_path), "--run-name", "b",
                      "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    run = tmp_path / "b"
    assert json.loads((run / "config.json").read_text())["model"]["text_bow"] == 4096
    from molret.models.checkpoint import load_model
    model, cfg, _, _ = load_model(run / "best.pt", torch.device("cpu"))
    from molret.data.challenge import read_pairs_tsv
    _, train_texts = read_pairs_tsv(demo_dir / "train.tsv")
    assert np.allclose(model.text_bow.idf.numpy(), B.fit_idf(train_texts, 4096))
    out = tmp_path / "pred.csv"
    predictions_script.main(["--model", str(run / "best.pt"), "--out", str(out), "--no-progress"])
    assert out.read_bytes() == (run / "submission.csv").read_bytes()


def test_word_dropout_training_only_and_unbiased():
    """--text-bow-dropout: eval is untouched; in training each term is kept
    with probability 1 - p and rescaled, so the mean output is the eval output."""
    enc = B.BowEncoder(8, 3, dropout=0.5)
    ids, offsets, weights = torch.tensor([1, 4, 6]), torch.tensor([0]), torch.tensor([0.5, 0.3, 0.2])
    enc.eval()
    want = enc(ids, offsets, weights).detach()
    enc.dropout = 0.0
    assert torch.equal(enc(ids, offsets, weights), want)
    enc.dropout = 0.5
    enc.train()
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([enc(ids, offsets, weights) for _ in range(4000)])
    assert not torch.allclose(draws[0], want)
    assert torch.allclose(draws.mean(0), want, atol=0.05 * float(want.detach().abs().max()))
