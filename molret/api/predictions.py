"""Submissions from a checkpoint through ``MolRetriever``: the challenge's test set (with its val report), or
queries scored against any molecule library (a full matrix, or each query's best molecules)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molret.api.retriever import MolRetriever
from molret.data.challenge import (default_cache_dir, read_pairs_tsv, read_queries, read_test_inputs,
                                   resolve_data_dir, tokenize)
from molret.data.graph_store import GraphSource, load_graphs
from molret.library.reading import ReaderOptions
from molret.models import text_models
from molret.models.encoding import embed_test, save_embeddings, similarity_matrix
from molret.search.opening import IndexOptions
from molret.utils.errors import MolretError
from molret.utils.files import check_writable_dir

log = logging.getLogger("molret")

FULL_MATRIX_MAX = 1_000_000    # shard folder molecules written as a full score matrix (beyond: top_k)


@dataclass
class PredictionOptions:
    """What predictions.py writes, and how (its flags; None: the checkpoint's setting)."""
    model: str
    out: str = "submission.csv"
    device: object = "auto"                   # "auto", a device name or a torch.device
    data_dir: str | None = None
    cache_dir: str | None = None
    batch_size: int | None = None
    save_embeddings: str | None = None
    rerank: str | None = None
    rerank_temperature: float | None = None
    names: str | None = None
    claims: str | None = None                 # "stored" or "none"; None: stored when the model file has one
    no_pool: bool = False
    progress: bool = True
    library: str | None = None                # library mode: score against a molecule library
    queries: str | None = None
    top_k: int | None = None
    smiles: bool = False
    index: IndexOptions = field(default_factory=IndexOptions)
    reader: ReaderOptions = field(default_factory=ReaderOptions)


def library_ids_path(out) -> Path:
    """The ids file written beside a --library submission: <out stem>_ids.txt."""
    out = Path(out)
    return out.with_name(f"{out.stem}_ids.txt")


def _folder_library(opts, retriever, progress: bool) -> tuple:
    """(ids, embeddings, index, invalid count, SMILES, SMILES decoded from graphs) of a shard folder: with
    --top-k its index (ids in shard order, no embeddings), else the embeddings and ids in library order
    (the CSV of the library file)."""
    from molret.search.opening import check_model_key, open_folder_index
    from molret.library.shard_folder import open_shard_folder
    key = retriever.model_key
    if opts.top_k:
        lib, index = open_folder_index(opts.library, opts.index, progress, key, opts.model)
        return lib.ids, None, index, lib.meta["invalid"], lib.smiles, bool(lib.meta.get("smiles_decoded"))
    lib = open_shard_folder(opts.library)
    check_model_key(lib, key, opts.model)
    if len(lib) > FULL_MATRIX_MAX:
        raise MolretError(f"{opts.library}: {len(lib):,} molecules, too many for a full score matrix (at most "
                          f"{FULL_MATRIX_MAX:,}): write each query's best molecules with --top-k K")
    order = np.argsort(lib.rows, kind="stable")
    return ([lib.ids[int(j)] for j in order], np.asarray(lib.embeddings)[order], None, lib.meta["invalid"], None,
            False)


def _file_library(opts, retriever, batch_size: int, progress: bool) -> tuple:
    """(ids, embeddings, index with --top-k else None, invalid count, SMILES, SMILES decoded from graphs)
    of a library file (cached embeddings)."""
    from molret.search.opening import memory_index
    lib = retriever.embed_library(opts.library, opts.cache_dir, opts.reader, batch_size, progress)
    library = lib.library
    if library.invalid:
        log.warning(f"{opts.library}: {library.invalid} invalid row(s) skipped, e.g. {library.invalid_examples[0]}")
    index = memory_index(lib.embeddings, opts.index, "auto", progress) if opts.top_k else None
    return library.ids, lib.embeddings, index, library.invalid, library.smiles, library.smiles_decoded


def write_top_k(path, scores: np.ndarray, idx: np.ndarray, ids, smiles=None) -> None:
    """CSV rows query,rank,id,score: query = row ID (0-based), rank 1 = best (as ``index.search`` returns them);
    with ``smiles`` (one per molecule, None or "" when unknown) a fifth column, smiles."""
    import csv
    from molret.utils.files import atomic_path
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["query", "rank", "id", "score"] + (["smiles"] if smiles is not None else []))
            for q, (row_s, row_i) in enumerate(zip(scores, idx)):
                hits = [(j, sc) for j, sc in zip(row_i, row_s) if j >= 0]
                if smiles is None:
                    out.writerows([q, r, ids[int(j)], f"{sc:.7g}"] for r, (j, sc) in enumerate(hits, 1))
                else:
                    out.writerows([q, r, ids[int(j)], f"{sc:.7g}", smiles[int(j)] or ""]
                                  for r, (j, sc) in enumerate(hits, 1))


def check_library_options(opts: PredictionOptions) -> bool:
    """Flag checks of --library before the model is loaded; True for a shard folder."""
    from molret.library.reading import library_kind
    from molret.library.shard_folder import is_shard_folder
    if opts.rerank not in (None, "none"):
        raise MolretError("--rerank assumes one molecule per query (the test set); it does not apply to --library")
    if opts.claims not in (None, "none"):
        raise MolretError("--claims applies to the test set (the model file's submission), not to --library")
    if opts.top_k is not None and opts.top_k < 1:
        raise MolretError(f"--top-k must be at least 1, got {opts.top_k}")
    if opts.smiles and not opts.top_k:
        raise MolretError("--smiles adds a column to the --top-k output: give --top-k K")
    if opts.top_k and opts.save_embeddings:
        raise MolretError("--save-embeddings writes the full similarity matrix; it does not go with --top-k")
    opts.index.check()
    folder = is_shard_folder(opts.library)
    if not folder:
        library_kind(opts.library)
    return folder


def predict_library(opts: PredictionOptions) -> dict:
    """Submission of the queries scored against a molecule library (--library): the full matrix, or with
    --top-k the best molecules of each query."""
    from molret.utils.files import atomic_write_text
    from molret.evaluation.submission import write_submission

    folder = check_library_options(opts)
    progress = opts.progress
    retriever = MolRetriever.from_checkpoint(opts.model, opts.device)
    embedder = retriever.embedder
    check_writable_dir(Path(opts.out).resolve().parent)
    if opts.queries:
        queries_path = Path(opts.queries)
    else:
        queries_path = resolve_data_dir(opts.data_dir or embedder.data_dir).need("test_text")
    queries = read_queries(queries_path)
    batch_size = opts.batch_size or embedder.eval_batch_size
    ids, emb, index, invalid, smiles, decoded = (_folder_library(opts, retriever, progress) if folder else
                                                 _file_library(opts, retriever, batch_size, progress))
    # a checkpoint's queries with its own --amp, as main.py embedded them; an ensemble's in float32
    amp = "none" if embedder.ensemble else embedder.members[0].cfg.train.amp
    text_emb = embedder.encode_texts(queries, batch_size, amp, progress=progress)
    result = {"out": opts.out, "queries": len(queries), "molecules": len(ids), "invalid": invalid}
    if opts.top_k:
        write_top_k(opts.out, *index.search(text_emb, opts.top_k), ids, smiles if opts.smiles else None)
        return {**result, "top_k": min(opts.top_k, len(ids)), "smiles": opts.smiles,
                "smiles_decoded": opts.smiles and decoded}
    for ident in ids:
        if "\n" in ident or "\r" in ident:
            raise MolretError(f"library id {ident!r} contains a line break; cannot write the ids file")
    similarity = similarity_matrix(text_emb, emb)
    write_submission(similarity, opts.out)
    ids_path = library_ids_path(opts.out)
    atomic_write_text(ids_path, "".join(f"{i}\n" for i in ids))
    if opts.save_embeddings:
        folder = Path(opts.save_embeddings)
        save_embeddings(folder, "library", text_emb, list(range(len(queries))), emb, ids)
        from molret.utils.files import atomic_np_save
        atomic_np_save(folder / "library_similarity.npy", similarity.astype(np.float32))
    return {**result, "ids_file": str(ids_path)}


def predict(opts: PredictionOptions) -> dict:
    """The submission of ``opts``: the challenge's test set (pool report on val when there is one), or with
    ``opts.library`` the queries scored against that library."""
    if opts.library:
        return predict_library(opts)
    if opts.queries:
        raise MolretError("--queries applies to --library only (the test set uses test_text.txt)")
    if opts.top_k is not None:
        raise MolretError("--top-k applies to --library only (the submission scores every test molecule)")
    if opts.smiles:
        raise MolretError("--smiles applies to --library with --top-k only")
    progress = opts.progress
    retriever = MolRetriever.from_checkpoint(opts.model, opts.device)
    embedder = retriever.embedder
    first = embedder.members[0].cfg
    data_dir = opts.data_dir or first.train.data_dir
    paths = resolve_data_dir(data_dir)
    check_writable_dir(Path(opts.out).resolve().parent)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else (Path(first.train.cache_dir) if first.train.cache_dir and
                                                             not opts.data_dir else default_cache_dir(data_dir))
    cids, queries = read_test_inputs(paths)
    source = GraphSource(paths.need("raw"))
    val = read_pairs_tsv(paths.need("val")) if paths.val is not None and not opts.no_pool else None
    test_parts, val_parts = _embed_challenge(embedder, (cids, queries), val, source, cache_dir, opts.batch_size,
                                             progress)
    text_emb, graph_emb = (embedder.join([p[i] for p in test_parts]) for i in (0, 1))
    similarity = _similarity(embedder, test_parts)
    method, temperature, names_mode, stored_weights = _fusion_settings(embedder, opts)
    scorer = _claims_scorer(retriever, opts.claims)
    if val is not None:
        report, names, weights, claims = _val_report(embedder, paths, cache_dir, val, source, (cids, queries),
                                                     test_parts, val_parts, method, temperature, names_mode,
                                                     stored_weights, scorer)
    else:
        report, (names, weights, claims) = {}, _test_fusion(paths, cache_dir, source, (cids, queries), similarity,
                                                            names_mode, stored_weights, scorer)
    if claims is not None:   # the claims bonus before the names and the re-ranking, as the ensemble fused it
        similarity = similarity + claims
    if method != "none" or weights:
        from molret.evaluation.pool import test_matrix
        similarity = test_matrix(similarity, method, temperature, names, weights, report.get("n_val", 0))
    from molret.evaluation.submission import write_submission
    write_submission(similarity, opts.out)
    if opts.save_embeddings:
        folder = Path(opts.save_embeddings)
        save_embeddings(folder, "test", text_emb, list(range(len(queries))), graph_emb, cids)
        from molret.utils.files import atomic_np_save
        atomic_np_save(folder / "test_similarity.npy", similarity.astype(np.float32))
    return {"out": opts.out, "queries": len(queries), "molecules": len(cids), **({"pool": report} if report else {})}


def query_input(split: str, texts, model, cfg, tokenizer, cache_dir, device, progress: bool = True):
    """What the model embeds for a split's queries, as main.py did: the tokens
    (cached), or with --freeze-text the frozen encoder's cached features."""
    key = f"{text_models.identity(cfg.model.text_model)}-len{cfg.model.max_length}"
    from molret.models.text_bow import attach
    tokens = tokenize(texts, tokenizer, cfg.model.max_length, cache_dir / f"tokens-{split}-{key}.npz")
    if not cfg.train.freeze_text:
        return attach(tokens, texts, model)
    from molret.data.challenge import TextFeatures
    from molret.models.split_inputs import text_features_cached
    return attach(TextFeatures(text_features_cached(
        model, tokens, cache_dir / f"textfeat-{split}-{key}-{cfg.model.text_pooling}.npz", device,
        cfg.train.eval_batch_size, progress=progress)), texts, model)


def _similarity(embedder, parts: list) -> np.ndarray:
    """Queries x molecules of the members' (text, graph) embeddings: a checkpoint's cosines; an ensemble's
    weighted mean of its members' cosine matrices as ``combine`` sums saved members (the joined embeddings'
    dot product is the same to float32 rounding, which Sinkhorn at a low temperature would amplify); a reduced
    model file's, its reduced embeddings' cosines."""
    if not embedder.ensemble:
        return parts[0][0] @ parts[0][1].T
    if embedder.projection is not None:
        return embedder.join([p[0] for p in parts]) @ embedder.join([p[1] for p in parts]).T
    from molret.ranking.ensemble import combine
    return combine([text_emb @ graph_emb.T for text_emb, graph_emb in parts], [m.weight for m in embedder.members])


def _embed_challenge(embedder, test, val, source, cache_dir, batch_size, progress) -> tuple:
    """(test parts, val parts or None): each member's (text, graph) embeddings, as main.py computed them (its
    vocabulary, its cached text inputs, its --amp)."""
    cids, queries = test
    test_parts, val_parts = [], []
    for m in embedder.members:
        size = batch_size or m.cfg.train.eval_batch_size
        graphs = load_graphs("test", cids, source, cache_dir, m.vocab)
        tokens = query_input("test", queries, m.model, m.cfg, m.tokenizer, cache_dir, embedder.device, progress)
        test_parts.append(embed_test(m.model, tokens, graphs, embedder.device, size, m.cfg.train.amp,
                                     progress=progress))
        if val is not None:
            val_parts.append(_val_embeddings(m, val, source, cache_dir, embedder.device, size))
    return test_parts, (val_parts if val is not None else None)


def _val_embeddings(member, val, source, cache_dir, device, batch_size) -> tuple:
    """(text, graph) embeddings of val.tsv by one member, as main.py computed them."""
    from molret.models.encoding import embed_graphs, embed_texts
    val_cids, val_texts = val
    m = member
    val_graphs = load_graphs("val", val_cids, source, cache_dir, m.vocab)
    return (embed_texts(m.model, query_input("val", val_texts, m.model, m.cfg, m.tokenizer, cache_dir, device),
                        device, batch_size, m.cfg.train.amp),
            embed_graphs(m.model, val_graphs, device, batch_size, m.cfg.train.amp))


def _fusion_settings(embedder, opts: PredictionOptions) -> tuple:
    """(re-ranking method, temperature, names mode, stored name weights or None) of ``opts`` and the model: a
    checkpoint's run settings (name weights fitted on val); a model file's, what its submission used."""
    first, fusion = embedder.members[0].cfg, embedder.fusion
    default_rerank = (fusion.rerank, fusion.rerank_temperature) if embedder.ensemble else (
        first.train.rerank, first.train.rerank_temperature)
    method = opts.rerank if opts.rerank is not None else default_rerank[0]
    temperature = opts.rerank_temperature if opts.rerank_temperature is not None else default_rerank[1]
    default_names = ("opsin" if fusion.names_weights else "none") if embedder.ensemble else first.train.names
    names_mode = opts.names if opts.names is not None else default_names
    return method, temperature, names_mode, fusion.names_weights if embedder.ensemble else None


def _test_fusion(paths, cache_dir, source, test, similarity, names_mode, stored_weights, scorer) -> tuple:
    """Without val.tsv (or --no-pool): (name features, the stored name weights, the weighted claims bonus of
    each test query's top-k among the test molecules), each None when not asked."""
    cids, queries = test
    names, weights, claims = None, None, None
    if scorer is not None:
        claims = scorer.weighted_bonus(queries, similarity, _attributes([("test", cids)], source, cache_dir))
    if names_mode != "none" and stored_weights:
        from molret.evaluation.pool import pool_name_features
        names, _ = pool_name_features([], queries, None, load_graphs("test", cids, source, cache_dir),
                                      data_dir=paths.root, cache_dir=cache_dir)
        weights = stored_weights
    elif names_mode != "none":
        raise MolretError("--names fits its weights on val.tsv, which this data folder lacks")
    return names, weights, claims


def _claims_scorer(retriever, choice):
    """The model file's ClaimsScorer when ``choice`` (--claims) asks for it (None: when the file carries one)."""
    on = choice == "stored" if choice is not None else retriever.default_claims
    return retriever.claims_scorer() if on else None


def _attributes(splits, source, cache_dir) -> np.ndarray:
    """The claims attributes of the molecules of ``splits`` ((split, CIDs) pairs, in order)."""
    from molret.ranking.claims.fusion import store_attributes
    return store_attributes([load_graphs(split, c, source, cache_dir) for split, c in splits], cache_dir)


def _val_report(embedder, paths, cache_dir, val, source, test, test_parts, val_parts, method, temperature,
                names_mode, weights=None, scorer=None):
    """Pool metrics on val.tsv (``val``: its CIDs and texts; ``test``: the test CIDs and queries), with the
    claims bonus of ``scorer`` (fused into the square pool, as the ensemble did) and name fusion when asked
    (its weights fitted on val, or ``weights``): (report, name features or None, weights or None, the weighted
    claims bonus of the test block or None)."""
    from molret.evaluation.pool import final_report, pool_name_features
    val_cids, val_texts = val
    names = None
    if names_mode == "opsin":
        val_graphs = load_graphs("val", val_cids, source, cache_dir)
        test_graphs = load_graphs("test", test[0], source, cache_dir)
        names, _ = pool_name_features(val_texts, test[1], val_graphs, test_graphs, data_dir=paths.root,
                                      cache_dir=cache_dir)
    # the square pool: val + test queries x val + test molecules
    square = _similarity(embedder, [(np.concatenate([v[0], t[0]]), np.concatenate([v[1], t[1]]))
                                    for v, t in zip(val_parts, test_parts)])
    claims = None
    if scorer is not None:
        from molret.ranking.claims.fusion import fuse_claims
        bonus = scorer.bonus(list(val_texts) + list(test[1]), square,
                             _attributes([("val", val_cids), ("test", test[0])], source, cache_dir))
        square = fuse_claims(square, bonus, scorer.weight)
        claims = (scorer.weight * bonus[len(val_texts):, len(val_texts):]).astype(np.float32)
    report, weights = final_report(square, len(val_texts), method, temperature, names,
                                   weights=weights if names is not None else None)
    report["n_val"] = len(val_texts)
    if scorer is not None:
        report["claims_weight"] = scorer.weight
    return report, names, weights, claims
