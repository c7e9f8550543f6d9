"""The best CPU recipe in one command (recipe.py): many fast chemistry
members and a few graph-network members trained within a wall-clock budget,
their ensemble weighted on the pool metric, the structures named in the
queries fused in, Sinkhorn re-ranking, and the test submission.

Members are ``main.py`` runs (subprocesses, ``--threads 1``, as many at once
as there are cores, at most 2 here) in ``<runs-dir>/<name>/``; each one's
run folder is kept, so ``--resume`` skips finished members and continues an
interrupted one from its ``last.pt``. The ensemble is the ensemble engine
(``molret.ranking.ensemble_engine``) over their saved embeddings; it writes the
submission and ``<runs-dir>/<run-name>/model.pt``, the one model file of the
members that made it, which every search tool loads.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from molret.utils.errors import MolretError

log = logging.getLogger("molret")

# What every member shares: the offline text encoder, frozen, mean-pooled (its features cached once),
# and (TEXT_BOW below) a learned bag-of-words view of the descriptions.
TEXT = ["--text-pooling", "mean", "--freeze-text"]
COMMON = [*TEXT, "--threads", "1", "--save-embeddings", "--no-write-submission", "--no-progress"]
# The graph-network members, in launch order: diverse graph encoders over the same frozen text features,
# each also reading the curated RDKit features of the decoded molecule (they lift a GCN member:
# docs/experiments.md "Chemistry features member")
MOL_FEATURES = ["--mol-features", "default"]
MEMBERS = [
    ("gcn", ["--conv", "gcn", *MOL_FEATURES]),
    ("mlp", ["--conv", "mlp", *MOL_FEATURES]),
    ("gatv2", ["--conv", "gatv2", *MOL_FEATURES]),
    ("gat", ["--conv", "gat", *MOL_FEATURES]),
]
GNN_MEMBERS = 2               # the default --members: the fastest two (the fast members below do the rest)
# The fast members: an MLP over the curated features (--conv features), a fixed number of epochs, ~1 minute
# each; member i is kind i % len(FAST_KINDS), with its own seed. Settings: docs/experiments.md "Chemistry features member".
FAST = ["--conv", "features", "--hidden-dim", "512", "--proj-hidden", "0", "--dropout", "0.2", "--batch-size", "256",
        "--loss", "clip", "--epochs", "20"]
FAST_KINDS = [
    ("feat", []),
    ("feat-nomorgan", ["--mol-features", "maccs,fragments,elements,rings"]),
    ("feat-desc", ["--mol-features", "maccs,morgan,fragments,elements,rings,descriptors"]),
    ("feat-morgan3", ["--mol-features", "maccs,morgan3,fragments,elements,rings"]),
]
FAST_MEMBERS = 8              # the default --fast-members
FAST_MEMBER_MINUTES = 1.6     # a fast member's wall time with its start and embeddings, two at once
                              # (docs/experiments.md "The recipe's time plan")
FIRST_ROUND = 2               # with --rounds 2: the first 2 members (the fastest, and the best alone) train first
FINISH_MINUTES = 2.0          # kept for the ensemble, names and re-ranking at the end
PSEUDO_MINUTES = 1.0          # the round-1 ensemble that writes the pseudo-labels
MEMBER_OVERHEAD_MINUTES = 2.0  # a member's start, final evaluation, test embedding and the budget's overrun
                               # (docs/experiments.md "The recipe's time plan")
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


@dataclass
class Plan:
    members: list            # (name, flags) of the graph-network members of the last round
    slots: int               # members trained at once
    member_minutes: float    # --time-budget of each graph-network member
    first_round: list = field(default_factory=list)  # (name, flags) of round 1 when there are 2 rounds
    fast: list = field(default_factory=list)         # (name, flags) of the fast members (last round)


def fast_members(n: int) -> list:
    """(name, flags) of the first ``n`` fast members: the kinds in turn, then again (other seeds)."""
    out = []
    for i in range(n):
        kind, flags = FAST_KINDS[i % len(FAST_KINDS)]
        out.append((f"{kind}-{i // len(FAST_KINDS) + 1}", [*FAST, *flags]))
    return out


def plan(minutes: float, cores: int, n_members: int, rounds: int = 1, n_fast: int = 0,
         final_fit: bool = False) -> Plan:
    """Members and time per graph-network member that fit ``minutes`` of
    wall time: the ``n_fast`` fast members first (a fixed number of epochs,
    FAST_MEMBER_MINUTES each), the ``n_members`` graph-network members share
    the rest. With 2 rounds, the first FIRST_ROUND graph-network members
    train first (their ensemble writes the pseudo-labels), then every member
    trains on train + pseudo-labels (those of round 1 continue from their
    round-1 weights). ``final_fit``: each fast member trains a second time,
    on train + val, for the submission's test matrix."""
    if n_members + n_fast == 0:
        raise MolretError("the recipe needs at least one member (--members or --fast-members)")
    slots = max(1, min(2, cores))
    first = MEMBERS[:min(FIRST_ROUND, n_members)] if rounds == 2 else []
    fast_minutes = -(-n_fast // slots) * FAST_MEMBER_MINUTES * (2 if final_fit else 1)
    usable = minutes - FINISH_MINUTES - (PSEUDO_MINUTES if first else 0.0) - fast_minutes
    batches = -(-n_members // slots) + -(-len(first) // slots)
    member_minutes = usable / batches - MEMBER_OVERHEAD_MINUTES if batches else 0.0
    if (member_minutes < 1.0 and batches) or usable < 0:
        raise MolretError(f"--minutes {minutes:g} is too short for {n_fast} fast and {n_members} graph-network "
                          f"members on {slots} core(s) in {rounds} round(s); give at least "
                          f"{math.ceil(minutes - usable + batches * (MEMBER_OVERHEAD_MINUTES + 1))}")
    return Plan(MEMBERS[:n_members], slots, member_minutes, first, fast_members(n_fast))


def build_parser() -> argparse.ArgumentParser:
    from molret.cli.flags import add_names_arg, ranged
    from molret.ranking.rerank import METHODS as RERANK_METHODS
    from molret.training.losses import LOSSES
    from molret.ranking.pseudo_labels import MARGIN_LIMITS
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
                   help=f"graph-network members to train (0..{len(MEMBERS)}: {', '.join(n for n, _ in MEMBERS)})")
    p.add_argument("--fast-members", type=ranged(int, "fast_members", (0, 4 * len(FAST_KINDS), False)),
                   default=FAST_MEMBERS, help=f"fast members (an MLP over curated RDKit features of the decoded "
                                              f"molecule, ~1 min each; 0..{4 * len(FAST_KINDS)})")
    p.add_argument("--no-final-fit", action="store_true",
                   help="skip the final fit: by default each fast member trains a second time on train + val "
                        "(main.py --train-on-val, same epochs and seed) and that copy gives the submission's test "
                        "matrix; weights and names are fitted with the first (more pairs pay: docs/experiments.md "
                        "\"Chemistry features member\")")
    p.add_argument("--seed", type=ranged(int, "seed"), default=0, help="seed of the first member (member i: seed + i)")
    p.add_argument("--text-model", default="minilm", help="the members' frozen text encoder (as main.py's)")
    p.add_argument("--max-epochs", type=ranged(int, "epochs"), default=300, help="epochs at most per member (the budget decides)")
    add_names_arg(p, "auto", "the ensemble's name weights fitted on val", extra={"auto": "as opsin"})
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


def member_state(run_dir: Path) -> str:
    """done (result.json), started (last.pt) or new."""
    if (run_dir / "result.json").exists() and (run_dir / "embeddings" / "test_text_emb.npy").exists():
        return "done"
    return "started" if (run_dir / "last.pt").exists() else "new"


def train_members(args, p: Plan, runs_dir: Path, members: list, minutes: float | None,
                  first_seed: int) -> tuple[list[Path], list[str]]:
    """Run ``members`` ((name, flags)), ``p.slots`` at a time, member i with
    seed ``first_seed + i`` and a time budget of ``minutes`` (None: its
    flags' epochs): (their run folders, the names of those already trained)."""
    pending, kept = [], []
    for i, (name, flags) in enumerate(members):
        state = member_state(runs_dir / name)
        if state == "done":
            log.info(f"member {name}: already trained (kept)")
            kept.append(name)
            continue
        if state == "started" and not args.resume:
            raise MolretError(f"{runs_dir / name} holds an interrupted member: add --resume, or another --run-name")
        pending.append((name, member_command(args, runs_dir, name, flags, first_seed + i, minutes,
                                             state == "started")))
    running: list = []
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        while pending or running:
            while pending and len(running) < p.slots:
                name, cmd = pending.pop(0)
                logf = open(runs_dir / f"{name}.out", "a")
                log.info(f"member {name}: training ({' '.join(cmd[2:])})")
                running.append((name, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env), logf))
            time.sleep(2)
            for item in list(running):
                name, proc, logf = item
                if proc.poll() is not None:
                    running.remove(item)
                    logf.close()
                    if proc.returncode != 0:
                        raise MolretError(f"member {name} failed (exit {proc.returncode}); its log: "
                                          f"{runs_dir / (name + '.out')}")
                    log.info(f"member {name}: done")
    except BaseException:
        for _, proc, _ in running:  # Ctrl-C: each member saves its last.pt on SIGINT
            proc.send_signal(2)
        for _, proc, _ in running:
            proc.wait()
        raise
    return [runs_dir / name for name, _ in members], kept


def train_fast_members(args, p: Plan, runs_dir: Path, final_fit: bool) -> tuple[list, list, list]:
    """The fast members, then (``final_fit``) each again on train + val with
    the same epochs and seed: (their folders, the final fit's folders or [],
    the names of those already trained)."""
    folders, kept = train_members(args, p, runs_dir, p.fast, None, args.seed + 100)
    if not (final_fit and p.fast):
        return folders, [], kept
    log.info(f"final fit: the {len(p.fast)} fast members again on train + val, for the submission")
    finals, kept_final = train_members(args, p, runs_dir, [(f"{n}-final", [*f, "--train-on-val"]) for n, f in p.fast],
                                       None, args.seed + 100)
    return folders, finals, kept + kept_final


def prepare_shared_inputs(data_dir: str, text_model: str, cache_dir: str = "", feature_sets=()) -> None:
    """The members' shared frozen text features and the molecule features of
    each family set in ``feature_sets`` (the decoded structures under them),
    computed once (cached on disk) with every core, before the members start
    (else each would compute them, two at a time)."""
    import torch
    from molret.cli.common import config_from_args, training_parser
    from molret.models.encoders import build_model
    from molret.models.text_models import load_tokenizer
    from molret.models.split_inputs import load_challenge_data, prepare_texts
    cache = ["--cache-dir", cache_dir] if cache_dir else []
    cfg = config_from_args(training_parser("recipe", "").parse_args(["--data-dir", data_dir, *cache, "--text-model", text_model,
                                                                      *TEXT]))
    data = load_challenge_data(cfg, need_train=True, need_test=True, progress=False)
    cfg.model.vocab_size, cfg.model.substructure_dim = len(data.vocab), data.vocab.dim
    cfg.model.train_text_layers = 0
    model = build_model(cfg.model, data.vocab.vectors)
    prepare_texts(data, cfg, load_tokenizer(cfg.model.text_model), model, torch.device("cpu"), progress=False)
    from molret.chem.mol_features import attach_features, parse_families
    for families in dict.fromkeys(feature_sets):
        for split in (data.train, data.val, data.test_graphs):
            attach_features(split.graphs, parse_families(families), cache_dir=data.cache_dir)


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
        data_dir=args.data_dir, json=str(json_path), cache_dir=args.cache_dir or None)
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
    cores = os.cpu_count() or 1
    final_fit = not args.no_final_fit
    p = plan(args.minutes, cores, args.members, args.rounds, args.fast_members, final_fit)  # fails before any work
    feature_sets = [flags[flags.index("--mol-features") + 1] if "--mol-features" in flags else "default"
                    for _, flags in p.fast + p.members]
    prepare_shared_inputs(args.data_dir, args.text_model, args.cache_dir, feature_sets)
    log.info(f"text and molecule features ready ({time.perf_counter() - start:.0f} s)")
    p = plan(args.minutes - (time.perf_counter() - start) / 60, cores, args.members, args.rounds, args.fast_members,
             final_fit)
    if p.first_round:
        log.info(f"recipe round 1: {len(p.first_round)} members ({', '.join(n for n, _ in p.first_round)}); their "
                 f"ensemble, names and {args.rerank} write the pseudo-labels")
    log.info(f"recipe{' round 2' if p.first_round else ''}: {len(p.fast)} fast members (~{FAST_MEMBER_MINUTES:g} "
             f"min each), then {len(p.members)} graph-network members ({', '.join(n for n, _ in p.members)}), "
             f"{p.slots} at a time, {p.member_minutes:.1f} min of training each; then ensemble, names, {args.rerank}")
    kept, pseudo, n_pseudo, first, second = [], None, 0, None, p.members
    if p.first_round:
        kept, pseudo, n_pseudo, first, second = first_round(args, p, runs_dir)
    fast_folders, final_folders, kept2 = train_fast_members(args, p, runs_dir, final_fit)
    if second:
        # the graph-network members get what is left of the budget (the plan's share, or more if the rest ran short)
        left = args.minutes - (time.perf_counter() - start) / 60
        p.member_minutes = max(1.0, (left - FINISH_MINUTES) / -(-len(second) // p.slots) - MEMBER_OVERHEAD_MINUTES)
        log.info(f"{len(second)} graph-network members, {p.member_minutes:.1f} min of training each")
    folders, kept3 = train_members(args, p, runs_dir, second, p.member_minutes, args.seed)
    folders, kept2 = fast_folders + folders, kept2 + kept3
    results = ensemble(args, folders, runs_dir / "ensemble.json", trained_on=pseudo if n_pseudo else None,
                       test_folders=(final_folders + folders[len(final_folders):]) if final_folders else None,
                       model_file=runs_dir / "model.pt")
    kept += kept2
    if p.first_round:
        results["round1"] = first
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["members_kept"] = kept
    from molret.utils.files import atomic_write_text
    atomic_write_text(runs_dir / "recipe.json", json.dumps(results, indent=2) + "\n")
    print(f"recipe: {results['wall_seconds']:.0f} s wall; submission {args.out}; model {runs_dir / 'model.pt'} (search.py, "
          f"serve.py, predictions.py --model); details {runs_dir / 'recipe.json'}")
    return results
