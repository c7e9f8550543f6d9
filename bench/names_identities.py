"""Exact identities the names of the val queries give, per name source and per
kind of structure form: how many val queries' true molecule has a graph key
among the identity keys (subject, enantiomers) or among the form keys (other
charge states and tautomers, forms of cited conjugate acids/bases) of their
names. Candidates: the pool (val + test molecules). No model needed.

    python bench/names_identities.py [--data-dir D] [--cache-dir C] [--json out.json]

A measurement, not a test. OPSIN needs Java; the chemicals source needs the
``chemicals`` package; the pairs source reads train.tsv and its graphs.
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


def count(structures, candidates, targets, label: str) -> dict:
    from molret.ranking.name_fusion import name_features, name_stats
    stats = name_stats(structures, candidates, targets)
    feats = name_features(structures, candidates)
    # the form feature of the true molecule is 1 and no other candidate of the query gets 1
    row_of = {int(r): k for k, r in enumerate(feats.rows)}
    form_unique = 0
    for q, t in enumerate(targets):
        k = row_of.get(q)
        if k is not None and feats.values[3, k, t] == 1.0 and (feats.values[3, k] == 1.0).sum() == 1:
            form_unique += 1
    either = sum(bool(s.identity_keys | s.form_keys) and candidates.keys[int(t)] in (s.identity_keys | s.form_keys)
                 for s, t in zip(structures, targets))
    out = {"label": label, **stats, "form_true_only_1": form_unique, "identity_or_form": int(either),
           "forms_per_query": round(float(np.mean([len(s.form_keys) for s in structures])), 2)}
    print(f"{label:<48} resolved {stats['subject_resolved']:>4}  exact {stats['exact_true_graph']:>4}  "
          f"form {stats['form_true_graph']:>4} (sole 1: {form_unique:>3})  either {either:>4}  "
          f"cited {stats['cited_resolved']}  forms {stats['form_true_by_kind']}  "
          f"by source {stats['subject_by_source']}", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--cache-dir")
    p.add_argument("--json")
    p.add_argument("--quick", action="store_true", help="only the before / after rows")
    args = p.parse_args(argv)
    from molret.names import variants as name_variants
    from molret.evaluation.pool import challenge_pool_inputs
    from molret.ranking.name_fusion import Candidates
    from molret.names.sources import OpsinSource, pairs_dictionary_from_dir, shared_chemicals
    from molret.names.resolve import resolve_queries
    from molret.names.opsin import Opsin
    val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs = challenge_pool_inputs(args.data_dir,
                                                                                                args.cache_dir)
    candidates = Candidates.from_stores([val_graphs, test_graphs])
    targets = np.arange(len(val_texts))
    opsin = OpsinSource(Opsin())
    t = time.perf_counter()
    pairs = pairs_dictionary_from_dir(args.data_dir, args.cache_dir)
    print(f"pairs dictionary: {len(pairs)} names ({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    chemicals = shared_chemicals()
    print(f"chemicals dictionary: {len(chemicals)} names ({time.perf_counter() - t:.1f} s)")
    rows = []
    configs = [("before: opsin, no forms", [opsin], "none", "rdkit")]
    if not args.quick:
        configs += [("opsin + charge forms (rdkit)", [opsin], "charge", "rdkit"),
                    ("opsin + charge forms (dimorphite)", [opsin], "charge", "dimorphite"),
                    ("opsin + charge forms (both)", [opsin], "charge", "both"),
                    ("opsin + tautomer forms", [opsin], "tautomer", "rdkit"),
                    ("opsin + all forms (rdkit)", [opsin], "all", "rdkit"),
                    ("pairs alone", [pairs], "none", "rdkit"),
                    ("chemicals alone", [chemicals], "none", "rdkit"),
                    ("pairs + opsin (pairs first), no forms", [pairs, opsin], "none", "rdkit"),
                    ("opsin + pairs, no forms", [opsin, pairs], "none", "rdkit"),
                    ("pairs + opsin + chemicals (pairs first), all forms", [pairs, opsin, chemicals], "all",
                     "rdkit"),
                    ("opsin + chemicals, no forms", [opsin, chemicals], "none", "rdkit"),
                    ("chemicals + opsin (other order), no forms", [chemicals, opsin], "none", "rdkit")]
    configs += [("after: opsin + chemicals + pairs, all forms", [opsin, chemicals, pairs], "all", "rdkit")]
    for label, sources, forms, protonation in configs:
        name_variants.PROTONATION = protonation
        t = time.perf_counter()
        structures = resolve_queries(val_texts, None, sources=[s for s in sources if s is not None], forms=forms,
                                     candidate_keys=candidates.keys)
        row = count(structures, candidates, targets, label)
        row["seconds"] = round(time.perf_counter() - t, 1)
        rows.append(row)
    name_variants.PROTONATION = "rdkit"
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
