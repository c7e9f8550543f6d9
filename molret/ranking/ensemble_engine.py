"""The ensemble engine: members' similarity matrices weighted (given or fitted on the pool), fused with the names
of the queries, re-ranked, written as a submission, pseudo-labels or one model file (``molret.models.embedder``).

``run_ensemble(EnsembleOptions(...)) -> EnsembleResult`` is what ensemble_method.py and recipe.py run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molret.evaluation.metrics import retrieval_metrics
from molret.ranking.ensemble import (Member, check_aligned, checkpoint_embeddings, combine, member_from_embeddings,
                                     member_from_path, use_final_test_matrices, val_targets)
from molret.ranking.claims.fusion import pool_claims
from molret.ranking.rerank import SINKHORN_ITERS, rerank
from molret.utils.errors import MolretError


@dataclass
class EnsembleOptions:
    """What to ensemble and how (ensemble_method.py's flags)."""
    models: list = field(default_factory=list)       # checkpoints (or model files) to embed
    members: list = field(default_factory=list)      # saved members: embeddings/similarity folders, .npy matrices
    data_dir: str | None = None
    cache_dir: str | None = None
    weights: list | None = None                      # one per member (models first); None: equal
    normalize: str = "none"
    rerank: str = "none"
    rerank_temperature: float = 0.05
    sinkhorn_iters: int = SINKHORN_ITERS
    fit_weights: bool = False
    test_members: list | None = None                 # the final fit: one saved member per member
    groups: list | None = None                       # with fit_weights: one label per member
    names: str = "none"                              # none or opsin
    claims_top_k: int = 0                            # the claims scorer's candidates per query (0: none)
    pseudo_labels: str | None = None
    pseudo_margin: float = 0.5
    unlabelled_by: str | None = None
    out: str | None = None                           # submission CSV
    save_similarity: str | None = None
    save_model: str | None = None                    # the ensemble's model file
    reduce_dim: int = 0                              # with save_model: a PCA reduction to this width (0: exact)
    hubness_temperature: float = 0.0                 # with save_model: the hubness bank's temperature (0: none)
    device: str = "auto"
    json: str | None = None


@dataclass
class EnsembleResult:
    metrics: dict                     # val metrics by member name and "ensemble"; "pool": the pool report
    member_weights: list              # the weights used (given, fitted or equal), one per member
    names_weights: dict | None        # the fitted name-fusion weights, when names were fused
    submission: str | None = None
    model_file: dict | None = None    # {"path", "members", "bytes"} with save_model
    claims: object | None = None      # the fitted ClaimsScorer (molret.ranking.claims.fusion), with claims


def load_members(opts: EnsembleOptions) -> list[Member]:
    members = []
    for ckpt in opts.models:
        emb = checkpoint_embeddings(ckpt, ("val", "test"), data_dir=opts.data_dir, cache_dir=opts.cache_dir,
                                    device=opts.device)
        members.append(member_from_embeddings(str(ckpt), emb))
    members += [member_from_path(p) for p in opts.members]
    seen = {}
    for m in members:  # the same path given twice still gets its own line
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name} (#{seen[m.name]})"
    return members


def ensemble_split(members: list[Member], split: str, opts: EnsembleOptions, do_rerank: bool = True):
    """(combined and re-ranked matrix, row ids, col ids) of ``split``."""
    check_aligned(members, split)
    combined = combine([m.splits[split][0] for m in members], opts.weights, opts.normalize)
    if opts.rerank != "none" and do_rerank:
        combined = rerank(combined, opts.rerank, opts.rerank_temperature, n_iter=opts.sinkhorn_iters)
    _, rows, cols = next((m.splits[split] for m in members if m.splits[split][1] is not None), members[0].splits[split])
    return combined, rows, cols


def pool_data_dir(opts: EnsembleOptions):
    """The pool's data folder (its texts, graphs, and the train.tsv of the names' pairs dictionary):
    data_dir, else the first checkpoint's data folder, else None."""
    if opts.data_dir is not None or not opts.models:
        return opts.data_dir
    from molret.models.embedder import ENSEMBLE_FORMAT
    from molret.models.checkpoint import FORMAT, read_checkpoint
    content = read_checkpoint(opts.models[0], formats=(FORMAT, ENSEMBLE_FORMAT))
    config = content["members"][0]["config"] if content["format"] == ENSEMBLE_FORMAT else content["config"]
    return config["train"]["data_dir"]


def pool_inputs(opts: EnsembleOptions, members: list[Member], n_val: int, n_test: int, what: str):
    """(val_cids, val_texts, val_graphs, test_cids, test_texts, test_graphs) of the pool, checked against the
    members' ids."""
    from molret.evaluation.pool import challenge_pool_inputs
    data_dir = pool_data_dir(opts)
    if data_dir is None:
        raise MolretError(f"{what} needs --data-dir (the queries' texts and the molecules' graphs)")
    inputs = challenge_pool_inputs(data_dir, opts.cache_dir)
    val_cids, test_cids = inputs[0], inputs[3]
    _, rows, cols = members[0].splits["pool"]
    if [str(c) for c in val_cids] != rows[:n_val] or len(test_cids) != n_test or \
            [f"test:{c}" for c in test_cids] != cols[n_val:]:
        raise MolretError(f"{what}: the members' val/test molecules are not those of {data_dir}")
    return inputs


def write_pseudo_labels(opts: EnsembleOptions, square: np.ndarray, cols: list, n_val: int, query_texts: list, names,
                        weights) -> dict:
    """The confident matches of the re-ranked, name-fused square pool, written as training pairs; their count
    and val precision."""
    from molret.utils.files import atomic_write_text
    from molret.ranking.name_fusion import fuse
    from molret.ranking.pseudo_labels import mutual_matches, pairs_tsv, precision
    scores = fuse(square, names, weights) if names is not None and weights else square
    scores = rerank(scores, opts.rerank, opts.rerank_temperature, n_iter=opts.sinkhorn_iters)
    rows, match_cols, _ = mutual_matches(scores, opts.pseudo_margin)
    n_val_pairs, val_precision = precision(rows, match_cols, np.arange(n_val), n_val)
    atomic_write_text(opts.pseudo_labels, pairs_tsv(rows, match_cols, query_texts, cols))
    stats = {"pairs": int(len(rows)), "val_pairs": n_val_pairs, "test_pairs": int(len(rows)) - n_val_pairs,
             "val_precision": round(val_precision, 4), "margin": opts.pseudo_margin, "file": str(opts.pseudo_labels)}
    print(f"pseudo-labels: {stats['pairs']} pairs ({n_val_pairs} val queries, precision {val_precision:.3f}; "
          f"{stats['test_pairs']} test queries) written to {opts.pseudo_labels}")
    return stats


def unlabelled_report(opts: EnsembleOptions, members: list[Member], square: np.ndarray, n_val: int, val_texts, names,
                      weights) -> dict:
    """The pool report of the val queries absent from the unlabelled_by pairs file (same member and name
    weights, the whole square re-ranked)."""
    from molret.data.challenge import read_pairs_tsv
    from molret.evaluation.pool import final_report, format_report, pool_metrics_of
    paired = set(read_pairs_tsv(opts.unlabelled_by)[1])
    rows = np.array([i for i, t in enumerate(val_texts) if t not in paired], dtype=np.int64)
    out = {"queries": int(len(rows)), "of": n_val}
    print(f"  the {len(rows)} of {n_val} val queries not in {opts.unlabelled_by}:")
    if not len(rows):
        return out
    for m in members:
        out.setdefault("members", {})[m.name] = pool_metrics_of(m.splits["pool"][0], n_val, rows)
        print(f"    pool LRAP {out['members'][m.name]['pool_lrap']:.4f}  {m.name}")
    out["ensemble"], _ = final_report(square, n_val, opts.rerank, opts.rerank_temperature, names, rows, weights,
                                      opts.sinkhorn_iters)
    for line in format_report(out["ensemble"]):
        print("    ensemble " + line)
    return out


def check_options(opts: EnsembleOptions) -> int:
    """The member count, after the checks that need no member loaded."""
    n = len(opts.models) + len(opts.members)
    if n == 0:
        raise MolretError("give at least one member (--models and/or --members)")
    if opts.weights is not None and len(opts.weights) != n:
        raise MolretError(f"--weights has {len(opts.weights)} values for {n} members")
    if opts.groups is not None and (len(opts.groups) != n or not opts.fit_weights):
        raise MolretError(f"--groups needs --fit-weights and one label per member ({len(opts.groups)} labels for "
                          f"{n} members)")
    if opts.pseudo_labels and opts.rerank == "none":
        raise MolretError("--pseudo-labels needs --rerank sinkhorn or dual-softmax (its margin is a probability)")
    if not opts.sinkhorn_iters >= 1:
        raise MolretError(f"--sinkhorn-iters must be at least 1, got {opts.sinkhorn_iters}")
    if opts.save_model:
        if opts.normalize != "none":
            raise MolretError("--save-model writes the weighted mean of the members' cosines: it needs "
                              "--normalize none (a row normalisation has no embedding)")
        member_checkpoints(opts)  # every member has a checkpoint, before any work
    if opts.reduce_dim and not opts.save_model:
        raise MolretError("--reduce-dim applies to the model file: give --save-model")
    if opts.reduce_dim and pool_data_dir(opts) is None:
        raise MolretError("--reduce-dim fits its projection on the pool's texts and molecules: give --data-dir")
    if opts.hubness_temperature and not (opts.save_model and pool_data_dir(opts) is not None) \
            or opts.hubness_temperature < 0:
        raise MolretError("--hubness-temperature (>= 0) stores the training texts' embeddings in the model file: "
                          "give --save-model and --data-dir")
    return n


def member_checkpoints(opts: EnsembleOptions) -> list[str]:
    """The checkpoint of each member for the model file (the final fit's where test_members are given): a
    --models entry itself; a saved member's run folder's best.pt (``<run>/embeddings`` -> ``<run>/best.pt``)."""
    def checkpoint_of(path) -> str:
        p = Path(path)
        for candidate in (p.parent / "best.pt", p / "best.pt"):
            if p.is_dir() and candidate.is_file():
                return str(candidate)
        raise MolretError(f"--save-model needs each member's checkpoint: {path} has no best.pt in or beside it "
                          f"(give the checkpoint with --models)")
    if opts.test_members:
        return [checkpoint_of(p) for p in opts.test_members]
    return [str(c) for c in opts.models] + [checkpoint_of(p) for p in opts.members]


def run_ensemble(opts: EnsembleOptions) -> EnsembleResult:
    """Load the members, weight them, report their val and pool metrics, and write what ``opts`` asks for."""
    n = check_options(opts)
    members = load_members(opts)
    if opts.test_members:
        use_final_test_matrices(members, opts.test_members)
    pool_results = {}   # the pool report (see below)
    pool = all("pool" in m.splits for m in members)
    if opts.fit_weights:
        fit_weights(opts, members, pool, pool_results)
    results = val_report(opts, members)   # val metrics by member name and "ensemble"; "pool": the pool report
    names, weights, claims, scorer = pool_report(opts, members, pool, pool_results)
    if pool_results:
        results["pool"] = pool_results
    result = EnsembleResult(results, list(opts.weights) if opts.weights is not None else [1.0 / n] * n,
                            dict(weights) if names is not None and weights else None, claims=scorer)
    write_outputs(opts, members, result, names, weights, pool_results, claims)
    return result


def fit_weights(opts: EnsembleOptions, members: list[Member], pool: bool, pool_results: dict) -> None:
    """--fit-weights: opts.weights fitted on the pool's val rows (per group), with the cross-fitted figure."""
    if not pool:
        raise MolretError("--fit-weights needs members with val and test embeddings (embeddings folders or "
                          "--models)")
    from molret.ranking.ensemble import cross_fitted_lrap, fit_group_weights
    n_val = members[0].n_val
    _, rows, cols = members[0].splits["pool"]
    val_rows = [m.splits["pool"][0][:n_val] for m in members]
    groups, targets = opts.groups or [str(i) for i in range(len(members))], val_targets(rows[:n_val], cols, n_val)
    opts.weights = fit_group_weights(val_rows, groups, targets, opts.normalize)
    pool_results["member_weights"] = opts.weights
    # the weights are fitted and scored on the same val rows: say what they are worth on unseen rows
    pool_results["pool_lrap_cross_fitted"] = cross_fitted_lrap(val_rows, groups, targets, opts.normalize)
    print(f"member weights fitted on the pool: {' '.join(f'{w:g}' for w in opts.weights)} (pool LRAP with "
          f"weights fitted on the other half of the val queries: {pool_results['pool_lrap_cross_fitted']:.4f})")


def val_report(opts: EnsembleOptions, members: list[Member]) -> dict:
    """The val LRAP of each member and of the ensemble (when every member has a val matrix), printed."""
    results = {}
    have_val = [m for m in members if "val" in m.splits]
    if not have_val:
        print("no val matrices among the members: no val LRAP")
        return results
    print(f"val LRAP ({len(have_val[0].splits['val'][0])} queries):")
    for m in have_val:
        s, rows, cols = m.splits["val"]
        results[m.name] = retrieval_metrics(s, val_targets(rows, cols, len(s)))
        print(f"  {results[m.name]['lrap']:.4f}  {m.name}")
    if len(have_val) < len(members):
        print("  (no ensemble val score: some members have no val matrix)")
        return results
    s, rows, cols = ensemble_split(members, "val", opts)
    res = results["ensemble"] = retrieval_metrics(s, val_targets(rows, cols, len(s)))
    label = f"ensemble of {len(members)} (normalize={opts.normalize}, rerank={opts.rerank}" + \
            (f", T={opts.rerank_temperature}" if opts.rerank != "none" else "") + ")"
    print(f"  {res['lrap']:.4f}  {label}  MRR {res['mrr']:.4f}  H@1 {res['hits@1']:.3f}  H@10 {res['hits@10']:.3f}")
    return results


def pool_report(opts: EnsembleOptions, members: list[Member], pool: bool, pool_results: dict) -> tuple:
    """The pool report (claims and names fused and fitted, re-ranked), pseudo-labels and the unlabelled report,
    as asked: (name features or None, fitted name weights or None, the weighted claims bonus or None, the
    fitted ClaimsScorer or None)."""
    names, weights, claims, scorer = None, None, None, None
    # the options that need the pool's texts and graphs (the first one names the error)
    needs_pool = [flag for flag, on in (("--names", opts.names != "none"), ("--claims", opts.claims_top_k),
                                        ("--pseudo-labels", opts.pseudo_labels),
                                        ("--unlabelled-by", opts.unlabelled_by)) if on]
    if not pool:
        if needs_pool:
            raise MolretError(f"{needs_pool[0]} needs members with val and test embeddings (embeddings folders or "
                              "--models)")
        return names, weights, claims, scorer
    from molret.evaluation.pool import final_report, format_report, pool_metrics_of
    check_aligned(members, "pool")
    square, rows, cols = ensemble_split(members, "pool", opts, do_rerank=False)
    n_val = members[0].n_val
    if rows[:n_val] != cols[:n_val]:
        raise MolretError("pool: the val queries and molecules are not in the same order")
    inputs = pool_inputs(opts, members, n_val, len(square) - n_val, needs_pool[0]) if needs_pool else None
    if opts.names != "none":
        from molret.evaluation.pool import pool_name_features
        # the pairs dictionary of the data folder's whole train.tsv, as main.py and predictions.py use
        names, pool_results["names_stats"] = pool_name_features(
            inputs[1], inputs[4], inputs[2], inputs[5], data_dir=pool_data_dir(opts), cache_dir=opts.cache_dir)
    if opts.claims_top_k:   # fused before the names are fitted and before re-ranking (the report without: printed)
        square, claims, pool_results["claims"], scorer = pool_claims(opts, square, n_val, inputs,
                                                                     pool_data_dir(opts), names)
    report, weights = final_report(square, n_val, opts.rerank, opts.rerank_temperature, names,
                                   n_iter=opts.sinkhorn_iters)
    pool_results["ensemble"] = report
    if opts.rerank != "none":
        pool_results["rerank_temperature"] = opts.rerank_temperature
    if opts.pseudo_labels:
        pool_results["pseudo_labels"] = write_pseudo_labels(opts, square, cols, n_val,
                                                            list(inputs[1]) + list(inputs[4]), names, weights)
    print(f"pool: {n_val} val queries among {len(cols)} val + test molecules:")
    for m in members:
        member_pool = pool_results.setdefault("members", {})[m.name] = pool_metrics_of(m.splits["pool"][0], n_val)
        print(f"  pool LRAP {member_pool['pool_lrap']:.4f}  {m.name}")
    print(f"  ensemble of {len(members)}:")
    for line in format_report(report):
        print("    " + line)
    if opts.unlabelled_by:
        pool_results["unlabelled"] = unlabelled_report(opts, members, square, n_val, inputs[1], names, weights)
    return names, weights, claims, scorer


def write_outputs(opts: EnsembleOptions, members: list[Member], result: EnsembleResult, names, weights,
                  pool_results: dict, claims=None) -> None:
    """--save-similarity, --out (the claims bonus of the test block added), --save-model and --json."""
    if opts.save_similarity:
        from molret.utils.files import atomic_np_save, atomic_write_text
        folder = Path(opts.save_similarity)
        for split in ("val", "test"):
            if all(split in m.splits for m in members):
                s, rows, cols = ensemble_split(members, split, opts)
                atomic_np_save(folder / f"{split}_similarity.npy", s.astype(np.float32))
                for what, ids in (("row", rows), ("col", cols)):
                    if ids is not None:
                        atomic_write_text(folder / f"{split}_{what}_ids.txt", "".join(f"{i}\n" for i in ids))
        print(f"ensemble similarity saved in {folder}")
    if opts.out:
        missing = [m.name for m in members if "test" not in m.splits]
        if missing:
            raise MolretError(f"cannot write {opts.out}: member {missing[0]} has no test matrix")
        s, _, _ = ensemble_split(members, "test", opts, do_rerank=False)
        if claims is not None and opts.test_members:
            claims = final_fit_claims(opts, members, result.claims, claims)
        s = _test_matrix(s, opts, names, weights, members[0].n_val, claims)
        from molret.evaluation.submission import write_submission
        write_submission(s, opts.out)
        result.submission = str(opts.out)
        print(f"submission ({s.shape[0]} queries x {s.shape[1]} molecules) written to {opts.out}")
    if opts.save_model:
        result.model_file = save_model_file(opts, result, pool_results)
    if opts.json:
        from molret.utils.files import atomic_write_text
        atomic_write_text(opts.json, json.dumps(result.metrics, indent=2) + "\n")


def final_fit_claims(opts: EnsembleOptions, members: list[Member], scorer, claims: np.ndarray) -> np.ndarray:
    """With test_members: the claims bonus of the final fit's square pool (``final_fit_bonus``); ``claims``, that
    of the first members, when a final fit has no pool."""
    if any(m.final_pool is None for m in members):
        return claims
    from molret.ranking.claims.fusion import final_fit_bonus
    square = combine([m.final_pool[0] for m in members], opts.weights, opts.normalize)
    inputs = pool_inputs(opts, members, members[0].n_val, len(square) - members[0].n_val, "--claims")
    return final_fit_bonus(scorer, square, list(inputs[1]) + list(inputs[4]), (inputs[2], inputs[5]), opts.cache_dir)


def _test_matrix(s: np.ndarray, opts: EnsembleOptions, names, weights, n_val: int, claims=None) -> np.ndarray:
    from molret.evaluation.pool import test_matrix
    s = s if claims is None else s + claims[n_val:, n_val:]   # the claims bonus of the test block
    return test_matrix(s, opts.rerank, opts.rerank_temperature, names, weights, n_val, opts.sinkhorn_iters)


def save_model_file(opts: EnsembleOptions, result: EnsembleResult, pool_results: dict) -> dict:
    """The ensemble's model file: the members' checkpoints (the final fit's with test_members) with the
    weights used, the fitted name weights, the claims scorer and the re-ranking."""
    from molret.models.embedder import Fusion, save_ensemble
    checkpoints = member_checkpoints(opts)
    report = pool_results.get("ensemble", {})
    metrics = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    metrics.update({f"names_{k}": v for k, v in report.get("names", {}).items() if isinstance(v, (int, float))})
    if result.claims is not None:
        metrics["claims_weight"] = result.claims.weight
    fusion = Fusion(result.names_weights, opts.rerank, opts.rerank_temperature, metrics,
                    claims=result.claims.state() if result.claims is not None else None)
    names = [Path(c).parent.name or str(c) for c in checkpoints]
    saved = save_ensemble(opts.save_model, checkpoints, result.member_weights, fusion, names)
    if opts.reduce_dim or opts.hubness_temperature:
        from molret.models.embedder import load_embedder
        from molret.models.encoding import pick_device
        embedder = load_embedder(opts.save_model, pick_device(opts.device))
        if opts.reduce_dim:
            from molret.ranking.projection import fit_reduction
            embedder.projection, stats = fit_reduction(embedder, opts.reduce_dim, pool_data_dir(opts), opts.cache_dir)
            saved.update(stats)
        if opts.hubness_temperature:   # the bank: the training texts, embedded as the file embeds a query
            from molret.data.challenge import read_pairs_tsv, resolve_data_dir
            texts = read_pairs_tsv(resolve_data_dir(pool_data_dir(opts)).need("train"))[1]
            fusion.hubness_bank, fusion.hubness_temperature = embedder.encode_texts(texts), opts.hubness_temperature
            saved["hubness_bank"] = len(texts)
        saved.update(save_ensemble(opts.save_model, checkpoints, result.member_weights, fusion, names,
                                   embedder.projection))
    print(f"model file {opts.save_model}: {saved['members']} members, {saved['bytes'] / 2**20:.1f} MiB")
    return {"path": str(opts.save_model), **saved}
