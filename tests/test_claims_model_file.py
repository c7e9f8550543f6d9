"""The claims scorer in the model file (molret.ranking.claims.fusion.ClaimsScorer): the ranker's plain-data round
trip, the file written by the ensemble step and read back, library search and predictions.py with the bonus and
without it (--claims none), and the errors of a corrupted or stale entry.

The search cases use a hand-set logistic ranker whose score is the number of rules a molecule agrees with minus
those it disagrees with, so that the bonus of each case is computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from conftest import run_script  # noqa: E402
from test_claims import _synthetic  # noqa: E402
from test_embedder import pair  # noqa: E402,F401 - the fixture (two tiny checkpoints and their model file)
from test_ensemble import tiny_checkpoint  # noqa: E402,F401 - the fixture (a checkpoint trained on the demo data)
from molret.ranking.claims import fusion  # noqa: E402
from molret.ranking.claims.ranker import ClaimsRanker, RankerOptions, feature_names, fit_ranker  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402

CHLORO_QUERY = "X is an organochlorine compound."     # states one claim: chloro >= 1
NO_CLAIM_QUERY = "A is a thing."                      # states none
LIBRARY = "CCO ethanol\nClC(Cl)Cl chloroform\nc1ccccc1 benzene\nCCCCCCCC octane\n"
CHLOROFORM = 1


def agreement_ranker() -> ClaimsRanker:
    """score = rules agreeing - rules disagreeing (a logistic model with one coefficient)."""
    coef = np.zeros(len(feature_names()))
    coef[feature_names().index("agreeing - disagreeing")] = 1.0
    return ClaimsRanker((coef, 0.0), "logistic")


def scorer_state(weight=0.1, scale=0.5, top_k=4) -> dict:
    return fusion.ClaimsScorer(agreement_ranker(), weight, scale, top_k).state()


# ------------------------------------------------------------ the ranker and the scorer as plain data

@pytest.mark.parametrize("ranker", ["lambdarank", "logistic"])
def test_ranker_round_trip_gives_the_fitted_scores(ranker):
    st, attrs = _synthetic()
    fitted = fit_ranker(st, attrs, RankerOptions(ranker=ranker, trees=30, near_negatives=5, random_negatives=5))
    test_st, test_attrs = _synthetic(n=20, seed=1)
    q, m = np.repeat(np.arange(20), 20), np.tile(np.arange(20), 20)
    state = fitted.state()
    assert state["features"] == feature_names() and isinstance(state["model"], (str, dict))
    again = ClaimsRanker.from_state(state)
    np.testing.assert_array_equal(again.score(test_st, test_attrs, q, m), fitted.score(test_st, test_attrs, q, m))
    assert np.ptp(fitted.score(test_st, test_attrs, q, m)) > 0   # not a constant ranker


def test_a_ranker_of_other_rules_or_a_broken_model_is_one_error():
    state = agreement_ranker().state()
    with pytest.raises(MolretError, match="other claims rules.*--claims none"):
        ClaimsRanker.from_state(dict(state, features=state["features"][:-1]))
    with pytest.raises(MolretError, match="coefficients"):
        ClaimsRanker.from_state(dict(state, model={"coef": [1.0], "intercept": 0.0}))
    with pytest.raises(MolretError, match="LightGBM model"):
        ClaimsRanker.from_state(dict(state, ranker="lambdarank", model="tree\nnot a model"))
    with pytest.raises(MolretError, match="weight"):
        fusion.ClaimsScorer.from_state(dict(scorer_state(), scale=0.0))


def test_bonus_with_a_fixed_scale_hand_computed():
    scores = np.array([[1.0, 3.0], [2.0, 2.0]])
    columns = np.array([[0, 2], [1, 0]])
    # scale 2: row 0 z = 0.5, 1.5 -> bonus 0, 1; row 1 equal scores -> 0
    np.testing.assert_allclose(fusion.claims_bonus(scores, columns, (2, 3), scale=2.0), [[0, 0, 1], [0, 0, 0]])
    # no scale: the std of the scores (0.5 ** 0.5), as the pool did
    np.testing.assert_allclose(fusion.claims_bonus(scores, columns, (2, 3)),
                               fusion.claims_bonus(scores, columns, (2, 3), scale=np.sqrt(0.5)))


def test_scorer_adds_the_weighted_bonus_on_the_top_k_only_and_computes_their_attributes_only(monkeypatch):
    smiles = ["CCO", "ClC(Cl)Cl", "c1ccccc1", "CCCCCCCC"]
    computed = []
    real = fusion.attribute_matrix
    monkeypatch.setattr(fusion, "attribute_matrix", lambda s: computed.extend(s) or real(s))
    attrs = fusion.LazyAttributes(smiles)
    scorer = fusion.ClaimsScorer(agreement_ranker(), weight=0.1, scale=0.5, top_k=2)
    base = np.array([[0.9, 0.8, 0.1, 0.0],      # chloroform in the top 2: +0.1 * (1 - -1) / 0.5
                     [0.9, 0.0, 0.8, 0.1]])     # chloroform outside: the top 2 both disagree, no bonus
    fused = scorer.fuse([CHLORO_QUERY, CHLORO_QUERY], base, attrs)
    np.testing.assert_allclose(fused, base + np.array([[0, 0.4, 0, 0], [0, 0, 0, 0]]))
    assert sorted(computed) == sorted(["CCO", "ClC(Cl)Cl", "c1ccccc1"])   # octane is no query's candidate
    scorer.fuse([CHLORO_QUERY], base[:1], attrs)
    assert len(computed) == 3                                            # kept, not computed again
    zero = fusion.ClaimsScorer(agreement_ranker(), weight=0.0, scale=0.5, top_k=2)
    np.testing.assert_array_equal(zero.fuse([CHLORO_QUERY], base[:1], attrs), base[:1])


def test_an_unknown_smiles_is_a_nan_row_that_still_ranks():
    attrs = fusion.LazyAttributes(["ClC(Cl)Cl", None])
    assert np.isnan(attrs[np.array([1])]).all() and not np.isnan(attrs[np.array([0])]).all()
    scorer = fusion.ClaimsScorer(agreement_ranker(), weight=1.0, scale=1.0, top_k=2)
    # the unknown molecule neither agrees nor disagrees (score 0), chloroform agrees (score 1)
    np.testing.assert_allclose(scorer.bonus([CHLORO_QUERY], np.zeros((1, 2)), attrs), [[1.0, 0.0]])


# ------------------------------------------------------------ the model file

def _claims_file(pair, path, state):
    from molret.models.embedder import Fusion, save_ensemble
    a, b, _ = pair
    save_ensemble(path, [a, b], [3.0, 1.0], Fusion(claims=state))
    return path


def test_a_model_file_carries_its_claims_scorer_and_older_files_load(pair, tmp_path):
    from molret.models.embedder import load_embedder
    loaded = load_embedder(_claims_file(pair, tmp_path / "claims.pt", scorer_state()), "cpu")
    scorer = fusion.ClaimsScorer.from_state(loaded.fusion.claims)
    assert (scorer.weight, scorer.scale, scorer.top_k) == (0.1, 0.5, 4)
    np.testing.assert_array_equal(scorer.ranker.model[0], agreement_ranker().model[0])
    assert load_embedder(pair[2], "cpu").fusion.claims is None     # a file written without claims


@pytest.mark.parametrize("entry", [{"ranker": {}, "weight": -1.0, "scale": 1.0, "top_k": 5},
                                   {"ranker": "x", "weight": 1.0, "scale": 1.0, "top_k": 5},
                                   {"ranker": {"model": "tree"}, "weight": 1.0, "scale": 0.0, "top_k": 5}, "junk"])
def test_a_corrupted_claims_entry_is_one_error(pair, tmp_path, entry):
    from molret.models.embedder import load_embedder
    with pytest.raises(MolretError, match="claims scorer"):
        load_embedder(_claims_file(pair, tmp_path / "bad.pt", entry), "cpu")


def test_search_adds_the_bonus_by_default_and_none_gives_the_old_scores(pair, tmp_path):
    from molret.api.retriever import MolRetriever, SearchOptions
    smi = tmp_path / "mols.smi"
    smi.write_text(LIBRARY)
    model = _claims_file(pair, tmp_path / "claims.pt", scorer_state(weight=10.0))
    retriever = MolRetriever.from_checkpoint(model, "cpu")
    on = retriever.open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c")))
    off = retriever.open_search(smi, SearchOptions(cache_dir=str(tmp_path / "c"), claims=False))
    plain = MolRetriever.from_checkpoint(pair[2], "cpu").open_search(
        smi, SearchOptions(cache_dir=str(tmp_path / "c"), names=False))
    assert on.claims is not None and off.claims is None and plain.claims is None
    queries = [CHLORO_QUERY, NO_CLAIM_QUERY]
    q = on.encode(queries)
    old = plain.fused_scores(queries, q)
    np.testing.assert_array_equal(off.fused_scores(queries, q), old)
    # top 4 = the whole library: chloroform agrees (+1), the others disagree (-1): + 10 * 2 / 0.5 on chloroform
    expected = old.copy()
    expected[0, CHLOROFORM] += 40.0
    np.testing.assert_allclose(on.fused_scores(queries, q), expected, rtol=0, atol=1e-9)
    assert on.search(queries, 1, query_emb=q)[0][0].id == "chloroform"
    assert [h.id for h in on.search(queries, 4, query_emb=q)[1]] == [h.id for h in plain.search(queries, 4)[1]]
    assert on.rank_of(q[:1], "chloroform", CHLORO_QUERY)[0] == 1


def test_search_cli_claims_flag(pair, tmp_path, capsys):
    smi = tmp_path / "mols.smi"
    smi.write_text(LIBRARY)
    model = _claims_file(pair, tmp_path / "claims.pt", scorer_state(weight=10.0))
    common = [CHLORO_QUERY, "--library", smi, "--cache-dir", tmp_path / "c", "-k", "1", "--device", "cpu"]
    code, res, _ = run_script("search", capsys, "--model", model, *common)
    assert code == 0 and res["results"][0][0].id == "chloroform" and res["engine"].claims is not None
    code, res, _ = run_script("search", capsys, "--model", model, "--claims", "none", *common)
    assert code == 0 and res["engine"].claims is None
    code, _, out = run_script("search", capsys, "--model", pair[0], "--claims", "stored", *common)
    assert code == 2 and "carries no claims scorer" in out.err
    stale = scorer_state()
    stale["ranker"]["features"] = stale["ranker"]["features"][:-1]
    stale_model = _claims_file(pair, tmp_path / "stale.pt", stale)
    code, _, out = run_script("search", capsys, "--model", stale_model, *common)
    assert code == 2 and "other claims rules" in out.err and "--claims none" in out.err
    code, _, _ = run_script("search", capsys, "--model", stale_model, "--claims", "none", *common)
    assert code == 0


# ------------------------------------------------------------ written by the ensemble step

def test_save_model_with_claims_stores_the_scorer(pair, tmp_path, monkeypatch):
    """--claims with --save-model is no longer refused: the fitted scorer and its weight go into the file."""
    import shutil
    from test_ensemble import _pool_members
    from molret.models.embedder import load_embedder
    from molret.ranking import ensemble_engine
    members = _pool_members(tmp_path, n=6)
    for folder, ckpt in zip(members, pair[:2]):
        shutil.copy(ckpt, f"{folder}/best.pt")
    scorer = fusion.ClaimsScorer(agreement_ranker(), 0.25, 0.5, 5)
    monkeypatch.setattr(ensemble_engine, "pool_claims",
                        lambda opts, square, *a, **k: (square, np.zeros_like(square), {"weight": 0.25}, scorer))
    monkeypatch.setattr(ensemble_engine, "pool_inputs", lambda *a: (None,) * 6)
    res = ensemble_engine.run_ensemble(ensemble_engine.EnsembleOptions(
        members=members, claims_top_k=5, data_dir=str(tmp_path), save_model=str(tmp_path / "m.pt")))
    assert res.claims is scorer
    loaded = load_embedder(tmp_path / "m.pt", "cpu")
    assert loaded.fusion.claims == scorer.state() and loaded.fusion.metrics["claims_weight"] == 0.25
    fusion.check_claims(5)   # the option check no longer refuses a model file


# ------------------------------------------------------------ predictions.py --model

def test_predictions_fuse_the_stored_bonus_into_the_test_matrix(tiny_checkpoint, tmp_path, capsys):  # noqa: F811
    from molret.evaluation.submission import read_submission
    from molret.models.embedder import Fusion, save_ensemble
    root, _, ckpt = tiny_checkpoint
    state = scorer_state(weight=0.3, scale=0.5, top_k=3)
    save_ensemble(tmp_path / "m.pt", [ckpt], [1.0], Fusion(claims=state))
    common = ["--model", tmp_path / "m.pt", "--cache-dir", root / "cache", "--device", "cpu", "--no-progress"]
    code, on, out = run_script("predictions", capsys, *common, "--out", tmp_path / "on.csv")
    assert code == 0 and on["pool"]["claims_weight"] == 0.3 and "claims bonus fused, weight 0.3" in out.out
    code, off, _ = run_script("predictions", capsys, *common, "--claims", "none", "--out", tmp_path / "off.csv")
    assert code == 0 and "claims_weight" not in off["pool"]
    diff = read_submission(tmp_path / "on.csv") - read_submission(tmp_path / "off.csv")
    # the bonus: >= 0, on at most top_k columns a row, steps of weight * (score difference) / scale
    assert (diff >= -1e-6).all() and ((np.abs(diff) > 1e-6).sum(axis=1) <= 3).all()
    assert diff.max() > 0
    steps = diff[diff > 1e-6] / (0.3 / 0.5)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)   # score differences are whole rule counts
