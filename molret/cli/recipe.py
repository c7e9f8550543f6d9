"""The best CPU recipe in one command (recipe.py): fast chemistry members
trained as the wall-clock budget allows, their ensemble weighted on the pool
metric, the claims scorer and the structures named in the queries fused in,
Sinkhorn re-ranking, the test submission and the model file.

Members are ``main.py`` runs (subprocesses, ``--threads 1``, as many at once
as there are cores, at most 2 here; ``molret.training.member_jobs``) in
``<runs-dir>/<name>/``; each one's run folder is kept, so ``--resume`` skips
finished members and continues an interrupted one from its ``last.pt``. What
they are and in which order the budget buys them is ``molret.cli.recipe_plan``.
The ensemble is the ensemble engine (``molret.ranking.ensemble_engine``) over
their saved embeddings; it writes the submission and
``<runs-dir>/<run-name>/model.pt``, the one model file of the members that
made it (with the claims scorer and the names' weights), which every search
tool loads.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from molret.cli.recipe_plan import (FAST_KINDS, FAST_LIMIT, FAST_MEMBER_MINUTES, FAST_WITH_GNN, FINISH_MINUTES,
                                    GNN_MEMBERS, MEMBER_OVERHEAD_MINUTES, MEMBERS, Plan, plan, fast_jobs)
from molret.training.member_jobs import Job, run_jobs
from molret.utils.errors import MolretError

log = logging.getLogger("molret")

# What every member shares: the offline text encoder, frozen, mean-pooled (its features cached once),
# and (TEXT_BOW below) a learned bag-of-words view of the descriptions.
TEXT = ["--text-pooling", "mean", "--freeze-text"]
COMMON = [*TEXT, "--threads", "1", "--save-embeddings", "--no-write-submission", "--no-progress"]
CLAIMS_TOP_K = 50             # the claims scorer's candidates per query (ensemble_method.py --claims-top-k)
PSEUDO_MARGIN = 0.5            # docs/experiments.md "What moves the pool metric": pseudo-label precision by margin
# the members' bag-of-words text view: buckets, table width, word dropout (docs/experiments.md "What moves the pool metric")
TEXT_BOW, TEXT_BOW_RANK, TEXT_BOW_DROPOUT = 32768, 0, 0.8
# and the character 3..5-grams of its words: they lift every member (docs/experiments.md "Chemistry features member")
TEXT_BOW_CHARS = 5
# Sinkhorn's temperature over the recipe's ensemble: the best of those tried on both seeds
# (docs/experiments.md "The recipe (`recipe.py`), re-planned around the fast members")
RERANK_TEMPERATURE = 0.02
# model.pt's library search: hubness corrected against the training texts (docs/experiments.md "One model")
LIBRARY_HUBNESS_TEMPERATURE = 0.05
LOSS = "hard-infonce"           # docs/experiments.md "Loss of the members with the view": above clip for the MLP member with the view, seeds 1 and 2
def build_parser() -> argparse.ArgumentParser:
    from molret.cli.flags import add_names_arg, ranged
    from molret.ranking.rerank import METHODS as RERANK_METHODS
    from molret.training.losses import LOSSES
    from molret.ranking.pseudo_labels import MARGIN_LIMITS
    from molret.ranking.claims.fusion import TOP_K_LIMITS
    p = argparse.ArgumentParser(prog="recipe.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default="data", help="challenge data folder")
    p.add_argument("--cache-dir", default="", help="cache folder of graphs, tokens and text features (default: "
                                                   "<data-dir>/cache, or ~/.cache/molret if read-only)")
    p.add_argument("--minutes", type=ranged(float, "minutes", (0.0, 24 * 60, True)), default=30.0, help="wall-clock budget for everything")
    p.add_argument("--out", default="submission.csv", help="test submission to write")
    p.add_argument("--run-name", default="recipe", help="folder under --runs-dir holding the members")
    p.add_argument("--runs-dir", default="runs", help="where run folders are written")
    p.add_argument("--members", type=ranged(int, "members", (0, len(MEMBERS), False)), default=GNN_MEMBERS,
                   help=f"graph-network members to train after the fast members, sharing what is left of the budget "
                        f"(0..{len(MEMBERS)}: {', '.join(n for n, _ in MEMBERS)}); with them, {FAST_WITH_GNN} fast "
                        f"members unless --fast-members says otherwise")
    count = ranged(int, "fast_members", (0, FAST_LIMIT, False))
    p.add_argument("--fast-members", type=lambda text: None if text == "auto" else count(text), default="auto",
                   help=f"fast members (an MLP over curated RDKit features of the decoded molecule, ~1 min each; "
                        f"0..{FAST_LIMIT}, or auto: as many as the budget allows, up to {FAST_LIMIT}, each started "
                        f"only when its measured duration still fits)")
    p.add_argument("--no-final-fit", action="store_true",
                   help="skip the final fit: by default each fast member trains a second time on train + val "
                        "(main.py --train-on-val, same epochs and seed) and that copy gives the submission's test "
                        "matrix; weights and names are fitted with the first (more pairs pay: docs/experiments.md "
                        "\"Chemistry features member\")")
    p.add_argument("--seed", type=ranged(int, "seed"), default=0, help="seed of the first member (member i: seed + i)")
    p.add_argument("--text-model", default="minilm", help="the members' frozen text encoder (as main.py's)")
    p.add_argument("--max-epochs", type=ranged(int, "epochs"), default=300, help="epochs at most per member (the budget decides)")
    add_names_arg(p, "auto", "the ensemble's name weights fitted on val", extra={"auto": "as opsin"})
    p.add_argument("--no-claims", action="store_true",
                   help="leave out the claims scorer: by default what each query states (charge, chain lengths, "
                        "counts of groups, units, class words) is checked against its top candidates' decoded "
                        "structures by a ranker trained on the training pairs, fused with a weight fitted on val "
                        "(ensemble_method.py --claims)")
    p.add_argument("--claims-top-k", type=ranged(int, "claims_top_k", (TOP_K_LIMITS[0], TOP_K_LIMITS[1], False)),
                   default=CLAIMS_TOP_K, metavar="K", help="the claims scorer's candidates per query")
    p.add_argument("--rerank", default="sinkhorn", choices=list(RERANK_METHODS),
                   help="re-ranking of the ensemble (the challenge's one-to-one structure)")
    p.add_argument("--rerank-temperature", type=ranged(float, "rerank_temperature", (0.0, 10.0, True)),
                   default=RERANK_TEMPERATURE, help="temperature T of exp(score / T) of the re-ranking "
                                                    "(ensemble_method.py --rerank-temperature)")
    p.add_argument("--rounds", type=int, default=1, choices=[1, 2],
                   help="1: one round of members on train.tsv; 2: a first round of 2 members writes transductive "
                        "pseudo-labels (confident one-to-one matches of val + test queries and molecules), then "
                        "every member trains on train + pseudo-labels (its members gain only on the "
                        "pseudo-labelled queries: docs/experiments.md \"Transductive pseudo-labels with the "
                        "bag-of-words view\")")
    p.add_argument("--pseudo-margin", type=ranged(float, "pseudo_margin", MARGIN_LIMITS), default=PSEUDO_MARGIN,
                   help="probability margin of a pseudo-label over the query's second-best molecule (0..1)")
    p.add_argument("--loss", default=LOSS, choices=list(LOSSES),
                   help="the members' contrastive loss (main.py --loss; why hard-infonce: docs/experiments.md "
                        "\"Loss of the members with the view\")")
    p.add_argument("--text-bow", type=ranged(int, "text_bow"), default=TEXT_BOW,
                   help="the members' bag-of-words text view: hashed TF-IDF buckets (main.py --text-bow; 0: none)")
    p.add_argument("--text-bow-rank", type=ranged(int, "text_bow_rank"), default=TEXT_BOW_RANK,
                   help="width of the bag-of-words table (main.py --text-bow-rank; 0: full)")
    p.add_argument("--text-bow-dropout", type=ranged(float, "text_bow_dropout"), default=TEXT_BOW_DROPOUT,
                   help="word dropout of the bag-of-words view in training (main.py --text-bow-dropout, 0..0.95)")
    p.add_argument("--text-bow-chars", type=ranged(int, "text_bow_chars"), default=TEXT_BOW_CHARS,
                   help="character n-grams (3..N) of the words in the bag-of-words view (main.py --text-bow-chars; "
                        "0: words and word pairs only)")
    p.add_argument("--resume", action="store_true", help="continue: finished members are kept, an interrupted "
                                                          "one continues from its last.pt")
    return p


def member_command(args, runs_dir: Path, name: str, flags: list, seed: int, minutes: float | None,
                   resume: bool) -> list[str]:
    """main.py's command line of one member (``flags`` add its own settings;
    ``minutes`` None: no time budget, its ``flags`` set its epochs)."""
    main_py = str(Path(__file__).resolve().parents[2] / "main.py")
    if resume:
        return [sys.executable, main_py, "--resume", str(runs_dir / name), "--no-progress"]
    cache = ["--cache-dir", args.cache_dir] if args.cache_dir else []
    budget = [] if minutes is None else ["--epochs", str(args.max_epochs), "--time-budget", f"{minutes:.2f}"]
    bow = ["--text-bow", str(args.text_bow), "--text-bow-rank", str(args.text_bow_rank),
           "--text-bow-dropout", str(args.text_bow_dropout), "--text-bow-chars", str(args.text_bow_chars)
           ] if args.text_bow else []
    return [sys.executable, main_py, "--data-dir", args.data_dir, *cache, "--text-model", args.text_model, *COMMON, *bow,
            "--loss", args.loss, *budget, *flags,
            "--seed", str(seed), "--runs-dir", str(runs_dir), "--run-name", name]


def train_members(args, p: Plan, runs_dir: Path, members: list, minutes: float | None,
                  first_seed: int) -> tuple[list[Path], list[str]]:
    """Run ``members`` ((name, flags)), ``p.slots`` at a time, member i with
    seed ``first_seed + i`` and a time budget of ``minutes`` (None: its
    flags' epochs): (their run folders, the names of those already trained)."""
    jobs = [Job(name, flags, first_seed + i, minutes) for i, (name, flags) in enumerate(members)]
    _, kept, _ = run_jobs(jobs, runs_dir, job_command(args, runs_dir), p.slots, args.resume)
    return [runs_dir / name for name, _ in members], kept


def job_command(args, runs_dir: Path):
    """The command line of a job (main.py with the recipe's shared flags), for ``run_jobs``."""
    return lambda job, continues: member_command(args, runs_dir, job.name, job.flags, job.seed, job.minutes, continues)


def train_fast_members(args, p: Plan, runs_dir: Path, deadline: float | None = None) -> tuple[list, list, list, dict]:
    """The fast members and (``p.final_fit``) each again on train + val with the same epochs and seed, as
    ``fast_jobs`` orders them (``deadline``: when the optional ones must be done): (the trained members'
    folders in plan order, the folder of each one's test matrix: its final fit where that trained, else
    itself; the names already trained; the schedule's report)."""
    done, kept, report = run_jobs(fast_jobs(p, args.seed + 100), runs_dir, job_command(args, runs_dir), p.slots,
                                  args.resume, deadline, FAST_MEMBER_MINUTES)
    trained = [name for name, _ in p.fast if name in done]
    if p.final_fit and trained:
        finals = sum(f"{n}-final" in done for n in trained)
        log.info(f"final fit: {finals} of the {len(trained)} fast members trained again on train + val give the "
                 f"submission's test matrices")
    tests = [runs_dir / (f"{n}-final" if f"{n}-final" in done else n) for n in trained]
    return [runs_dir / n for n in trained], tests, kept, report


def prepare_shared_inputs(data_dir: str, text_model: str, cache_dir: str = "", feature_sets=(),
                          final_fit: bool = False) -> None:
    """The members' shared frozen text features and the molecule features of
    each family set in ``feature_sets`` (the decoded structures under them),
    computed once (cached on disk) with every core, before the members start
    (else each would compute them, two at a time); with ``final_fit`` those of
    train + val too (each final-fit member would otherwise decode them: ~2 min
    of its ~3 in the first 10-minute runs)."""
    import torch
    from molret.cli.common import config_from_args, training_parser
    from molret.models.encoders import build_model
    from molret.models.text_models import load_tokenizer
    from molret.models.split_inputs import load_challenge_data, prepare_texts
    from molret.chem.mol_features import attach_features, parse_families
    cache = ["--cache-dir", cache_dir] if cache_dir else []
    for on_val in ([False, True] if final_fit else [False]):
        cfg = config_from_args(training_parser("recipe", "").parse_args(
            ["--data-dir", data_dir, *cache, "--text-model", text_model, *TEXT, *(["--train-on-val"] if on_val else [])]))
        data = load_challenge_data(cfg, need_train=True, need_test=not on_val, progress=False)
        cfg.model.vocab_size, cfg.model.substructure_dim = len(data.vocab), data.vocab.dim
        cfg.model.train_text_layers = 0
        model = build_model(cfg.model, data.vocab.vectors)
        prepare_texts(data, cfg, load_tokenizer(cfg.model.text_model), model, torch.device("cpu"), progress=False)
        for families in dict.fromkeys(feature_sets):
            for split in (data.train, data.val, data.test_graphs):
                if split is not None:
                    attach_features(split.graphs, parse_families(families), cache_dir=data.cache_dir)


def prepare_finish_inputs(data_dir: str, cache_dir: str, names: str, claims: bool) -> None:
    """What the ensemble step reads besides the members, computed and cached before the members start, so
    that the time left for the members is known: the names of the val + test queries resolved (OPSIN, the
    tables) and the claims scorer's inputs (the decoded training, val and test molecules' attributes)."""
    if names == "none" and not claims:
        return
    from molret.evaluation.pool import challenge_pool_inputs, pool_name_features
    _, val_texts, val_graphs, _, test_texts, test_graphs = challenge_pool_inputs(data_dir, cache_dir or None)
    if names != "none":
        pool_name_features(val_texts, test_texts, val_graphs, test_graphs, data_dir=data_dir, cache_dir=cache_dir or None)
    if claims:
        from molret.ranking.claims.fusion import store_attributes, training_claims
        training_claims(data_dir, cache_dir)
        store_attributes((val_graphs, test_graphs), cache_dir)


def member_group(folder: Path) -> str:
    """A member's weight group: its fast-member kind ("feat-nomorgan-2" -> "feat-nomorgan"), else its name."""
    kind = folder.name.rsplit("-", 1)[0]
    return kind if kind in dict(FAST_KINDS) else folder.name


def ensemble(args, folders: list, json_path: Path, pseudo_labels: Path | None = None,
             trained_on: Path | None = None, test_folders: list | None = None,
             model_file: Path | None = None) -> dict:
    """The ensemble engine over the members' embeddings: weights fitted on the pool (one per graph-network
    member, one per fast-member kind), names, re-ranking; the submission and ``model_file`` (the members
    that made it), or the pseudo-labels. ``trained_on``: the pseudo-labels the members trained on (the
    report then also scores the val queries without one). ``test_folders``: the final fit's members (the
    submission's test matrices, the model file's members). Returns the metrics (ensemble_method --json)."""
    from molret.ranking.ensemble_engine import EnsembleOptions, run_ensemble
    opts = EnsembleOptions(
        members=[str(f / "embeddings") for f in folders], fit_weights=True, groups=[member_group(f) for f in folders],
        rerank=args.rerank, rerank_temperature=args.rerank_temperature, names=names_mode(args.names),
        data_dir=args.data_dir, json=str(json_path), cache_dir=args.cache_dir or None,
        claims_top_k=0 if args.no_claims or pseudo_labels is not None else args.claims_top_k)
    if pseudo_labels is not None:
        opts.pseudo_labels, opts.pseudo_margin = str(pseudo_labels), args.pseudo_margin
    else:
        opts.out, opts.save_model = args.out, (str(model_file) if model_file is not None else None)
        opts.hubness_temperature = LIBRARY_HUBNESS_TEMPERATURE if model_file is not None else 0.0
    opts.unlabelled_by = str(trained_on) if trained_on is not None else None
    opts.test_members = [str(f / "embeddings") for f in test_folders] if test_folders is not None else None
    result = run_ensemble(opts)
    return dict(result.metrics, **({"model_file": result.model_file} if result.model_file else {}))


def names_mode(choice: str) -> str:
    if choice != "auto":
        return choice
    from molret.names.opsin import find_opsin_jar
    import shutil
    if not (shutil.which("java") and find_opsin_jar()):
        log.warning("names: no Java runtime or OPSIN (py2opsin) found: names resolved by the chemicals dictionary "
                    "and the training pairs only")
    return "opsin"  # ensemble_method's "names on": every name source available


def first_round(args, p: Plan, runs_dir: Path) -> tuple:
    """--rounds 2: round 1's members, their ensemble's pseudo-labels, and
    round 2's members set to train on them (``p.fast`` too; the
    graph-network members from their round-1 weights): (names already
    trained, pseudo-labels TSV, its pairs, round 1's report, round 2's
    graph-network members)."""
    folders, kept = train_members(args, p, runs_dir, [(f"{n}-r1", f) for n, f in p.first_round],
                                  p.member_minutes, args.seed)
    pseudo = runs_dir / "pseudo_labels.tsv"
    log.info("round 1 done: its ensemble writes the pseudo-labels")
    first = ensemble(args, folders, runs_dir / "round1.json", pseudo_labels=pseudo)
    n_pseudo = first["pool"]["pseudo_labels"]["pairs"]
    if not n_pseudo:
        log.warning("round 1 found no confident pseudo-label: round 2 trains on train.tsv alone")
    extra = ["--extra-pairs", str(pseudo)] if n_pseudo else []
    p.fast = [(name, [*flags, *extra]) for name, flags in p.fast]
    second = []
    for name, flags in p.members:
        start_from = runs_dir / f"{name}-r1" / "best.pt"
        second.append((name, [*flags, *extra, *(["--init-from", str(start_from)] if start_from.exists() else [])]))
    log.info(f"round 2: {len(p.fast) + len(second)} members on train + {n_pseudo} pseudo-labels")
    return kept, pseudo, n_pseudo, first, second


def announce(args, p: Plan) -> None:
    """One log line of what the recipe will train (two with --rounds 2)."""
    if p.first_round:
        log.info(f"recipe round 1: {len(p.first_round)} members ({', '.join(n for n, _ in p.first_round)}); their "
                 f"ensemble, names and {args.rerank} write the pseudo-labels")
    how_many = f"up to {len(p.fast)} fast members as the budget allows" if p.auto else f"{len(p.fast)} fast members"
    gnn = ", ".join(n for n, _ in p.members)
    then_gnn = f", then {len(p.members)} graph-network members ({gnn}), {p.member_minutes:.1f} min of training " \
               f"each" if p.members else ""
    log.info(f"recipe{' round 2' if p.first_round else ''}: {how_many}{' and their final fit' if p.final_fit else ''}"
             f"{then_gnn}, {p.slots} at a time; then ensemble, {'' if args.no_claims else 'claims, '}names, "
             f"{args.rerank}")


def run(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    runs_dir = Path(args.runs_dir) / args.run_name
    from molret.utils.files import check_writable_dir
    check_writable_dir(runs_dir)
    from molret.data.challenge import resolve_data_dir
    paths = resolve_data_dir(args.data_dir)
    for what in ("embeddings", "raw", "train", "val", "test_cids", "test_text"):
        paths.need(what)
    if args.rounds == 2 and args.rerank == "none":
        raise MolretError("--rounds 2 needs --rerank sinkhorn or dual-softmax (pseudo-labels are re-ranked matches)")
    from molret.data.challenge import default_cache_dir
    args.cache_dir = args.cache_dir or str(default_cache_dir(args.data_dir))  # one folder for every step's caches
    cores = os.cpu_count() or 1
    final_fit = not args.no_final_fit
    p = plan(args.minutes, cores, args.members, args.rounds, args.fast_members, final_fit)  # fails before any work
    feature_sets = [flags[flags.index("--mol-features") + 1] if "--mol-features" in flags else "default"
                    for _, flags in p.fast + p.members]
    prepare_shared_inputs(args.data_dir, args.text_model, args.cache_dir, feature_sets, final_fit and bool(p.fast))
    prepare_finish_inputs(args.data_dir, args.cache_dir, names_mode(args.names), not args.no_claims)
    prepared = time.perf_counter() - start
    log.info(f"text and molecule features, names and claims inputs ready ({prepared:.0f} s)")
    if p.members:   # their time budgets: what the preparation left (the fast members' deadline counts it itself)
        p = plan(args.minutes - prepared / 60, cores, args.members, args.rounds, args.fast_members, final_fit)
    announce(args, p)
    kept, pseudo, n_pseudo, first, second = [], None, 0, None, p.members
    if p.first_round:
        kept, pseudo, n_pseudo, first, second = first_round(args, p, runs_dir)
    # the optional fast members must end by this time (the graph-network members, if any, take the rest)
    deadline = start + 60 * (args.minutes - FINISH_MINUTES) if p.auto else None
    fast_folders, test_folders, kept2, schedule = train_fast_members(args, p, runs_dir, deadline)
    if second:
        # the graph-network members get what is left of the budget (the plan's share, or more if the rest ran short)
        left = args.minutes - (time.perf_counter() - start) / 60
        p.member_minutes = max(1.0, (left - FINISH_MINUTES) / -(-len(second) // p.slots) - MEMBER_OVERHEAD_MINUTES)
        log.info(f"{len(second)} graph-network members, {p.member_minutes:.1f} min of training each")
    folders, kept3 = train_members(args, p, runs_dir, second, p.member_minutes, args.seed)
    results = ensemble(args, fast_folders + folders, runs_dir / "ensemble.json",
                       trained_on=pseudo if n_pseudo else None,
                       test_folders=(test_folders + folders) if final_fit and fast_folders else None,
                       model_file=runs_dir / "model.pt")
    kept += kept2 + kept3
    if p.first_round:
        results["round1"] = first
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["prepare_seconds"] = round(prepared, 1)
    results["members_kept"] = kept
    results["fast_members"] = {"trained": [f.name for f in fast_folders], "test_matrices": [f.name for f in test_folders],
                               **schedule}
    from molret.utils.files import atomic_write_text
    atomic_write_text(runs_dir / "recipe.json", json.dumps(results, indent=2) + "\n")
    print(f"recipe: {results['wall_seconds']:.0f} s wall; submission {args.out}; model {runs_dir / 'model.pt'} (search.py, "
          f"serve.py, predictions.py --model); details {runs_dir / 'recipe.json'}")
    return results
