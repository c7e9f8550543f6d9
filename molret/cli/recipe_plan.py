"""The recipe's budget plan: which members it trains, in which order, and how many minutes each may take.

The fast members (an MLP over the curated RDKit features of the decoded molecule, ~1 minute each) come first,
in the order the pool paid for them (``fast_jobs``); graph-network members, when asked for, share what is left.
The durations are measured ones (docs/experiments.md "The recipe's time plan"); the recipe (``molret.cli.recipe``)
plans again once its inputs are prepared, and ``molret.training.member_jobs`` keeps the optional members
within the deadline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from molret.training.member_jobs import Job
from molret.utils.errors import MolretError

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
GNN_MEMBERS = 0               # the default --members: with the claims scorer and names 3.0 the pool is higher
                              # without them (docs/experiments.md "The recipe re-planned by measurement")
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
FAST_LIMIT = 4 * len(FAST_KINDS)   # --fast-members at most; without it the budget decides, up to this many
FAST_WITH_GNN = 8             # the fast members when graph-network members share the budget (--members > 0)
FAST_MEMBER_MINUTES = 1.6     # a fast member's wall time with its start and embeddings, two at once, before one
                              # has finished in this run (then their measured mean is used)
                              # (docs/experiments.md "The recipe's time plan")
FIRST_ROUND = 2               # with --rounds 2: the first 2 members (the fastest, and the best alone) train first
FINISH_MINUTES = 2.5          # kept for the ensemble, names, claims and re-ranking at the end (their inputs are
                              # prepared and cached before the members start)
PSEUDO_MINUTES = 1.0          # the round-1 ensemble that writes the pseudo-labels
MEMBER_OVERHEAD_MINUTES = 2.0  # a member's start, final evaluation, test embedding and the budget's overrun
                               # (docs/experiments.md "The recipe's time plan")


@dataclass
class Plan:
    members: list            # (name, flags) of the graph-network members of the last round
    slots: int               # members trained at once
    member_minutes: float    # --time-budget of each graph-network member
    first_round: list = field(default_factory=list)  # (name, flags) of round 1 when there are 2 rounds
    fast: list = field(default_factory=list)         # (name, flags) of the fast members (last round), in order
    auto: bool = False       # the fast members the budget allows: those after the first batch are optional
    final_fit: bool = False  # each fast member trained again on train + val for the submission


def fast_members(n: int) -> list:
    """(name, flags) of the first ``n`` fast members: the kinds in turn, then again (other seeds)."""
    out = []
    for i in range(n):
        kind, flags = FAST_KINDS[i % len(FAST_KINDS)]
        out.append((f"{kind}-{i // len(FAST_KINDS) + 1}", [*FAST, *flags]))
    return out


def plan(minutes: float, cores: int, n_members: int = GNN_MEMBERS, rounds: int = 1, n_fast: int | None = None,
         final_fit: bool = False) -> Plan:
    """Members and time per graph-network member that fit ``minutes`` of
    wall time: the fast members first (a fixed number of epochs,
    FAST_MEMBER_MINUTES each), the ``n_members`` graph-network members share
    the rest. ``n_fast`` None: the budget decides (``fast_jobs``): up to
    FAST_LIMIT fast members without graph-network members (FAST_WITH_GNN
    with them), at least one batch. With 2 rounds, the first FIRST_ROUND
    graph-network members train first (their ensemble writes the
    pseudo-labels), then every member trains on train + pseudo-labels (those
    of round 1 continue from their round-1 weights). ``final_fit``: each fast
    member trains a second time, on train + val, for the submission's test
    matrix."""
    if rounds == 2 and n_members == 0:
        raise MolretError("--rounds 2 trains its first round with graph-network members: give --members 1 or more")
    auto = n_fast is None and not n_members
    if n_fast is None:
        n_fast = FAST_WITH_GNN if n_members else FAST_LIMIT
    if n_members + n_fast == 0:
        raise MolretError("the recipe needs at least one member (--members or --fast-members)")
    slots = max(1, min(2, cores))
    first = MEMBERS[:min(FIRST_ROUND, n_members)] if rounds == 2 else []
    # the fast members the plan counts on: all when given, the first batch when the budget decides the rest
    counted = min(n_fast, slots) if auto else n_fast
    fast_minutes = -(-counted // slots) * FAST_MEMBER_MINUTES * (2 if final_fit and not auto else 1)
    usable = minutes - FINISH_MINUTES - (PSEUDO_MINUTES if first else 0.0) - fast_minutes
    batches = -(-n_members // slots) + -(-len(first) // slots)
    member_minutes = usable / batches - MEMBER_OVERHEAD_MINUTES if batches else 0.0
    if (member_minutes < 1.0 and batches) or usable < 0:
        what = "the first batch of fast members" if auto else f"{n_fast} fast and {n_members} graph-network members"
        raise MolretError(f"--minutes {minutes:g} is too short for {what} on {slots} core(s)"
                          f"{f' in {rounds} rounds' if rounds == 2 else ''}; give at least "
                          f"{math.ceil(minutes - usable + batches * (MEMBER_OVERHEAD_MINUTES + 1))}")
    return Plan(MEMBERS[:n_members], slots, member_minutes, first, fast_members(n_fast), auto, final_fit)


def fast_jobs(p: Plan, first_seed: int) -> list:
    """The fast members as jobs, in the order the budget buys them (docs/experiments.md "The recipe re-planned
    by measurement"): the first two of each kind, their final fit, then the next two of each kind and theirs.
    Member i keeps seed ``first_seed + i`` and its final fit the same seed. With ``p.auto`` every job after
    the first batch is optional (the deadline decides); else every one runs."""
    step = 2 * len(FAST_KINDS)
    jobs = []
    for start in range(0, len(p.fast), step):
        block = list(enumerate(p.fast))[start:start + step]
        jobs += [Job(name, flags, first_seed + i) for i, (name, flags) in block]
        if p.final_fit:
            jobs += [Job(f"{name}-final", [*flags, "--train-on-val"], first_seed + i, needs=name)
                     for i, (name, flags) in block]
    for j, job in enumerate(jobs):
        job.optional = p.auto and j >= p.slots
    return jobs
