"""The challenge splits as training and prediction use them: graphs, texts and their cached text features.

``load_challenge_data`` reads train/val/test (and --extra-pairs) from a data
folder; ``prepare_texts`` tokenises each split and, with --freeze-text or
--train-text-layers, caches what the frozen text layers compute.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from molret.models import text_bow
from molret.models import text_models
from molret.config import RunConfig
from molret.data.graph_store import GraphSource, GraphStore, load_graphs
from molret.data.challenge import (TextFeatures, default_cache_dir, load_keyed_npz, read_pairs_tsv, read_test_inputs,
                                   resolve_data_dir, save_keyed_npz, texts_hash, tokenize)
from molret.data.vocab import Vocab
from molret.utils.errors import MolretError
from molret.models.encoding import lower_token_states, run_text_encoder
from molret.utils.files import check_writable_dir

log = logging.getLogger("molret")


@dataclass
class Split:
    cids: list
    texts: list | None
    graphs: GraphStore | None
    text_data: object | None = None   # what training sees: TokenizedTexts or TextFeatures
    tokens: object | None = None      # TokenizedTexts (what a checkpoint alone can recompute)
    n_extra: int = 0                  # its last n_extra pairs come from --extra-pairs


@dataclass
class ChallengeData:
    vocab: Vocab
    train: Split | None
    val: Split | None
    test_graphs: Split | None
    test_queries: Split | None
    cache_dir: Path


def load_challenge_data(cfg: RunConfig, need_train: bool = True, need_test: bool = True,
                        progress: bool = True) -> ChallengeData:
    t = cfg.train
    paths = resolve_data_dir(t.data_dir)
    cache_dir = Path(t.cache_dir) if t.cache_dir else default_cache_dir(t.data_dir)
    try:
        check_writable_dir(cache_dir)
    except MolretError:
        log.warning(f"cache folder {cache_dir} is not writable: nothing will be cached")
    vocab = Vocab.from_npy(paths.need("embeddings"))
    source = GraphSource(paths.need("raw"))

    def pairs(name, limit):
        cids, texts = read_pairs_tsv(paths.need(name))
        if limit:
            cids, texts = cids[:limit], texts[:limit]
        return Split(cids, texts, load_graphs(name if not limit else f"{name}-first{limit}", cids, source,
                                              cache_dir, vocab, progress))

    train = pairs("train", t.max_train) if need_train else None
    val = pairs("val", t.max_val) if need_train and paths.val is not None else None
    if t.train_on_val and train is not None and val is not None:
        # the final fit: val pairs join the training pairs (val metrics are then optimistic)
        train = Split(train.cids + val.cids, train.texts + val.texts,
                      load_graphs(f"train{t.max_train or ''}+val{t.max_val or ''}", train.cids + val.cids, source,
                                  cache_dir, vocab, progress))
    if t.extra_pairs and train is not None:
        train = with_extra_pairs(train, t.extra_pairs, source, cache_dir, vocab, progress)
    test_graphs = test_queries = None
    if need_test and paths.test_cids is not None and paths.test_text is not None:
        cids, queries = read_test_inputs(paths)
        test_graphs = Split(cids, None, load_graphs("test", cids, source, cache_dir, vocab, progress))
        test_queries = Split(list(range(len(queries))), queries, None)
    from molret.chem.mol_features import ensure_model_features
    for split in (train, val, test_graphs):
        if split is not None:  # --mol-features: each split's molecules decoded and described (cached)
            ensure_model_features(cfg.model, split.graphs, cache_dir=cache_dir, progress=progress)
    for split in (train, val, test_graphs):
        if split is not None and split.graphs.num_unknown:
            log.info(f"{split.graphs.num_unknown} of {len(split.graphs.identifiers)} atoms have a substructure "
                     f"missing from the embedding dict (mapped to UNK)")
            break
    return ChallengeData(vocab, train, val, test_graphs, test_queries, cache_dir)


def with_extra_pairs(train: Split, path: str, source: GraphSource, cache_dir: Path, vocab: Vocab,
                     progress: bool) -> Split:
    """``train`` followed by the pairs of the TSV at ``path`` (--extra-pairs);
    their molecules come from the same graph source."""
    cids, texts = read_pairs_tsv(path)
    all_cids = train.cids + cids
    graphs = load_graphs(f"train-extra-{texts_hash(all_cids + texts)[:12]}", all_cids, source, cache_dir, vocab,
                         progress)  # a molecule missing from the source is one error line
    log.info(f"--extra-pairs: {len(cids)} more training pairs from {path}")
    return Split(all_cids, train.texts + texts, graphs, n_extra=len(cids))


def prepare_texts(data: ChallengeData, cfg: RunConfig, tokenizer, model, device, progress=True):
    """Tokenise each split once (cached); with --freeze-text also run the
    frozen encoder once per split and keep only its pooled outputs (cached,
    keyed by model, pooling and max length)."""
    m = cfg.model
    model_id = text_models.identity(m.text_model)
    key = f"{model_id}-len{m.max_length}"
    # train last: with --extra-pairs (val/test queries as pseudo-labels) its extra texts' frozen features
    # are those already computed for val/test
    t = cfg.train
    # the training texts' cache files are named by what they hold, so that runs on other subsets
    # (--max-train, --train-on-val's final fit) keep their own files instead of rebuilding each other's
    train_name = ("train" + (f"-first{t.max_train}" if t.max_train else "")
                  + (f"+val{f'-first{t.max_val}' if t.max_val else ''}" if t.train_on_val else ""))
    for name, split in (("val", data.val), ("test", data.test_queries), (train_name, data.train)):
        if split is None:
            continue
        tokens = tokenize(split.texts, tokenizer, m.max_length, data.cache_dir / f"tokens-{name}-{key}.npz")
        split.tokens = tokens
        # test queries are embedded for the submission from what predictions.py recomputes: the cached
        # frozen features, else the tokens; the lower-layer states only to select epochs by the re-ranked pool
        cheap = name != "test" or cfg.train.select_metric == "pool_lrap_reranked"
        if cfg.train.freeze_text:
            path = data.cache_dir / f"textfeat-{name}-{key}-{m.text_pooling}.npz"
            if split.n_extra:
                split.text_data = TextFeatures(extra_pair_features(data, model, tokens, path, device,
                                                                   cfg.train.eval_batch_size, progress))
            else:
                split.text_data = TextFeatures(text_features_cached(model, tokens, path, device,
                                                                    cfg.train.eval_batch_size, progress))
        elif m.train_text_layers > 0 and cfg.train.cache_frozen_layers and cheap:
            split.text_data = lower_token_states(model, tokens, m.train_text_layers, device,
                                                 cfg.train.eval_batch_size, progress)
        else:
            split.text_data = tokens
    attach_bow(data, model)


def attach_bow(data: ChallengeData, model) -> None:
    """--text-bow: the TF-IDF rows join each split's text data (after the frozen
    features, which extra_pair_features reads); the IDF is fitted on the training
    descriptions unless the model already carries one (a loaded checkpoint)."""
    encoder = getattr(model, "text_bow", None)
    if encoder is None:
        return
    if not encoder.fitted:
        if data.train is None:
            raise MolretError("--text-bow: the bag-of-words view has no IDF yet and there are no training texts")
        encoder.set_idf(text_bow.fit_idf(data.train.texts, len(encoder.idf), chars=encoder.chars))
    for split in (data.val, data.test_queries, data.train):
        if split is not None and split.text_data is not None:
            bow = encoder.rows(split.texts)  # once: the features and the tokens share the rows
            split.text_data = text_bow.WithBow(split.text_data, bow)
            if split.tokens is not None:
                split.tokens = text_bow.WithBow(split.tokens, bow)


@torch.no_grad()
def text_features_cached(model, tokens, path: Path, device, batch_size: int, progress=True) -> np.ndarray:
    """The frozen text encoder's outputs for ``tokens``, from the cache at ``path`` when it holds them."""
    key = hashlib.sha1(tokens.ptr.tobytes() + tokens.ids.tobytes()).hexdigest()  # the exact inputs
    cached = load_keyed_npz(path, key)
    if cached is not None:
        return cached["features"]
    features = run_text_encoder(model, tokens, device, batch_size, progress)
    save_keyed_npz(path, key, features=features)
    return features


@torch.no_grad()
def extra_pair_features(data: ChallengeData, model, tokens, path: Path, device, batch_size: int,
                        progress=True) -> np.ndarray:
    """Frozen features of a train split ending with --extra-pairs: those of
    train.tsv's pairs from their usual cache (``path``), those of extra texts
    that val or the test queries already encoded (pseudo-labels are such
    texts) copied, and only the others encoded."""
    split = data.train
    n_base = len(split.texts) - split.n_extra
    base = text_features_cached(model, tokens.take(np.arange(n_base)), path, device, batch_size, progress)
    known = {t: f for s in (data.val, data.test_queries) if s is not None and isinstance(s.text_data, TextFeatures)
             for t, f in zip(s.texts, s.text_data.features)}
    extra = np.zeros((split.n_extra, base.shape[1]), dtype=np.float32)
    todo = []
    for i, t in enumerate(split.texts[n_base:]):
        if t in known:
            extra[i] = known[t]
        else:
            todo.append(i)
    if todo:
        extra[todo] = run_text_encoder(model, tokens.take(n_base + np.asarray(todo)), device, batch_size, progress)
    return np.concatenate([base, extra])
