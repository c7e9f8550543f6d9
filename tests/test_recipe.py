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


@pytest.mark.parametrize("flag,value", [("--minutes", "0"), ("--minutes", "-5"), ("--members", "-1"),
                                        ("--fast-members", "-1"), ("--fast-members", str(4 * len(FAST_KINDS) + 1)),
                                        ("--members", str(len(MEMBERS) + 1)), ("--max-epochs", "0"),
                                        ("--pseudo-margin", "1.5"), ("--pseudo-margin", "-0.1"),
                                        ("--text-bow", "-1"), ("--text-bow", str((1 << 24) + 1)),
                                        ("--text-bow-rank", "-1"), ("--text-bow-dropout", "0.99"), ("--text-bow-chars", "13"),
                                        ("--seed", "-1"), ("--members", "two"),
                                        ("--rerank-temperature", "0"), ("--claims-top-k", "0")])
def test_out_of_range_flags_are_refused_naming_the_flag(flag, value, tmp_path, capsys):
    import recipe
    with pytest.raises(SystemExit) as e:
        recipe.main(["--data-dir", str(tmp_path), flag, value, "--runs-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    # argparse's form, as main.py's flags: the usage, then one line naming the flag
    assert f"error: argument {flag}:" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_recipe_on_demo_data_and_resume(demo_dir, tiny_text_model, tmp_path):
    import ensemble_method
    import recipe
    from molret.evaluation.submission import read_submission
    argv = ["--data-dir", str(demo_dir), "--minutes", "14", "--members", "2", "--text-model", tiny_text_model,
            "--max-epochs", "2", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "sub.csv"),
            "--names", "none", "--rounds", "2", "--pseudo-margin", "0", "--text-bow", "2048", "--text-bow-rank", "16",
            "--text-bow-dropout", "0.5", "--text-bow-chars", "4", "--loss", "siglip", "--fast-members", "1", "--rerank-temperature", "0.07"]
    res = recipe.main(argv)
    pool = res["pool"]
    runs = tmp_path / "runs" / "recipe"
    fast = f"{FAST_KINDS[0][0]}-1"
    assert set(pool["members"]) == {str(runs / n / "embeddings") for n, _ in MEMBERS[:2]} | {str(runs / fast / "embeddings")}
    fast_cfg = json.loads((runs / fast / "config.json").read_text())
    # the fast member: the features MLP, its own loss and epochs, and round 1's pseudo-labels too
    assert (fast_cfg["model"]["conv"], fast_cfg["train"]["loss"], fast_cfg["train"]["epochs"]) == ("features", "clip", 20)
    assert fast_cfg["train"]["extra_pairs"] == str(runs / "pseudo_labels.tsv")
    # the final fit: the same member again on train + val, same seed; its test matrix is the submission's
    final_cfg = json.loads((runs / f"{fast}-final" / "config.json").read_text())
    assert final_cfg["train"]["train_on_val"] and not fast_cfg["train"]["train_on_val"]
    assert final_cfg["train"]["seed"] == fast_cfg["train"]["seed"] and final_cfg["model"] == fast_cfg["model"]
    # round 1 wrote the pseudo-labels; round 2's members trained on them, from round 1's weights
    pseudo = res["round1"]["pool"]["pseudo_labels"]
    assert pseudo["pairs"] > 0 and pseudo["pairs"] == len((runs / "pseudo_labels.tsv").read_text().splitlines())
    for n, _ in MEMBERS[:2]:
        cfg = json.loads((runs / n / "config.json").read_text())
        assert cfg["train"]["extra_pairs"] == str(runs / "pseudo_labels.tsv")
        m = cfg["model"]
        assert (m["text_bow"], m["text_bow_rank"], m["text_bow_dropout"], m["text_bow_chars"]) == (2048, 16, 0.5, 4)  # the flags reach members
        assert cfg["train"]["loss"] == "siglip"
        assert f"initialised the model from {runs / (n + '-r1') / 'best.pt'}" in (runs / n / "train.log").read_text()
    assert 0 < pool["ensemble"]["pool_lrap"] <= 1 and "pool_lrap_reranked" in pool["ensemble"]
    # round 2's report also scores the val queries without a pseudo-label
    assert pool["unlabelled"]["queries"] == pool["unlabelled"]["of"] - pseudo["val_pairs"]
    assert len(pool["member_weights"]) == 3 and sum(pool["member_weights"]) == pytest.approx(1.0)
    assert 0 < pool["pool_lrap_cross_fitted"] <= 1
    assert pool["rerank_temperature"] == 0.07
    sub = read_submission(tmp_path / "sub.csv")
    n_test = len((demo_dir / "test_cids.txt").read_text().split())
    assert sub.shape == (n_test, n_test)
    assert json.loads((tmp_path / "runs" / "recipe" / "recipe.json").read_text())["pool"] == pool
    assert res["members_kept"] == []
    # the model file of the members that made the submission writes the same submission through predictions.py
    model = runs / "model.pt"
    assert res["model_file"]["path"] == str(model) and res["model_file"]["members"] >= 1
    _check_model_file_submission(model, demo_dir, tmp_path / "sub.csv", tmp_path / "again.csv")
    # get_text_embeddings.py and labels.py take the model file too: its joined, unit-norm embeddings
    import get_text_embeddings
    import labels
    paths = get_text_embeddings.main(["--model", str(model), "--split", "val", "--graphs", "--out",
                                      str(tmp_path / "exp" / "val"), "--device", "cpu", "--no-progress"])
    from molret.models.embedder import load_embedder
    width = load_embedder(model).dim
    # the training texts' embeddings for library search's hubness correction, at the recipe's temperature
    from molret.data.challenge import read_pairs_tsv
    n_train = len(read_pairs_tsv(demo_dir / "train.tsv")[0])
    assert load_embedder(model).fusion.hubness_bank.shape == (n_train, width)
    text_emb = np.load(paths["text_emb"])
    assert text_emb.shape[1] == width and np.load(paths["graph_emb"]).shape[1] == width
    np.testing.assert_allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    assert len(labels.main(["--model", str(model), "--split", "val", "--n-clusters", "2",
                            "--out", str(tmp_path / "labels.tsv")])) == len(text_emb)
    # with names: ensemble_method.py --save-model over two of the members, names fused and Sinkhorn
    two = tmp_path / "two.pt"
    ensemble_method.main(["--members", *[str(runs / n / "embeddings") for n, _ in MEMBERS[:2]], "--fit-weights",
                          "--names", "opsin", "--rerank", "sinkhorn", "--rerank-temperature", "0.05",
                          "--data-dir", str(demo_dir), "--out", str(tmp_path / "two.csv"), "--save-model", str(two)])
    assert load_embedder(two).fusion.names_weights is not None
    _check_model_file_submission(two, demo_dir, tmp_path / "two.csv", tmp_path / "two-again.csv")
    # --reduce-dim: the same members' model file with a PCA projection, its pool LRAP measured beside the exact
    res_small = ensemble_method.main(["--members", *[str(runs / n / "embeddings") for n, _ in MEMBERS[:2]],
                                      "--data-dir", str(demo_dir), "--save-model", str(tmp_path / "small.pt"),
                                      "--reduce-dim", "8"])
    assert load_embedder(tmp_path / "small.pt").dim == 8 and 0 < res_small["pool"]["ensemble"]["pool_lrap"] <= 1
    again = recipe.main(argv + ["--resume"])        # finished members are kept, not retrained
    assert again["members_kept"] == ([f"{n}-r1" for n, _ in MEMBERS[:2]] + [fast, f"{fast}-final"] +
                                     [n for n, _ in MEMBERS[:2]])
    assert again["pool"]["ensemble"] == pool["ensemble"]


def _check_model_file_submission(model, demo_dir, submission, out):
    """predictions.py --model MODEL.pt writes ``submission`` again (1e-5): members, weights, names, Sinkhorn."""
    import predictions
    from molret.evaluation.submission import read_submission
    predictions.main(["--model", str(model), "--data-dir", str(demo_dir), "--out", str(out), "--no-progress"])
    # the CSV keeps 7 significant digits: 1e-5 absolute, or relative for Sinkhorn's log-domain scores
    np.testing.assert_allclose(read_submission(out), read_submission(submission), rtol=1e-5, atol=1e-5)


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


def test_default_recipe_on_demo_data(demo_dir, tiny_text_model, tmp_path, monkeypatch):
    """The default plan end to end on the DEMO data (up to 4 fast members here, to keep it short): the members
    train in the plan's order while the deadline allows (the rest, if any, skipped), within the budget; the
    claims scorer is fused and stored in model.pt, and predictions.py --model writes the submission again."""
    import recipe
    import molret.cli.recipe_plan as recipe_plan
    from molret.models.embedder import load_embedder
    monkeypatch.setattr(recipe_plan, "FAST_LIMIT", 4)
    minutes = FINISH_MINUTES + FAST_MEMBER_MINUTES + 0.01
    argv = ["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--runs-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / "sub.csv"), "--names", "none", "--text-bow", "2048", "--no-final-fit",
            "--minutes", str(minutes)]
    res = recipe.main(argv)
    fast = res["fast_members"]
    order = [f"{k}-1" for k, _ in FAST_KINDS]
    # the first batch always trains (not optional); then the members in order until the deadline, the rest skipped
    n = len(fast["trained"])
    assert n >= 2 and fast["trained"] == order[:n] and fast["skipped"] == order[n:]
    assert fast["test_matrices"] == fast["trained"] and len(fast["minutes"]) == n   # no final fit asked
    assert res["wall_seconds"] <= 60 * minutes * 1.05
    assert "claims" in res["pool"] and res["pool"]["claims"]["top_k"] >= 1
    model = tmp_path / "runs" / "recipe" / "model.pt"
    assert load_embedder(model).fusion.claims is not None
    _check_model_file_submission(model, demo_dir, tmp_path / "sub.csv", tmp_path / "again.csv")


def test_fast_members_flag_takes_auto_or_a_count():
    from molret.cli.recipe import build_parser
    assert build_parser().parse_args([]).fast_members is None            # auto: the budget decides
    assert build_parser().parse_args(["--fast-members", "auto"]).fast_members is None
    assert build_parser().parse_args(["--fast-members", "3"]).fast_members == 3
    assert build_parser().parse_args([]).members == 0                    # no graph-network member by default
