"""Tests for the claims scorer (molret.ranking.claims): the rules on hand-written descriptions, the attributes of
hand-written 3-5 atom molecules, the ranker on a tiny synthetic case, the fusion and its wiring into the
ensemble step (ensemble_method.py --claims)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from molret.ranking.claims import fusion  # noqa: E402
from molret.ranking.claims.ranker import RankerOptions, agreement, fit_ranker, pair_features  # noqa: E402
from molret.ranking.claims.statements import (CLASS_WORDS, RULE_NAMES, RULES, describe, stated,  # noqa: E402
                                              stated_matrix)
from molret.ranking.claims.structure import ATTRIBUTES, CLASS_SMARTS, attribute_matrix, attributes  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402


# ------------------------------------------------------------ what a description states

def test_every_rule_has_its_attribute_and_every_class_word_its_smarts():
    assert set(CLASS_SMARTS) == set(CLASS_WORDS)
    assert all(r.attribute in ATTRIBUTES and r.kind in ("ge", "eq", "sign") for r in RULES)
    assert len(set(RULE_NAMES)) == len(RULES)


def test_subject_and_class_text_leave_out_other_species():
    d = describe("Succinate(2-) is a dicarboxylic acid dianion that is the conjugate base of succinic acid. "
                 "It is a conjugate base of a succinate(1-). It is a C4-dicarboxylate.")
    assert d.subject == "Succinate(2-)"
    assert "dicarboxylic acid dianion" in d.class_text and "succinic acid" not in d.class_text
    assert "c4-dicarboxylate" in d.class_text and "succinate(1-)" not in d.class_text


@pytest.mark.parametrize("text,expected", [
    ("Succinate(2-) is a dicarboxylic acid dianion obtained by deprotonation of both carboxy groups.",
     {"charge": -2.0, "charge_sign": -1.0, "carboxylate": 1.0}),
    ("Choline is a choline that is the cation. It is an organic cation.", {"charge_sign": 1.0}),
    ("Glycine zwitterion is an amino acid zwitterion arising from transfer of a proton.",
     {"charge_sign": 0.0, "zwitterion": 1.0, "amino_acid": 1.0}),
    ("Hexadecanoic acid is a straight-chain saturated fatty acid.",
     {"chain_carbons": 16.0, "carboxy": 1.0, "saturated": 0.0, "fatty_acid": 1.0}),
    ("(9Z,12Z)-octadeca-9,12-dienoic acid is an octadecadienoic acid.", {"cc_double": 2.0, "chain_carbons": 18.0}),
    ("Lanosterol is a tetracyclic triterpenoid.", {"rings": 4.0, "terpenoid_carbons": 30.0, "hydroxy": 1.0}),
    ("3alpha,7alpha,12alpha-trihydroxy-5beta-cholan-24-oic acid is a bile acid.", {"hydroxy": 3.0, "steroid": 1.0}),
    ("Adenosine 5'-triphosphate is a purine ribonucleoside triphosphate.",
     {"phosphate": 3.0, "phosphorus": 1.0, "nucleoside": 1.0, "purine": 1.0}),
    ("Beta-D-Galp-(1->4)-beta-D-Glcp is a glycosylglucose.", {"sugar_units": 2.0, "glycoside": 1.0}),
    ("Ala-Gly-Phe is a tripeptide composed of L-alanine, glycine and L-phenylalanine.",
     {"amino_acid_units": 3.0, "amino_acid": 1.0}),
    ("2,4-dichlorophenol is a dichlorophenol. It is an organochlorine compound.",
     {"chloro": 2.0, "hydroxy": 1.0, "benzene": 1.0}),
    ("Sodium acetate is an organic sodium salt.", {"metal": 1.0, "salt": 2.0, "acetyl": 1.0}),
    ("Cobalt dichloride hexahydrate is a hydrate.", {"hydrate": 6.0, "salt": 2.0, "metal": 1.0}),
])
def test_rules_read_what_a_description_states(text, expected):
    got = stated(text)
    for rule, value in expected.items():
        assert got.get(rule) == value, (rule, got)


def test_rules_do_not_fire_on_look_alike_words():
    got = stated("D-glucose is a carbohydrate. It is a cyclohexane derivative.")
    assert "hydrate" not in got and "salt" not in got and "chain_carbons" not in got
    assert stated("(-)-menthol is a p-menthan-3-ol.").get("charge") is None   # (-) is a rotation, not a charge
    assert stated("Thiol-free compound X is a something.").get("hydroxy") is None
    assert stated("A molecule is a molecule.") == {}


def test_stated_matrix_has_nan_where_a_rule_does_not_fire():
    m = stated_matrix(["Succinate(2-) is a dicarboxylic acid dianion.", "A is a thing."])
    assert m.shape == (2, len(RULES))
    assert m[0, RULE_NAMES.index("charge")] == -2.0 and np.isnan(m[1]).all()


# ------------------------------------------------------------ what a structure has

def test_attributes_of_small_molecules():
    acetate = attributes("CC(=O)[O-]")
    assert acetate["net_charge"] == -1 and acetate["carboxy"] == 1 and acetate["chain"] == 2
    assert acetate["class:carboxylate"] == 1 and acetate["class:carboxylic_acid"] == 0 and acetate["methyl"] == 1
    butadiene = attributes("C=CC=C")
    assert butadiene["cc_double"] == 2 and butadiene["chain"] == 4 and butadiene["ring_system_rings"] == 0
    glycerol = attributes("OCC(O)CO")
    assert glycerol["hydroxy"] == 3 and glycerol["chain"] == 3 and glycerol["class:primary_alcohol"] == 1
    lactam = attributes("O=C1CCN1")
    assert lactam["class:beta_lactam"] == 1 and lactam["ring_system_rings"] == 1 and lactam["chain"] == 0
    glycine = attributes("[NH3+]CC(=O)[O-]")
    assert glycine["zwitterion"] == 1 and glycine["net_charge"] == 0 and glycine["amino_acid_units"] == 1
    brine = attributes("O.[Na+].[Cl-]")
    assert brine["fragments"] == 3 and brine["waters"] == 1 and brine["metal"] == 1 and brine["chloro"] == 1
    assert attributes("C1CO1")["class:epoxide"] == 1 and attributes("OP(=O)(O)O")["phosphate"] == 1
    assert attributes("C1OC(O)C(O)C1")["sugar_rings"] == 1 and attributes("C1CCOC1")["sugar_rings"] == 0


def test_unknown_molecules_are_nan_rows():
    assert attributes(None) is None and attributes("not a smiles") is None
    m = attribute_matrix(["CCO", None])
    assert m.shape == (2, len(ATTRIBUTES)) and not np.isnan(m[0]).any() and np.isnan(m[1]).all()


def test_attributes_are_cached_by_their_smiles(tmp_path, monkeypatch):
    from molret.ranking.claims import structure
    first = structure.cached_attribute_matrix(["CCO", None], tmp_path)
    assert len(list(tmp_path.glob("claims-attributes-*.npz"))) == 1

    def no_recompute(smiles):
        raise AssertionError("recomputed")
    monkeypatch.setattr(structure, "attribute_matrix", no_recompute)
    np.testing.assert_array_equal(structure.cached_attribute_matrix(["CCO", None], tmp_path), first)
    with pytest.raises(AssertionError, match="recomputed"):   # other SMILES, another key
        structure.cached_attribute_matrix(["CCN"], tmp_path)


# ------------------------------------------------------------ agreement and the ranker

def test_agreement_by_kind_hand_computed():
    stated_ = np.array([[2.0, np.nan, -1.0, 3.0]], np.float32)
    has = np.array([[3.0, 1.0, -2.0, 4.0]], np.float32)
    out = agreement(stated_, has, np.array(["ge", "eq", "sign", "eq"]))
    assert out[0, 0] == 1 and np.isnan(out[0, 1]) and out[0, 2] == 1 and out[0, 3] == 0
    assert np.isnan(agreement(stated_, np.full_like(has, np.nan), np.array(["ge"] * 4))).all()


def _synthetic(n=60, seed=0):
    """Training queries that state a charge and a chain length, each equal to its molecule's."""
    rng = np.random.default_rng(seed)
    attrs = rng.integers(0, 3, size=(n, len(ATTRIBUTES))).astype(np.float32)
    charge, chain = ATTRIBUTES.index("net_charge"), ATTRIBUTES.index("chain")
    attrs[:, charge] = rng.integers(-2, 3, size=n)
    attrs[:, chain] = rng.integers(1, 25, size=n)
    st = np.full((n, len(RULES)), np.nan, np.float32)
    st[:, RULE_NAMES.index("charge")] = attrs[:, charge]
    st[:, RULE_NAMES.index("chain_carbons")] = attrs[:, chain]
    return st, attrs


@pytest.mark.parametrize("ranker", ["lambdarank", "logistic"])
def test_ranker_prefers_the_molecule_that_agrees(ranker):
    st, attrs = _synthetic()
    model = fit_ranker(st, attrs, RankerOptions(ranker=ranker, trees=30, near_negatives=5, random_negatives=5,
                                                threads=1))
    test_st, test_attrs = _synthetic(n=20, seed=1)
    q = np.repeat(np.arange(20), 20)
    m = np.tile(np.arange(20), 20)
    scores = model.score(test_st, test_attrs, q, m).reshape(20, 20)
    agree_both = (test_attrs[:, None, ATTRIBUTES.index("net_charge")] == test_attrs[None, :, ATTRIBUTES.index(
        "net_charge")]) & (test_attrs[:, None, ATTRIBUTES.index("chain")] <= test_attrs[None, :, ATTRIBUTES.index(
            "chain")])
    # the true molecule scores at least as high as every molecule that does not agree with both claims
    best_disagreeing = np.where(agree_both, -np.inf, scores).max(axis=1)
    assert np.mean(np.diag(scores) > best_disagreeing) >= 0.9
    assert pair_features(test_st, test_attrs, q[:3], m[:3]).shape[0] == 3


def test_ranker_options_are_checked():
    with pytest.raises(MolretError, match="one of"):
        RankerOptions(ranker="svm").check()
    with pytest.raises(MolretError, match="at least one negative"):
        RankerOptions(near_negatives=0, random_negatives=0).check()


# ------------------------------------------------------------ fusion

def test_bonus_hand_computed_and_weight_zero_is_the_learned_scores():
    scores = np.array([[1.0, 3.0], [2.0, 2.0]])
    columns = np.array([[0, 2], [1, 0]])
    bonus = fusion.claims_bonus(scores, columns, (2, 3))
    np.testing.assert_allclose(bonus, [[0.0, 0.0, 2.0 / np.sqrt(0.5)], [0.0, 0.0, 0.0]], rtol=1e-6)
    learned = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    assert np.array_equal(fusion.fuse_claims(learned, bonus, 0.0), learned.astype(np.float64))
    np.testing.assert_allclose(fusion.fuse_claims(learned, bonus, 0.5), learned + 0.5 * bonus)


def test_top_k_columns_are_each_rows_best():
    s = np.array([[0.1, 0.9, 0.5, 0.3], [0.8, 0.2, 0.1, 0.7]])
    assert [sorted(r) for r in fusion.top_k_columns(s, 2).tolist()] == [[1, 2], [0, 3]]
    assert fusion.top_k_columns(s, 10).shape == (2, 4)


def test_fitted_weight_is_zero_when_the_bonus_hurts_and_positive_when_it_helps():
    learned = np.array([[0.50, 0.52, 0.0], [0.0, 0.50, 0.51], [0.3, 0.0, 0.2]])   # rows 0, 1 rank their answer 2nd
    helps = np.zeros_like(learned)
    helps[0, 0] = helps[1, 1] = 1.0
    assert fusion.fit_claims_weight(learned, helps) > 0.02
    hurts = np.zeros_like(learned)
    hurts[2, 0], hurts[2, 1] = 0.0, 1.0
    hurts[2, 2] = 0.0
    learned_ok = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.1, 0.3]])
    assert fusion.fit_claims_weight(learned_ok, hurts) == 0.0


def test_pool_claims_checks_its_options():
    from molret.ranking.ensemble_engine import EnsembleOptions
    with pytest.raises(MolretError, match="--claims-top-k"):
        fusion.check_claims(0)
    with pytest.raises(MolretError, match="--data-dir"):   # a model file is no longer refused: the next check
        fusion.pool_claims(EnsembleOptions(claims_top_k=5, save_model="m.pt"), np.eye(2), 1, None, None)
    with pytest.raises(MolretError, match="--data-dir"):
        fusion.pool_claims(EnsembleOptions(claims_top_k=5), np.eye(2), 1, None, None)


# ------------------------------------------------------------ ensemble_method.py --claims

def test_cli_claims_flag_reaches_the_options_and_is_range_checked(capsys):
    from molret.cli.ensemble import build_parser, options_from_args
    parser = build_parser()
    assert options_from_args(parser.parse_args(["--members", "a"])).claims_top_k == 0
    assert options_from_args(parser.parse_args(["--members", "a", "--claims"])).claims_top_k == 50
    assert options_from_args(parser.parse_args(["--members", "a", "--claims", "--claims-top-k", "7"])).claims_top_k == 7
    for bad in ("0", "x"):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["--members", "a", "--claims-top-k", bad])
        assert e.value.code == 2
        assert "argument --claims-top-k" in capsys.readouterr().err


def test_cli_claims_need_a_pool(tmp_path, capsys):
    import ensemble_method
    np.save(tmp_path / "sim.npy", np.eye(3))
    with pytest.raises(SystemExit) as e:
        ensemble_method.main(["--members", str(tmp_path / "sim.npy"), "--claims"])
    assert e.value.code == 2
    assert "--claims needs members with val and test embeddings" in capsys.readouterr().err


def test_engine_fuses_the_claims_bonus_before_reranking_and_into_the_submission(tmp_path, monkeypatch):
    """The engine's wiring, with the scorer replaced by a bonus that names every query's answer: the pool
    report and the test submission both follow it."""
    from test_ensemble import _pool_members
    from molret.evaluation.submission import read_submission
    from molret.ranking import ensemble_engine
    members = _pool_members(tmp_path, n=6)
    seen = {}

    def fake_pool_claims(opts, square, n_val, inputs, data_dir, names=None):
        seen["top_k"], seen["shape"] = opts.claims_top_k, square.shape
        bonus = 10.0 * np.eye(len(square), dtype=np.float32)
        return square + bonus, bonus, {"weight": 10.0}, None
    monkeypatch.setattr(ensemble_engine, "pool_claims", fake_pool_claims)
    monkeypatch.setattr(ensemble_engine, "pool_inputs", lambda *a: (None,) * 6)
    res = ensemble_engine.run_ensemble(ensemble_engine.EnsembleOptions(
        members=members, rerank="sinkhorn", claims_top_k=5, data_dir=str(tmp_path), out=str(tmp_path / "s.csv")))
    assert seen == {"top_k": 5, "shape": (12, 12)}
    assert res.metrics["pool"]["ensemble"]["pool_lrap"] == 1.0 and res.metrics["pool"]["claims"]["weight"] == 10.0
    sub = read_submission(tmp_path / "s.csv")
    assert (np.argmax(sub, axis=1) == np.arange(6)).all()
