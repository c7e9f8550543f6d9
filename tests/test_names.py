"""Names in queries: finding them, OPSIN resolution, graphs, fusion with the
learned scores, and the pool metrics they are judged by."""
import shutil

import numpy as np
import pytest

from molret.names import queries as Q
from molret.names import resolve as N
from molret.names.variants import acid_name
from molret.names import opsin as O
from molret.data.graph_store import GraphSource, build_graph_store
from molret.evaluation.pool import final_report, pool_metrics, pool_metrics_of, pool_similarity
from molret.names.sources import OpsinSource
from molret.ranking.name_fusion import FEATURES, Candidates, NameFeatures, fit_weights, fuse, name_features
from molret.chem.smiles_graph import graph_to_text, smiles_to_graph

HAVE_OPSIN = shutil.which("java") is not None and O.find_opsin_jar() is not None
needs_opsin = pytest.mark.skipif(not HAVE_OPSIN, reason="no Java runtime or py2opsin here (.ci/run installs both)")


# ------------------------------------------------------------------ finding names

def test_subject_and_cited_names():
    q = ("2-hydroxybutanoic acid is a 2-hydroxy fatty acid that is butyric acid substituted by a hydroxy group at "
         "position 2. It has a role as a human metabolite. It derives from a butyric acid. It is a conjugate acid "
         "of a 2-hydroxybutanoate.")
    n = N.extract_names(q)
    assert n.subject == "2-hydroxybutanoic acid"
    assert n.parents == ("butyric acid", "2-hydroxybutanoate")
    assert "human metabolite" not in n.all()  # "has a role as" names no structure


def test_in_which_enantiomer_and_lists():
    q = ("Beta-D-Arap-(1->2)-alpha-D-Manp is a disaccharide that is alpha-D-mannopyranose in which the hydroxy "
         "group at position 2 has been converted. It is an enantiomer of a L-lactic acid. It derives from a "
         "hydride of a hexane and a pentane.")
    n = N.extract_names(q)
    assert n.subject == "Beta-D-Arap-(1->2)-alpha-D-Manp"
    assert n.enantiomers == ("L-lactic acid",)
    assert n.parents == ("hexane", "pentane", "alpha-D-mannopyranose")


def test_query_without_names():
    assert N.extract_names("a steroid ester with a long chain").all() == []
    assert N.extract_names("The molecule is a steroid ester.").subject is None
    assert N.extract_names("").all() == []


# ------------------------------------------------------------------ graph identity

def test_graph_key_ignores_atom_order_and_sees_bonds():
    ids = ["10", "20", "30"]
    chain = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])           # 10-20-30
    renumbered = np.array([[2, 1, 1, 0], [1, 2, 0, 1]])      # same bonds, listed from the other end
    other = np.array([[0, 2, 2, 1], [2, 0, 1, 2]])           # 10-30-20: same atoms, other bonds
    assert N.graph_key(ids, chain) == N.graph_key(ids, renumbered)
    assert N.graph_key(ids, chain) != N.graph_key(ids, other)
    assert N.graph_key(["30", "20", "10"], np.array([[2, 1, 1, 0], [1, 2, 0, 1]])) == N.graph_key(ids, chain)


def _store(tmp_path, smiles_by_id):
    for cid, smi in smiles_by_id.items():
        edge_index, identifiers = smiles_to_graph(smi)
        (tmp_path / f"{cid}.graph").write_text(graph_to_text(edge_index, identifiers))
    return build_graph_store(list(smiles_by_id), GraphSource(tmp_path), progress=False)


def test_structure_key_matches_candidate_graph(tmp_path):
    store = _store(tmp_path, {"1": "CCO", "2": "CC(C)O", "3": "OCC"})
    cands = Candidates.from_stores([store])
    s = N.structure_from_smiles("ethanol", "C(C)O")
    assert cands.keys[0] == s.key == cands.keys[2]      # the same molecule written two ways
    assert cands.keys[1] != s.key
    assert N.structure_from_smiles("bad", "C1CC") is None  # RDKit refuses it: skipped, no exception


def test_tanimoto_by_hand(tmp_path):
    store = _store(tmp_path, {"a": "CCO", "b": "CCCC"})
    cands = Candidates.from_stores([store])
    ethanol = N.structure_from_smiles("ethanol", "CCO").identifiers
    sim = cands.tanimoto([ethanol])
    assert sim.shape == (1, 2)
    assert sim[0, 0] == pytest.approx(1.0)
    butane = set(int(i) for i in N.structure_from_smiles("butane", "CCCC").identifiers)
    e = set(int(i) for i in ethanol)
    assert sim[0, 1] == pytest.approx(len(e & butane) / len(e | butane))


# ------------------------------------------------------------------ fusion

def _features(tmp_path):
    store = _store(tmp_path, {"a": "CCO", "b": "CCCC", "c": "CC(=O)O"})
    cands = Candidates.from_stores([store])
    qs = [N.QueryStructures(N.QueryNames("ethanol"), subject=N.structure_from_smiles("ethanol", "CCO")),
          N.QueryStructures(N.QueryNames()),
          N.QueryStructures(N.QueryNames(None, (), ("acetic acid",)),
                            parents=[N.structure_from_smiles("acetic acid", "CC(=O)O")])]
    return name_features(qs, cands)


def test_zero_weights_give_exactly_the_learned_scores(tmp_path):
    feats = _features(tmp_path)
    learned = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    assert np.array_equal(fuse(learned, feats, {f: 0.0 for f in FEATURES}), learned.astype(np.float64))


def test_features_and_fusion_by_hand(tmp_path):
    feats = _features(tmp_path)
    assert feats.rows.tolist() == [0, 2]                     # query 1 names nothing
    assert feats.values[0].tolist()[0] == [1.0, 0.0, 0.0]    # exact: ethanol is candidate a
    assert feats.values[2, 1, 2] == pytest.approx(1.0)        # parent acetic acid is candidate c
    learned = np.zeros((3, 3))
    fused = fuse(learned, feats, {"exact": 2.0, "subject": 0.0, "parent": 0.5})
    assert fused[0].tolist() == [2.0, 0.0, 0.0]
    assert fused[1].tolist() == [0.0, 0.0, 0.0]               # learned row unchanged
    assert fused[2, 2] == pytest.approx(0.5)


def test_fit_weights_finds_the_helpful_feature():
    # query 0's answer (column 0) is second by the learned score; the exact feature points at it
    sim = np.array([[0.5, 0.9, 0.1], [0.1, 0.8, 0.2], [0.0, 0.1, 0.7]])
    values = np.zeros((len(FEATURES), 1, 3), np.float32)
    values[0, 0, 0] = 1.0
    feats = NameFeatures(np.array([0]), values, 3)
    w = fit_weights(sim, feats)
    assert w["exact"] > 0.4
    assert np.argmax(fuse(sim, feats, w)[0]) == 0
    assert fit_weights(sim, NameFeatures(np.zeros(0, np.int64), np.zeros((3, 0, 3), np.float32), 3)) == \
        {f: 0.0 for f in FEATURES}


# ------------------------------------------------------------------ pool metrics

def test_pool_metrics_by_hand():
    # 2 val queries/molecules, 1 test molecule as a distractor (unit vectors in 2-D)
    val_text = np.array([[1.0, 0.0], [0.0, 1.0]])
    val_graph = np.array([[0.8, 0.6], [0.6, 0.8]])
    test_graph = np.array([[0.0, 1.0]])
    m = pool_metrics(val_text, val_graph, test_graph)
    # query 0: scores 0.8 (true), 0.6, 0.0 -> rank 1; query 1: 0.6, 0.8 (true), 1.0 -> rank 2
    assert m["pool_lrap"] == pytest.approx((1 + 1 / 2) / 2)
    assert m["pool_hits1"] == pytest.approx(0.5)
    assert m["pool_hits10"] == pytest.approx(1.0)
    square = pool_similarity(val_text, val_graph, np.array([[0.0, 1.0]]), test_graph)
    assert square.shape == (3, 3)
    assert pool_metrics_of(square, 2) == m


def test_reranked_pool_is_scored_on_val_rows():
    # the test query claims the distractor, so re-ranking frees query 1's answer
    val_text = np.array([[1.0, 0.0], [0.0, 1.0]])
    val_graph = np.array([[0.8, 0.6], [0.6, 0.8]])
    test_graph = np.array([[0.0, 1.0]])
    test_text = np.array([[-0.6, 0.8]])  # scores 0, 0.28, 0.8: only the distractor suits it
    m = pool_metrics(val_text, val_graph, test_graph, test_text, "sinkhorn", 0.05)
    assert m["pool_lrap"] == pytest.approx(0.75)
    assert m["pool_lrap_reranked"] == pytest.approx(1.0)


def test_final_report_scores_only_the_rows_asked():
    # 2 val rows + 1 test row; val row 0 finds its molecule first, val row 1 ranks it second
    square = np.array([[0.9, 0.1, 0.0],
                       [0.2, 0.5, 0.7],
                       [0.0, 0.1, 0.9]])
    report, _ = final_report(square, 2, rows=np.array([1]))
    assert report["pool_lrap"] == pytest.approx(0.5) and report["pool_hits1"] == 0.0
    assert final_report(square, 2, rows=np.array([0]))[0]["pool_lrap"] == pytest.approx(1.0)
    assert final_report(square, 2)[0]["pool_lrap"] == pytest.approx(0.75)
    # re-ranking covers the whole square (the test query keeps column 2), scored on row 1 alone
    assert final_report(square, 2, "sinkhorn", 0.05, rows=np.array([1]))[0]["pool_lrap_reranked"] == pytest.approx(1.0)


def test_final_report_without_names_has_no_names_section():
    sim = np.eye(4) + 0.01
    report, weights = final_report(sim, 2)
    assert weights is None and "names" not in report and report["pool_lrap"] == pytest.approx(1.0)


# ------------------------------------------------------------------ OPSIN

def test_java_missing_gives_learned_only_with_one_warning(monkeypatch, molret_warnings):
    monkeypatch.setattr(O, "_SHARED", {})
    monkeypatch.setattr(O.shutil, "which", lambda name: None)
    assert O.shared_opsin() is None
    assert O.shared_opsin() is None          # asked twice, said once
    warnings = molret_warnings
    assert len(warnings) == 1 and "Java" in warnings[0].getMessage()
    qs = Q.resolve_queries(["ethanol is a primary alcohol."], None, sources=[])
    assert qs[0].names.subject == "ethanol" and qs[0].subject is None
    with pytest.raises(O.OpsinUnavailable):
        O.Opsin(java="no-such-java-binary")


def _fake_java(tmp_path, script: str) -> str:
    """A "java" that ignores its arguments and runs ``script`` (sh) on OPSIN's pipes."""
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\n" + script)
    java.chmod(0o755)
    (tmp_path / "opsin.jar").write_text("")
    return str(java)


def test_opsin_start_gets_longer_than_a_name(tmp_path):
    # the first answer comes after 1 s: over the per-name timeout, within the start's
    java = _fake_java(tmp_path, 'sleep 1\nwhile read name; do echo "C$name"; done\n')
    parser = O.Opsin(jar=tmp_path / "opsin.jar", java=java, timeout=0.3, start_timeout=10)
    assert parser.resolve(["a", "b"]) == ["Ca", "Cb"]
    parser.close()
    # a pause of 1 s after the first answer stops it
    java = _fake_java(tmp_path, 'read name; echo "C$name"; sleep 1\nwhile read name; do echo "C$name"; done\n')
    parser = O.Opsin(jar=tmp_path / "opsin.jar", java=java, timeout=0.3, start_timeout=10)
    with pytest.raises(O.OpsinUnavailable, match="stopped answering.*'b'"):
        parser.resolve(["a", "b"])


def test_opsin_stopping_is_a_warning_not_a_crash(molret_warnings):
    class Broken:
        def resolve(self, names):
            raise O.OpsinUnavailable("OPSIN stopped answering")
    qs = Q.resolve_queries(["ethanol is a primary alcohol."], None, sources=[OpsinSource(Broken())])
    assert qs[0].subject is None
    assert [r.getMessage() for r in molret_warnings] == \
        ["--names opsin: OPSIN stopped answering; using the learned scores only"]


@pytest.fixture(scope="module")
def opsin():
    if not HAVE_OPSIN:
        pytest.skip("no Java runtime or py2opsin here (.ci/run installs both)")
    o = O.Opsin()
    yield o
    o.close()


@needs_opsin
@pytest.mark.parametrize("name,smiles", [("ethanol", "CCO"), ("2-hydroxybutanoic acid", "CCC(O)C(=O)O"),
                                         ("benzoic acid", "OC(=O)c1ccccc1"), ("propan-2-ol", "CC(C)O"),
                                         ("L-alanine", "C[C@H](N)C(=O)O")])
def test_opsin_names_match_the_graph_of_their_smiles(opsin, name, smiles):
    resolved = opsin.resolve([name])[0]
    assert resolved is not None
    assert N.structure_from_smiles(name, resolved).key == N.structure_from_smiles(name, smiles).key


@needs_opsin
def test_opsin_rejects_non_names_and_keeps_going(opsin):
    got = opsin.resolve(["flibbertigibbet", "human metabolite", "ethanol", "x\ny"])
    assert got[0] is None and got[1] is None and got[2] is not None and got[3] is None


@needs_opsin
def test_resolve_queries_end_to_end(opsin, tmp_path):
    qs = Q.resolve_queries(["Ethanol is a primary alcohol. It is a conjugate acid of an ethoxide.",
                            "Thiencarbazone is an N-sulfonylurea.", "a molecule with no name"], opsin,
                           sources=[OpsinSource(opsin)])
    assert qs[0].subject.key == N.structure_from_smiles("e", "CCO").key
    assert len(qs[0].parents) == 1                      # ethoxide resolves
    assert qs[1].subject is None                        # a trivial name OPSIN does not know: skipped
    assert qs[2].names.all() == [] and qs[2].subject is None


# ------------------------------------------------------------------ end to end on the challenge data

@needs_opsin
def test_names_end_to_end_on_shared_data(altegrad, tiny_text_model, tmp_path):
    """main.py --names opsin on real pairs: names resolved, the fusion weights
    fitted on val, the pool report with and without names, the submission
    fused; predictions.py reproduces it from the checkpoint; ensemble_method.py
    fuses names into an ensemble; a member of another val is refused."""
    import ensemble_method
    import predictions
    from tests.test_pipeline import run_main
    common = ["--data-dir", str(altegrad), "--cache-dir", str(tmp_path / "cache")]
    result = run_main([*common, "--text-model", tiny_text_model, "--conv", "gcn", "--epochs", "1",
                       "--max-train", "200", "--hidden-dim", "32", "--max-length", "48", "--batch-size", "32",
                       "--runs-dir", str(tmp_path), "--run-name", "n", "--names", "opsin", "--save-embeddings"])
    stats = result["names_stats"]
    assert stats["queries"] == 500 and stats["subject_resolved"] >= 100 and stats["exact_true_graph"] >= 100
    names = result["names"]
    assert names["weights"]["exact"] > 0                      # exact graph identity helps even a 1-epoch model
    assert names["pool_lrap"] > result["pool_lrap"] + 0.1
    pred = predictions.main(["--model", str(tmp_path / "n" / "best.pt"), *common, "--out", str(tmp_path / "p.csv")])
    assert pred["pool"]["names"]["weights"] == names["weights"]   # the checkpoint's --names and --rerank
    assert (tmp_path / "p.csv").read_bytes() == (tmp_path / "n" / "submission.csv").read_bytes()
    ens = ensemble_method.main(["--members", str(tmp_path / "n" / "embeddings"), *common, "--names", "opsin"])
    assert ens["pool"]["ensemble"]["names"]["pool_lrap"] == pytest.approx(names["pool_lrap"], abs=1e-4)
    with pytest.raises(SystemExit) as e:  # the members' molecules are not those of this data folder
        ensemble_method.main(["--members", str(tmp_path / "n" / "embeddings"), "--names", "opsin",
                              "--data-dir", str(tmp_path / "n")])
    assert e.value.code == 2


def test_acid_name_of_anions():
    assert acid_name("4-phospho-L-aspartate") == "4-phospho-L-aspartic acid"
    assert acid_name("L-aspartate(2-)") == "L-aspartic acid"
    assert acid_name("ethanol") is None


def test_subject_without_an_article_after_is():
    # ChEBI drops the article after some "is": the name ends at the first "is"
    q = "L-arabinonate is conjugate base of L-arabinonic acid. It is a hydroxy monocarboxylic acid anion."
    n = N.extract_names(q)
    assert n.subject == "L-arabinonate" and "L-arabinonic acid" in n.parents
    n = N.extract_names("Dopamine is catechol in which the hydrogen at position 4 is substituted by an aminoethyl "
                        "group. It has a role as a hormone.")
    assert n.subject == "Dopamine" and n.parents == ("catechol",)
    assert N.extract_names("It is formed by condensation.").subject is None


def test_name_variants_of_charges_species_peptides_and_anions():
    assert N.name_variants("Leu-Cys") == ["L-leucyl-L-cysteine"]
    assert N.name_variants("Gly-Gly-Asp") == ["glycyl-glycyl-L-aspartic acid"]
    assert N.name_variants("Leu-NH2") == []                   # not all codes
    assert N.name_variants("TMP(2-)") == ["TMP", "thymidine 5'-monophosphate"]
    assert N.name_variants("N-acetyl-L-2-aminoadipate(2-)") == [
        "N-acetyl-L-2-aminoadipate", "N-acetyl-L-2-aminoadipic acid",
        "N-acetyl-2-aminoadipate(2-)", "N-acetyl-2-aminoadipate", "N-acetyl-2-aminoadipic acid"]
    assert N.name_variants("D-4-hydroxyphenylglycine zwitterion") == ["D-4-hydroxyphenylglycine",
                                                                      "4-hydroxyphenylglycine zwitterion",
                                                                      "4-hydroxyphenylglycine"]
    assert N.name_variants("Diltiazem hydrochloride") == ["Diltiazem"]
    assert N.name_variants("4-phospho-L-aspartate") == ["4-phospho-L-aspartic acid", "4-phospho-aspartate",
                                                        "4-phospho-aspartic acid"]
    assert N.name_variants("ethanol") == []


def test_name_variants_of_charged_peptides_cations_and_stereo():
    assert N.name_variants("Gly-Glu(1-)")[0] == "glycyl-L-glutamic acid"      # the peptide under its charge
    assert "spermine" in N.name_variants("sperminium(4+)")                    # an -ium cation's base
    assert "N-methylputrescine" in N.name_variants("N-methylputrescinium(2+)")
    assert N.name_variants("(R,R)-tramadol(1+)")[-1] == "tramadol"            # stereo descriptors dropped
    assert N.name_variants("(+)-artemisinin") == ["artemisinin"]
    assert N.name_variants("D-xylo-phytosphingosine")[0] == "phytosphingosine"
    assert N.name_variants("Threo-3-methyl-L-aspartic acid") == ["3-methyl-aspartic acid"]   # capital at the start
    # E/Z with locants stay: without them the name would lose where its double bonds are
    assert N.name_variants("(9Z,12Z)-octadecadienoic acid") == []


def test_atom_names_give_their_element_and_isotope():
    from molret.names.variants import atom_smiles
    assert atom_smiles("Boron atom") == "[B]"
    assert atom_smiles("Potassium-39 atom") == "[39K]"
    assert atom_smiles("sulfur atom") == "[S]"
    assert atom_smiles("Frobnium atom") is None and atom_smiles("boron") is None


@needs_opsin
def test_unparsed_names_resolve_through_their_variants(opsin):
    from molret.chem.smiles_graph import smiles_to_graph
    q = Q.resolve_queries(["Leu-Cys is a dipeptide.", "Glycine zwitterion is an amino acid zwitterion.",
                           "Frobnicate(2-) is a dianion."], opsin, sources=[OpsinSource(opsin)])
    edges, ids = smiles_to_graph("CC(C)C[C@H](N)C(=O)N[C@@H](CS)C(=O)O")   # L-leucyl-L-cysteine
    assert q[0].subject is not None and q[0].subject.key == N.graph_key(ids, edges)
    edges, ids = smiles_to_graph("NCC(=O)O")                                 # glycine
    assert q[1].subject is not None and q[1].subject.key == N.graph_key(ids, edges)
    assert q[2].subject is None                                              # no variant parses
