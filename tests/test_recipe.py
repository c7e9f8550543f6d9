"""recipe.py: the budget plan, its flags' ranges, and a whole run on the DEMO
data with a tiny text model (members, pool-weighted ensemble, submission,
--resume keeping finished members)."""
import json
from pathlib import Path

import numpy as np
import pytest

from molret.utils.errors import MolretError
from molret.cli.recipe import member_group
from molret.cli.recipe_plan import (FAST_KINDS, FAST_LIMIT, FAST_MEMBER_MINUTES, FAST_WITH_GNN, FINISH_MINUTES,
                                    FIRST_ROUND, MEMBER_OVERHEAD_MINUTES, MEMBERS, PSEUDO_MINUTES, fast_jobs, plan)
from molret.training.member_jobs import Job, run_jobs


def test_plan_fits_the_budget():
    p = plan(30, cores=2, n_members=4, n_fast=0)
    assert p.slots == 2 and len(p.members) == 4 and p.first_round == []
    # 2 batches of 2 members: each batch gets half of what the finish leaves, minus a member's overhead
    assert p.member_minutes == pytest.approx((30 - FINISH_MINUTES) / 2 - MEMBER_OVERHEAD_MINUTES)
    assert plan(30, cores=1, n_members=2).slots == 1 and plan(30, cores=16, n_members=2).slots == 2
    with pytest.raises(MolretError, match="too short"):
        plan(4, cores=2, n_members=4, n_fast=0)
    # graph-network members without --fast-members: FAST_WITH_GNN fast members, all counted by the plan
    with_gnn = plan(30, cores=2, n_members=2)
    assert len(with_gnn.fast) == FAST_WITH_GNN and not with_gnn.auto


def test_plan_with_fast_members():
    p = plan(30, cores=2, n_members=2, n_fast=5)
    # 5 fast members on 2 cores: 3 batches of FAST_MEMBER_MINUTES first; one batch of 2 graph-network members after
    assert p.member_minutes == pytest.approx(30 - FINISH_MINUTES - 3 * FAST_MEMBER_MINUTES - MEMBER_OVERHEAD_MINUTES)
    kinds = [k for k, _ in FAST_KINDS]
    assert [n for n, _ in p.fast] == [f"{k}-1" for k in kinds] + [f"{kinds[0]}-2"]
    assert all(f[f.index("--conv") + 1] == "features" for _, f in p.fast)
    assert [member_group(Path(n)) for n, _ in p.fast] == kinds + [kinds[0]]   # a weight per kind
    assert member_group(Path("gcn")) == "gcn" and member_group(Path("gcn-r1")) == "gcn-r1"
    only_fast = plan(6, cores=2, n_members=0, n_fast=4)
    assert only_fast.members == [] and len(only_fast.fast) == 4
    with pytest.raises(MolretError, match="at least one member"):
        plan(30, cores=2, n_members=0, n_fast=0)
    with pytest.raises(MolretError, match="too short for 8 fast"):
        plan(6, cores=2, n_members=2, n_fast=8)


def test_final_fit_trains_the_fast_members_twice():
    once, twice = plan(30, cores=2, n_members=2, n_fast=4), plan(30, cores=2, n_members=2, n_fast=4, final_fit=True)
    assert once.member_minutes - twice.member_minutes == pytest.approx(2 * FAST_MEMBER_MINUTES)  # 2 more batches


def test_two_round_plan():
    p = plan(30, cores=2, n_members=4, rounds=2, n_fast=0)
    assert p.first_round == MEMBERS[:FIRST_ROUND] and p.members == MEMBERS
    # round 1: one batch of 2; round 2: two batches of 2; the pseudo-labelling ensemble between them
    assert p.member_minutes == pytest.approx((30 - FINISH_MINUTES - PSEUDO_MINUTES) / 3 - MEMBER_OVERHEAD_MINUTES)
    with pytest.raises(MolretError, match="too short.*2 round"):
        plan(8, cores=2, n_members=4, rounds=2, n_fast=0)
    with pytest.raises(MolretError, match="--rounds 2 .*--members 1"):
        plan(30, cores=2, n_members=0, rounds=2)


def test_default_plan_lets_the_budget_decide_the_fast_members():
    p = plan(10, cores=2, final_fit=True)
    assert p.auto and p.members == [] and len(p.fast) == FAST_LIMIT and p.final_fit
    # only the first batch is counted: a 10-minute budget is enough, one that cannot hold it is refused
    assert plan(FINISH_MINUTES + FAST_MEMBER_MINUTES + 0.01, cores=2).auto
    with pytest.raises(MolretError, match="too short for the first batch"):
        plan(FINISH_MINUTES + FAST_MEMBER_MINUTES - 0.1, cores=2)
    # given, the fast members are all counted (and their final fit)
    given = plan(30, cores=2, n_fast=8, final_fit=True)
    assert not given.auto and len(given.fast) == 8
    with pytest.raises(MolretError, match="too short for 8 fast"):
        plan(FINISH_MINUTES + 7 * FAST_MEMBER_MINUTES, cores=2, n_fast=8, final_fit=True)


def test_fast_jobs_buy_two_of_each_kind_then_their_final_fit_then_more():
    p = plan(30, cores=2, final_fit=True)
    jobs = fast_jobs(p, first_seed=100)
    block = 2 * len(FAST_KINDS)
    names = [n for n, _ in p.fast]
    assert [j.name for j in jobs] == (names[:block] + [f"{n}-final" for n in names[:block]] + names[block:]
                                      + [f"{n}-final" for n in names[block:]])
    by_name = {j.name: j for j in jobs}
    # member i: seed 100 + i; its final fit the same seed, on train + val, after it
    assert [by_name[n].seed for n in names] == list(range(100, 100 + len(names)))
    assert by_name[f"{names[5]}-final"].seed == 105 and by_name[f"{names[5]}-final"].needs == names[5]
    assert "--train-on-val" in by_name[f"{names[0]}-final"].flags and "--train-on-val" not in by_name[names[0]].flags
    # the budget decides every job after the first batch; given members all run
    assert [j.optional for j in jobs] == [False] * p.slots + [True] * (len(jobs) - p.slots)
    assert not any(j.optional for j in fast_jobs(plan(30, cores=2, n_fast=4), 100))
    assert [j.name for j in fast_jobs(plan(30, cores=2, n_fast=4), 100)] == names[:4]


def _sleeping_members(seconds=0.2):
    """A command for run_jobs: members that only sleep; the names started are recorded."""
    import sys
    started = []

    def command(job, continues):
        started.append(job.name)
        return [sys.executable, "-c", f"import time; time.sleep({seconds})"]
    return command, started


def test_scheduler_starts_optional_members_only_while_the_deadline_allows(tmp_path):
    import time
    jobs = [Job("a", [], 0), Job("b", [], 1), Job("c", [], 2, optional=True), Job("a-final", [], 0, needs="a"),
            Job("c-final", [], 2, optional=True, needs="c")]
    command, started = _sleeping_members()
    done, kept, report = run_jobs(jobs, tmp_path, command, slots=2)   # no deadline: every job
    assert sorted(done) == sorted(j.name for j in jobs) and kept == [] and report["skipped"] == []
    assert started.index("a-final") > started.index("a") and len(report["minutes"]) == 5
    assert (tmp_path / "a-final.out").exists()
    started.clear()
    # a deadline that has passed: the first batch (not optional) still trains; the optional ones are skipped,
    # and the final fit of a member that did not train with them
    done, _, report = run_jobs(jobs, tmp_path, command, slots=2, deadline=time.perf_counter())
    assert sorted(done) == ["a", "a-final", "b"] and report["skipped"] == ["c", "c-final"]
    assert started == ["a", "b", "a-final"]
    # a deadline far enough: the optional ones start once the first have shown how long a member takes
    started.clear()
    done, _, report = run_jobs(jobs, tmp_path, command, slots=2, deadline=time.perf_counter() + 60,
                               prior_minutes=10.0)
    assert report["skipped"] == [] and len(started) == 5


def test_scheduler_keeps_trained_members_and_refuses_an_interrupted_one(tmp_path):
    command, started = _sleeping_members()
    (tmp_path / "a" / "embeddings").mkdir(parents=True)
    (tmp_path / "a" / "result.json").write_text("{}")
    (tmp_path / "a" / "embeddings" / "test_text_emb.npy").write_bytes(b"")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "last.pt").write_bytes(b"")
    jobs = [Job("a", [], 0), Job("b", [], 1)]
    with pytest.raises(MolretError, match="interrupted member: add --resume"):
        run_jobs(jobs, tmp_path, command, slots=2)
    done, kept, _ = run_jobs(jobs, tmp_path, command, slots=2, resume=True)
    assert kept == ["a"] and sorted(done) == ["a", "b"] and started == ["b"]


def test_a_failed_member_stops_the_run_naming_its_log(tmp_path):
    import sys
    with pytest.raises(MolretError, match="member a failed .*a.out"):
        run_jobs([Job("a", [], 0)], tmp_path, lambda job, c: [sys.executable, "-c", "raise SystemExit(3)"])


@pytest.mark.parametrize("extra,top_k", [([], 50), (["--claims-top-k", "7"], 7), (["--no-claims"], 0)])
def test_claims_flags_reach_the_ensemble_step(extra, top_k, monkeypatch, tmp_path):
    """The claims scorer is on by default in the recipe's ensemble (--claims-top-k candidates), off with
    --no-claims, and never in the ensemble that writes round 1's pseudo-labels."""
    import molret.ranking.ensemble_engine as engine
    from molret.cli.recipe import build_parser, ensemble
    seen = []

    class Result:
        metrics, model_file = {}, None

    def fake_run(opts):
        seen.append(opts)
        return Result()
    monkeypatch.setattr(engine, "run_ensemble", fake_run)
    args = build_parser().parse_args(["--data-dir", str(tmp_path), "--names", "none", *extra])
    ensemble(args, [tmp_path / "feat-1"], tmp_path / "e.json", model_file=tmp_path / "model.pt")
    ensemble(args, [tmp_path / "feat-1"], tmp_path / "r1.json", pseudo_labels=tmp_path / "p.tsv")
    assert [o.claims_top_k for o in seen] == [top_k, 0]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--claims-top-k", "0"])
