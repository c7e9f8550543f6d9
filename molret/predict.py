"""Submission (and embeddings) from a checkpoint alone: predictions.py."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from .checkpoint import load_model
from .data import (GraphSource, default_cache_dir, load_graphs, read_queries, read_test_inputs, resolve_data_dir,
                   tokenize)
from .errors import MolretError
from .rerank import METHODS as RERANK_METHODS
from .io_utils import check_writable_dir
from .cli import add_inference_args, inference_device
from .inference import embed_test, save_embeddings, similarity_matrix
from . import text_models

log = logging.getLogger("molret")

FULL_MATRIX_MAX = 1_000_000    # shard folder molecules written as a full score matrix (beyond: --top-k)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predictions.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Write the Kaggle submission of a trained checkpoint: row i = query i of "
                                            "test_text.txt scored against the molecules of test_cids.txt.")
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint written by main.py (best.pt/last.pt)")
    p.add_argument("--data-dir", help="challenge data folder (default: the one the model was trained on)")
    p.add_argument("--out", default="submission.csv", help="submission CSV to write")
    p.add_argument("--save-embeddings", metavar="DIR",
                   help="also save test text/graph embeddings (.npy + ids) and the similarity matrix in DIR")
    p.add_argument("--rerank", choices=list(RERANK_METHODS),
                   help="rescale the similarity using the one-query-one-molecule structure of the test set "
                        "(default: the checkpoint's training setting, so the run's submission.csv is reproduced)")
    p.add_argument("--rerank-temperature", type=float,
                   help="temperature of --rerank (default: the checkpoint's, else 0.05)")
    p.add_argument("--names", choices=["none", "opsin"],
                   help="opsin: fuse the structures named in the queries (OPSIN when Java is there, the chemicals synonyms table, the training pairs) with the learned "
                        "scores, weights fitted on val.tsv (default: the checkpoint's training setting)")
    p.add_argument("--no-pool", action="store_true",
                   help="skip the val report (pool metrics: val queries among val + test molecules)")
    add_inference_args(p, batch_help="embedding batch size (default: the training eval batch size)")
    p.add_argument("--cache-dir", help="cache folder for parsed graphs and tokens (with --library: for the "
                                       "library's graph embeddings, next to the library when not given)")
    g = p.add_argument_group("library mode (score the queries against any molecule library)")
    g.add_argument("--library", metavar="FILE",
                   help="score against this SMILES library (.smi/.csv/.tsv/.sdf), graph library (raw.zip, "
                        "folder) or shard folder of embed_library.py (up to "
                        f"{FULL_MATRIX_MAX:,} molecules without --top-k) instead of test_cids.txt: columns in "
                        "library order (invalid rows skipped), their ids written to <out stem>_ids.txt (line i+1 = "
                        "column i)")
    g.add_argument("--queries", metavar="FILE",
                   help="with --library: queries, one per line, row ID i = line i+1; test_text.txt of the data "
                        "folder when not given")
    g.add_argument("--top-k", type=int, metavar="K",
                   help="with --library: write only the K best molecules of each query, as rows query,rank,id,score "
                        "(query = row ID, rank 1 = best), from --index: for libraries too large for a full matrix")
    g.add_argument("--smiles", action="store_true",
                   help="with --top-k: add a smiles column (a graph library's SMILES are decoded from its graphs: "
                        "exact, but without stereochemistry, which the graphs do not carry; empty where a graph "
                        "could not be decoded)")
    from .shard_cli import add_index_args
    add_index_args(g, rerank_flag="--index-rerank")
    from .search import add_library_args
    add_library_args(p)
    return p


def library_ids_path(out) -> Path:
    """The ids file written beside a --library submission: <out stem>_ids.txt."""
    out = Path(out)
    return out.with_name(f"{out.stem}_ids.txt")


def _folder_library(args, model, cfg, vocab, progress: bool) -> tuple:
    """(ids, embeddings, index, invalid count, SMILES, SMILES decoded from graphs) of a shard folder: with
    --top-k its index (ids in shard order, no embeddings), else the embeddings and ids in library order
    (the CSV of the library file)."""
    from .library_cache import model_key
    from .shard_cli import check_model_key, open_folder_index
    from .shard_folder import open_shard_folder
    key = model_key(model, cfg, vocab)
    if args.top_k:
        lib, index = open_folder_index(args.library, args, progress, key, args.model)
        return lib.ids, None, index, lib.meta["invalid"], lib.smiles, bool(lib.meta.get("smiles_decoded"))
    lib = open_shard_folder(args.library)
    check_model_key(lib, key, args.model)
    if len(lib) > FULL_MATRIX_MAX:
        raise MolretError(f"{args.library}: {len(lib):,} molecules, too many for a full score matrix (at most "
                          f"{FULL_MATRIX_MAX:,}): write each query's best molecules with --top-k K")
    order = np.argsort(lib.rows, kind="stable")
    return ([lib.ids[int(j)] for j in order], np.asarray(lib.embeddings)[order], None, lib.meta["invalid"], None,
            False)


def _file_library(args, model, cfg, vocab, device, batch_size: int, progress: bool) -> tuple:
    """(ids, embeddings, index with --top-k else None, invalid count, SMILES, SMILES decoded from graphs)
    of a library file (cached embeddings)."""
    from .search import library_embeddings, reader_options
    from .shard_cli import memory_index
    lib = library_embeddings(args.library, model, cfg, vocab, device=device, options=reader_options(args),
                             cache_dir=args.cache_dir, batch_size=batch_size, progress=progress)
    library = lib.library
    if library.invalid:
        log.warning(f"{args.library}: {library.invalid} invalid row(s) skipped, e.g. {library.invalid_examples[0]}")
    index = memory_index(lib.embeddings, args, "auto", progress) if args.top_k else None
    return library.ids, lib.embeddings, index, library.invalid, library.smiles, library.smiles_decoded


def write_top_k(path, scores: np.ndarray, idx: np.ndarray, ids, smiles=None) -> None:
    """CSV rows query,rank,id,score: query = row ID (0-based), rank 1 = best (as ``index.search`` returns them);
    with ``smiles`` (one per molecule, None or "" when unknown) a fifth column, smiles."""
    import csv
    from .io_utils import atomic_path
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


def _check_library_args(args) -> bool:
    """Flag checks of --library before the model is loaded; True for a shard folder."""
    from .library import library_kind
    from .shard_cli import check_index_args
    from .shard_folder import is_shard_folder
    if args.rerank not in (None, "none"):
        raise MolretError("--rerank assumes one molecule per query (the test set); it does not apply to --library")
    if args.top_k is not None and args.top_k < 1:
        raise MolretError(f"--top-k must be at least 1, got {args.top_k}")
    if getattr(args, "smiles", False) and not args.top_k:
        raise MolretError("--smiles adds a column to the --top-k output: give --top-k K")
    if args.top_k and args.save_embeddings:
        raise MolretError("--save-embeddings writes the full similarity matrix; it does not go with --top-k")
    check_index_args(args)
    folder = is_shard_folder(args.library)
    if not folder:
        library_kind(args.library)
    return folder


def predict_library(args) -> dict:
    """Submission of the queries scored against a molecule library (--library): the full matrix, or with
    --top-k the best molecules of each query."""
    from .io_utils import atomic_write_text
    from .submission import write_submission
    from .inference import embed_texts

    folder = _check_library_args(args)
    device = inference_device(args)
    progress = not getattr(args, "no_progress", False)
    model, cfg, vocab, tokenizer = load_model(args.model, device)
    check_writable_dir(Path(args.out).resolve().parent)
    if args.queries:
        queries_path = Path(args.queries)
    else:
        queries_path = resolve_data_dir(args.data_dir or cfg.train.data_dir).need("test_text")
    queries = read_queries(queries_path)
    batch_size = args.batch_size or cfg.train.eval_batch_size
    ids, emb, index, invalid, smiles, decoded = (_folder_library(args, model, cfg, vocab, progress) if folder else
                                                 _file_library(args, model, cfg, vocab, device, batch_size, progress))
    from .text_bow import attach
    tokens = attach(tokenize(queries, tokenizer, cfg.model.max_length), queries, model)
    text_emb = embed_texts(model, tokens, device, batch_size, cfg.train.amp, progress=progress)
    result = {"out": args.out, "queries": len(queries), "molecules": len(ids), "invalid": invalid}
    if args.top_k:
        with_smiles = getattr(args, "smiles", False)
        write_top_k(args.out, *index.search(text_emb, args.top_k), ids, smiles if with_smiles else None)
        return {**result, "top_k": min(args.top_k, len(ids)), "smiles": with_smiles,
                "smiles_decoded": with_smiles and decoded}
    for ident in ids:
        if "\n" in ident or "\r" in ident:
            raise MolretError(f"library id {ident!r} contains a line break; cannot write the ids file")
    similarity = similarity_matrix(text_emb, emb)
    write_submission(similarity, args.out)
    ids_path = library_ids_path(args.out)
    atomic_write_text(ids_path, "".join(f"{i}\n" for i in ids))
    if args.save_embeddings:
        folder = Path(args.save_embeddings)
        save_embeddings(folder, "library", text_emb, list(range(len(queries))), emb, ids)
        from .io_utils import atomic_np_save
        atomic_np_save(folder / "library_similarity.npy", similarity.astype(np.float32))
    return {**result, "ids_file": str(ids_path)}


def predict(args) -> dict:
    if getattr(args, "library", None):
        return predict_library(args)
    if getattr(args, "queries", None):
        raise MolretError("--queries applies to --library only (the test set uses test_text.txt)")
    if getattr(args, "top_k", None) is not None:
        raise MolretError("--top-k applies to --library only (the submission scores every test molecule)")
    if getattr(args, "smiles", False):
        raise MolretError("--smiles applies to --library with --top-k only")
    device = inference_device(args)
    progress = not getattr(args, "no_progress", False)
    model, cfg, vocab, tokenizer = load_model(args.model, device)
    data_dir = args.data_dir or cfg.train.data_dir
    paths = resolve_data_dir(data_dir)
    check_writable_dir(Path(args.out).resolve().parent)
    cache_dir = Path(args.cache_dir) if args.cache_dir else (Path(cfg.train.cache_dir) if cfg.train.cache_dir and
                                                             not args.data_dir else default_cache_dir(data_dir))
    cids, queries = read_test_inputs(paths)
    graphs = load_graphs("test", cids, GraphSource(paths.need("raw")), cache_dir, vocab)
    tokens = query_input("test", queries, model, cfg, tokenizer, cache_dir, device, progress)
    batch_size = args.batch_size or cfg.train.eval_batch_size
    text_emb, graph_emb = embed_test(model, tokens, graphs, device, batch_size, cfg.train.amp, progress=progress)
    similarity = similarity_matrix(text_emb, graph_emb)
    method = args.rerank if args.rerank is not None else cfg.train.rerank
    temperature = args.rerank_temperature if args.rerank_temperature is not None else cfg.train.rerank_temperature
    names_mode = args.names if args.names is not None else cfg.train.names
    report, names, weights = {}, None, None
    if paths.val is not None and not getattr(args, "no_pool", False):
        report, names, weights = _val_report(model, cfg, tokenizer, vocab, paths, cache_dir, device, batch_size,
                                             (queries, text_emb, graphs, graph_emb), method, temperature, names_mode)
    elif names_mode != "none":
        raise MolretError("--names fits its weights on val.tsv, which this data folder lacks")
    if method != "none" or weights:
        from .evaluation import test_matrix
        similarity = test_matrix(similarity, method, temperature, names, weights, report.get("n_val", 0))
    from .submission import write_submission
    write_submission(similarity, args.out)
    if args.save_embeddings:
        folder = Path(args.save_embeddings)
        save_embeddings(folder, "test", text_emb, list(range(len(queries))), graph_emb, cids)
        from .io_utils import atomic_np_save
        atomic_np_save(folder / "test_similarity.npy", similarity.astype(np.float32))
    return {"out": args.out, "queries": len(queries), "molecules": len(cids), **({"pool": report} if report else {})}


def query_input(split: str, texts, model, cfg, tokenizer, cache_dir, device, progress: bool = True):
    """What the model embeds for a split's queries, as main.py did: the tokens
    (cached), or with --freeze-text the frozen encoder's cached features."""
    key = f"{text_models.identity(cfg.model.text_model)}-len{cfg.model.max_length}"
    from .text_bow import attach
    tokens = tokenize(texts, tokenizer, cfg.model.max_length, cache_dir / f"tokens-{split}-{key}.npz")
    if not cfg.train.freeze_text:
        return attach(tokens, texts, model)
    from .data import TextFeatures
    from .challenge_data import text_features_cached
    return attach(TextFeatures(text_features_cached(
        model, tokens, cache_dir / f"textfeat-{split}-{key}-{cfg.model.text_pooling}.npz", device,
        cfg.train.eval_batch_size, progress=progress)), texts, model)


def _val_report(model, cfg, tokenizer, vocab, paths, cache_dir, device, batch_size, test, method, temperature,
                names_mode):
    """Pool metrics of the checkpoint on val.tsv, with name fusion when
    asked: (report, name features or None, weights or None)."""
    from .data import read_pairs_tsv
    from .evaluation import final_report, pool_name_features, pool_similarity
    from .inference import embed_graphs, embed_texts
    queries, text_emb, test_graphs, graph_emb = test
    val_cids, val_texts = read_pairs_tsv(paths.need("val"))
    val_graphs = load_graphs("val", val_cids, GraphSource(paths.need("raw")), cache_dir, vocab)
    val_text = embed_texts(model, query_input("val", val_texts, model, cfg, tokenizer, cache_dir, device), device,
                           batch_size, cfg.train.amp)
    val_graph = embed_graphs(model, val_graphs, device, batch_size, cfg.train.amp)
    names = None
    if names_mode == "opsin":
        names, _ = pool_name_features(val_texts, queries, val_graphs, test_graphs, data_dir=paths.root,
                                      cache_dir=cache_dir)
    report, weights = final_report(pool_similarity(val_text, val_graph, text_emb, graph_emb), len(val_text), method,
                                   temperature, names)
    report["n_val"] = len(val_text)
    return report, names, weights
