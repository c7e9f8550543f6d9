"""Library search quality: the val queries searched among all molecules of a
library (by default every one of the 102,980 challenge molecules), with and
without the hubness correction, the name fusion and (--claims) a model file's claims scorer.

    python bench/library_eval.py --model runs/<name>/best.pt --cache-dir /tmp/libcache

Prints, per setting, MRR, top-1 / top-10 / top-100 (share of queries whose
true molecule is ranked there) and the median rank, ties counted against the
true molecule (as LRAP does). A measurement, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "altegrad"


def ranks_in_library(engine, queries, q_emb, true_rows, chunk: int = 25) -> np.ndarray:
    out = []
    for i in range(0, len(queries), chunk):
        s = engine.fused_scores(queries[i:i + chunk], q_emb[i:i + chunk])
        t = s[np.arange(len(s)), true_rows[i:i + chunk]]
        out.append((s >= t[:, None]).sum(axis=1))
    return np.concatenate(out)


def summary(ranks: np.ndarray) -> dict:
    return {"mrr": float(np.mean(1 / ranks)), "top1": float(np.mean(ranks <= 1)), "top10": float(np.mean(ranks <= 10)),
            "top100": float(np.mean(ranks <= 100)), "median_rank": float(np.median(ranks))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--library", default=str(DATA / "raw.zip"))
    p.add_argument("--val", default=str(DATA / "val.tsv"), help="cid<TAB>text queries with their true molecule")
    p.add_argument("--bank", default=str(DATA / "train.tsv"), help="hubness bank (cid<TAB>text)")
    p.add_argument("--cache-dir")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--settings", nargs="+", default=["plain", "hubness", "names", "hubness+names"],
                   help="plain, hubness, names, hubness+names, or model: what search.py does by default with "
                        "--model (a model file's names and hubness bank)")
    p.add_argument("--temperatures", nargs="+", type=float, default=[0.05],
                   help="hubness temperatures to try (each one a row)")
    p.add_argument("--claims", choices=["none", "stored", "both"], default="none",
                   help="the model file's claims scorer: off, on in every setting, or each setting both ways "
                        "(a row '+claims' beside the row without)")
    p.add_argument("--time-queries", type=int, default=0, metavar="N",
                   help="also time engine.search (k=10) of the first N queries one at a time, per setting")
    p.add_argument("--json", help="write the table as JSON")
    p.add_argument("--default-names-weights", action="store_true",
                   help="names with the fitted defaults even when the model file carries its own weights")
    args = p.parse_args(argv)

    import torch
    from molret.models.embedder import load_embedder
    from molret.data.challenge import read_pairs_tsv
    from molret.search import engine as S
    from molret.library.caches import library_embeddings
    from molret.cli.search import read_bank
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    embedder = load_embedder(args.model, device)   # a checkpoint or an ensemble's model file
    lib = library_embeddings(args.library, embedder, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                             progress=True)
    engine = S.LibrarySearch(embedder, lib)
    cids, queries = read_pairs_tsv(args.val)
    true_rows = np.array([engine.position(c) for c in cids])
    q_emb = engine.encode(queries)
    bank = read_bank(args.bank)
    table = {}
    scorer = None
    if args.claims != "none":
        from molret.api.retriever import MolRetriever
        scorer = MolRetriever(embedder).claims_scorer()
    claims_modes = {"none": [False], "stored": [True], "both": [False, True]}[args.claims]
    for setting, temp, claims in [(s, t, c) for s in args.settings
                                  for t in (args.temperatures if "hubness" in s else [None]) for c in claims_modes]:
        engine.names, engine.hub_offsets, engine.claims = None, None, None
        t0 = time.perf_counter()
        if claims:
            engine.enable_claims(scorer)
        if setting == "model":
            fusion = embedder.fusion
            if fusion.hubness_bank is not None:
                engine.enable_hubness_embeddings(fusion.hubness_bank, fusion.hubness_temperature)
            if fusion.names_weights:
                engine.enable_names(fusion.names_weights, cache_dir=args.cache_dir)
        if "hubness" in setting:
            engine.enable_hubness(bank, temp)
        names_weights = embedder.fusion.names_weights if not args.default_names_weights else None
        if "names" in setting and not engine.enable_names(names_weights, cache_dir=args.cache_dir):
            print(f"{setting}: no name source (OPSIN, chemicals, training pairs), skipped")
            continue
        ranks = ranks_in_library(engine, queries, q_emb, true_rows)
        name = setting + (f" T={temp:g}" if temp is not None else "") + ("+claims" if claims else "")
        table[name] = dict(summary(ranks), seconds=round(time.perf_counter() - t0, 1))
        r = table[name]
        if args.time_queries:
            t1 = time.perf_counter()
            for i in range(min(args.time_queries, len(queries))):
                engine.search(queries[i:i + 1], 10, query_emb=q_emb[i:i + 1])
            r["ms_per_query"] = round((time.perf_counter() - t1) * 1e3 / min(args.time_queries, len(queries)), 1)
        timed = f", search {r['ms_per_query']:.0f} ms/query" if args.time_queries else ""
        print(f"{name:<24} MRR {r['mrr']:.4f}  top-1 {r['top1']:.3f}  top-10 {r['top10']:.3f}  "
              f"top-100 {r['top100']:.3f}  median rank {r['median_rank']:.0f}  ({r['seconds']:.0f} s{timed})",
              flush=True)
    print(f"{len(queries)} val queries among {len(engine):,} library molecules")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
