"""Names 2.0: other forms of a named structure (charge states, tautomers,
cited conjugate acids/bases), dictionaries beside OPSIN, their order, and the
missing-package path. Hand-written SMILES; no Java needed."""

import numpy as np
import pytest

from molret.names import sources as S
from molret.names.tables import TABLE_NAMES
from molret.names import queries as Q
from molret.names import resolve as N
from molret.data.graph_store import GraphSource, build_graph_store
from molret.ranking.name_fusion import FEATURES, NameFeatures, Candidates, fit_weights, name_features
from molret.chem.smiles_graph import graph_to_text, smiles_to_graph


@pytest.fixture(autouse=True)
def no_name_tables():
    """The tables beside the chemicals package read as not installed (tests/test_name_tables.py tests them):
    these tests' dictionaries are the ones they write. Its own MonkeyPatch: a test's monkeypatch.undo()
    keeps it."""
    patch = pytest.MonkeyPatch()
    patch.setattr(S, "_TABLES", dict.fromkeys(TABLE_NAMES))
    yield
    patch.undo()


def key(smiles):
    return N.structure_from_smiles("x", smiles).key


def form_keys(smiles, kinds="all"):
    return {f.key for f in N.structure_forms_of(N.structure_from_smiles("x", smiles), kinds)}


# ------------------------------------------------------------------ forms of one structure

@pytest.mark.parametrize("neutral,charged", [
    ("CC(=O)O", "CC(=O)[O-]"),                                                  # acetic acid / acetate
    ("N[C@@H](CC(=O)O)C(=O)O", "[NH3+][C@@H](CC([O-])=O)C([O-])=O"),           # L-aspartate(1-)
    ("N[C@@H](CC(=O)O)C(=O)O", "N[C@@H](CC([O-])=O)C([O-])=O"),                # L-aspartate(2-)
    ("NCC(=O)O", "[NH3+]CC(=O)[O-]"),                                           # glycine zwitterion
    ("NCCc1ccc(O)c(O)c1", "[NH3+]CCc1ccc(O)c(O)c1"),                            # dopaminium(1+)
    ("Nc1ncnc2c1ncn2[C@@H]1O[C@H](COP(=O)(O)O)[C@@H](O)[C@H]1O",
     "Nc1ncnc2c1ncn2[C@@H]1O[C@H](COP([O-])([O-])=O)[C@@H](O)[C@H]1O"),       # AMP(2-)
    ("OS(=O)(=O)CCN", "[O-]S(=O)(=O)CC[NH3+]"),                                 # taurine zwitterion
    ("CCCCCCCC(=O)O", "CCCCCCCC([O-])=O"),                                      # octanoate
])
def test_charged_species_are_forms_of_their_neutral_parent(neutral, charged):
    assert key(charged) != key(neutral)
    assert key(charged) in form_keys(neutral, "charge")


@pytest.mark.parametrize("charged,neutral", [("CC(=O)[O-]", "CC(=O)O"), ("[NH3+]CC(=O)[O-]", "NCC(=O)O"),
                                             ("C[N+](C)(C)CCO", None)])
def test_the_neutralised_form_of_a_charged_structure(charged, neutral):
    forms = N.structure_forms_of(N.structure_from_smiles("x", charged))
    if neutral is None:      # a quaternary ammonium has no neutral form: nothing wrong comes out
        assert all(f.charge == 1 for f in forms if f.kind == "neutral")
    else:
        assert key(neutral) in {f.key for f in forms if f.kind == "neutral"}


@pytest.mark.parametrize("a,b", [("Oc1ccccn1", "O=c1cccc[nH]1"),              # 2-hydroxypyridine / 2-pyridone
                                 ("O=c1cc[nH]c(=O)[nH]1", "Oc1ccnc(O)n1"),     # uracil lactam / lactim
                                 ("CC(=O)CC(C)=O", "CC(O)=CC(C)=O")])          # acetylacetone keto / enol
def test_tautomers_are_forms_both_ways(a, b):
    assert key(a) != key(b)
    assert key(b) in form_keys(a, "tautomer")
    assert key(a) in form_keys(b, "tautomer")


def test_forms_do_not_invent_other_molecules():
    assert key("CCO") not in form_keys("CC(=O)O")
    assert form_keys("c1ccccc1") == set()                       # benzene: no acid, base or tautomer
    assert key("CC(=O)[O-]") not in form_keys("CC(=O)O", "tautomer")   # kinds are kept apart
    assert N.structure_forms_of(N.Structure("g", "", "k", np.zeros(0, np.uint64), "pairs")) == []  # no SMILES


def test_forms_carry_charge_and_zwitterion():
    forms = {f.key: f for f in N.structure_forms_of(N.structure_from_smiles("glycine", "NCC(=O)O"))}
    z = forms[key("[NH3+]CC(=O)[O-]")]
    assert z.zwitterion and z.charge == 0 and z.kind == "charge"
    assert forms[key("NCC(=O)[O-]")].charge == -1


# ------------------------------------------------------------------ queries: charge words and relations

def _store(tmp_path, smiles_by_id):
    for cid, smi in smiles_by_id.items():
        edge_index, identifiers = smiles_to_graph(smi)
        (tmp_path / f"{cid}.graph").write_text(graph_to_text(edge_index, identifiers))
    return build_graph_store(list(smiles_by_id), GraphSource(tmp_path), progress=False)


def test_charge_hints():
    h = N.charge_hint("L-aspartate(2-) is a dicarboxylic acid dianion.", "L-aspartate(2-)")
    assert h.charge == -2
    assert N.charge_hint("X is an amino acid zwitterion.", "X").zwitterion
    assert N.charge_hint("X is a dicarboxylic acid dianion. It is a conjugate base of Y.", "X").relation == "base"
    assert N.charge_hint("X is an organic cation; major species at pH 7.3.", "X").charge == 1
    assert N.charge_hint("X is an organic anion; major species at pH 7.3.", "X").ph
    assert not N.charge_hint("ethanol is a primary alcohol.", "ethanol")


ASPARTIC = "N[C@@H](CC(=O)O)C(=O)O"


def test_charge_words_prefer_the_right_form(tmp_path):
    # a dictionary knows only the neutral acid; the query names the dianion
    store = _store(tmp_path, {"neutral": ASPARTIC, "dianion": "NC(CC([O-])=O)C([O-])=O",
                              "monoanion": "[NH3+]C(CC([O-])=O)C([O-])=O", "other": "CCO"})
    cands = Candidates.from_stores([store])
    source = S.SmilesDictionary({"l-aspartic acid": ASPARTIC}, "test")
    qs = Q.resolve_queries(["L-aspartate(2-) is a dicarboxylic acid dianion. It is a conjugate base of a "
                            "L-aspartate(1-).", "L-aspartic acid is an amino acid."], None, sources=[source])
    assert qs[0].subject is not None and qs[0].subject.kind == "spelling"   # "(2-)" dropped, "-ate" -> "-ic acid"
    feats = name_features(qs, cands)
    form = feats.values[FEATURES.index("form")]
    assert form[0].tolist() == [0.0, 1.0, 0.5, 0.0]     # the dianion fits "(2-)", the zwitterion less
    assert form[1].tolist() == [0.0, 1.0, 1.0, 0.0]     # no charge words: every form alike
    assert feats.values[0, 1].tolist() == [1.0, 0.0, 0.0, 0.0]   # the identity stays the neutral acid


def test_conjugate_base_of_a_cited_structure_names_the_molecule():
    # nobody knows the subject's name, but its conjugate acid is known: acetate is a form of acetic acid
    source = S.SmilesDictionary({"acetic acid": "CC(=O)O"}, "test")
    q = Q.resolve_queries(["Frobnicate is a monocarboxylic acid anion. It is a conjugate base of an acetic acid."],
                          None, sources=[source])[0]
    assert q.subject is None and q.names.relatives == (("conjugate base of", "acetic acid"),)
    assert key("CC(=O)[O-]") in q.form_keys and key("CC(=O)O") not in q.form_keys
    assert all(f.kind == "relation" for f in q.forms)
    acetate = next(f for f in q.forms if f.key == key("CC(=O)[O-]"))
    assert q.preferred(acetate) and not q.preferred(next(f for f in q.forms if f.charge == 0))
    # "derives from" is not a relation of identity
    q = Q.resolve_queries(["Frobnicate is an ester. It derives from an acetic acid."], None, sources=[source])[0]
    assert q.forms == [] and len(q.parents) == 1


def test_forms_none_is_the_old_behaviour():
    source = S.SmilesDictionary({"glycine": "NCC(=O)O"}, "test")
    q = Q.resolve_queries(["Glycine zwitterion is an amino acid zwitterion."], None, sources=[source], forms="none")[0]
    assert q.subject.key == key("NCC(=O)O") and q.forms == []
    q = Q.resolve_queries(["Glycine zwitterion is an amino acid zwitterion."], None, sources=[source])[0]
    z = key("[NH3+]CC(=O)[O-]")
    assert z in q.form_keys and q.preferred(next(f for f in q.forms if f.key == z))


def test_fit_weights_uses_the_form_feature():
    sim = np.array([[0.5, 0.9, 0.1], [0.1, 0.8, 0.2], [0.0, 0.1, 0.7]])
    values = np.zeros((len(FEATURES), 1, 3), np.float32)
    values[FEATURES.index("form"), 0, 0] = 1.0
    w = fit_weights(sim, NameFeatures(np.array([0]), values, 3))
    assert w["form"] > 0.3 and w["exact"] == 0.0


# ------------------------------------------------------------------ sources

def test_sources_in_order_and_spellings_after_every_source():
    first = S.SmilesDictionary({"x": "CCO", "y-ate": "CC(=O)[O-]"}, "first")
    second = S.SmilesDictionary({"x": "CCCO", "z": "CCN", "y-ic acid": "CC(=O)O"}, "second")
    got = N.resolve_names(["X", "Z", "y-ate", "unknownium"], [first, second])
    assert got["X"].key == key("CCO") and got["X"].source == "first"        # case-insensitive, the first wins
    assert got["Z"].key == key("CCN") and got["Z"].source == "second"
    assert got["y-ate"].source == "first" and got["y-ate"].kind == "name"   # the name itself before spellings
    assert got["unknownium"] is None                                         # a name no source knows


def test_pairs_dictionary_gives_the_pairs_graph(tmp_path):
    store = _store(tmp_path, {"1": "CCO", "2": "CC(=O)O"})
    pairs = S.PairsDictionary(["Ethanol is a primary alcohol.", "The molecule is an acid."], store)
    assert len(pairs) == 1                                     # "The molecule" names nothing
    (s,) = pairs.lookup(["ETHANOL"])
    assert s.key == Candidates.from_stores([store]).keys[0] and s.source == "pairs"
    assert set(s.identifiers.tolist()) == set(N.structure_from_smiles("e", "CCO").identifiers.tolist())
    assert pairs.lookup(["acetic acid"]) == [None]
    q = Q.resolve_queries(["Ethanol is a primary alcohol."], None, sources=[pairs])[0]
    assert q.subject.key == key("CCO") and q.forms == []     # a graph without SMILES has no forms


def test_default_order_is_opsin_glycans_chemicals_pairs(monkeypatch):
    monkeypatch.setattr(S, "_SHARED", {"chemicals": S.SmilesDictionary({}, "chemicals")})

    class FakeOpsin:
        def resolve(self, names):
            return [None for _ in names]
    pairs = S.PairsDictionary.__new__(S.PairsDictionary)
    pairs.table = {}
    # (the tables are off in this module) the mixtures source comes last, built on the others
    order = ["opsin", "glycans", "chemicals", "pairs", "mixtures"]
    assert [s.name for s in S.default_sources(FakeOpsin(), pairs)] == order
    assert [s.name for s in S.default_sources(None)] == ["glycans", "chemicals", "mixtures"]
    assert [f[0] for f in S.source_fingerprints(FakeOpsin(), pairs)] == order


HAVE_CHEMICALS = S.find_chemicals_table() is not None


@pytest.mark.skipif(not HAVE_CHEMICALS, reason="the chemicals package is not installed")
def test_chemicals_dictionary_hit():
    table = S.shared_chemicals()
    assert len(table) > 500_000
    menthol, nothing = table.lookup(["Menthol", "flibbertigibbetane"])   # a trivial name OPSIN cannot parse
    assert menthol.key == key("CC(C)C1CCC(C)CC1O") and menthol.source == "chemicals"
    assert nothing is None
    q = Q.resolve_queries(["Menthol is a p-menthane monoterpenoid."], None, sources=[table])[0]
    assert q.subject.key == menthol.key


def test_missing_chemicals_package_is_one_warning(monkeypatch, molret_warnings):
    monkeypatch.setattr(S, "_SHARED", {})
    monkeypatch.setattr(S.importlib.util, "find_spec", lambda name: None)
    assert S.shared_chemicals() is None and S.shared_chemicals() is None
    assert S.default_sources(None) == []
    q = Q.resolve_queries(["ethanol is a primary alcohol."], None)[0]
    assert q.names.subject == "ethanol" and q.subject is None
    assert len(molret_warnings) == 1 and "chemicals" in molret_warnings[0].getMessage()


def test_read_chemicals_table_prefers_common_names(tmp_path):
    f = tmp_path / "t.tsv"
    rows = ["1\tc\tf\t1\tCCO\ti\tk\tethanol\tEthanol\talcohol",
            "2\tc\tf\t1\tCO\ti\tk\tmethanol\tMethanol\twood spirit\talcohol",
            "3\tc\tf\t1\tCCCO\ti\tk\tpropan-1-ol\tn-propanol\talcohol"]
    f.write_text("\n".join(rows) + "\n")
    table = S.read_chemicals_table(f)
    assert table["ethanol"] == "CCO" and table["wood spirit"] == "CO" and table["propan-1-ol"] == "CCCO"
    assert table["alcohol"] == "CCO"          # synonyms: the first compound listing it
    rows[2] = "3\tc\tf\t1\tCCCO\ti\tk\tpropan-1-ol\talcohol\tethanol"
    f.write_text("\n".join(rows) + "\n")
    assert S.read_chemicals_table(f)["alcohol"] == "CCCO"   # a common name beats a synonym


def test_forms_only_where_a_candidate_has_the_size():
    source = S.SmilesDictionary({"glycine": "NCC(=O)O"}, "test")
    query = ["Glycine zwitterion is an amino acid zwitterion."]
    assert Q.key_size(key("NCC(=O)O")) == (5, 8)               # 5 heavy atoms, 4 bonds both ways
    q = Q.resolve_queries(query, None, sources=[source], candidate_keys=[key("CCO"), key("c1ccccc1")])[0]
    assert q.subject is not None and q.forms == []             # no candidate of glycine's size: no forms
    q = Q.resolve_queries(query, None, sources=[source], candidate_keys=[key("[NH3+]CC(=O)[O-]")])[0]
    assert key("[NH3+]CC(=O)[O-]") in q.form_keys


# ------------------------------------------------------------------ cached batches, pool and search wiring

def _plain(structures):
    """QueryStructures as plain values (a Structure's identifiers as a list, dtype included)."""
    def st(s):
        return None if s is None else (s.name, s.smiles, s.key, s.source, s.kind, s.charge, s.zwitterion,
                                       s.identifiers.dtype.str, s.identifiers.tolist())
    return [(q.names, q.hint, q.relative_charge, st(q.subject), [st(s) for s in q.enantiomers],
             [st(s) for s in q.parents], [st(s) for s in q.forms]) for q in structures]


def _data_dir(tmp_path, pairs: dict):
    """A challenge-layout folder: raw/<cid>.graph from SMILES and train.tsv (cid -> (SMILES, text))."""
    raw = tmp_path / "raw"
    raw.mkdir(parents=True)
    for cid, (smi, _) in pairs.items():
        edge_index, identifiers = smiles_to_graph(smi)
        (raw / f"{cid}.graph").write_text(graph_to_text(edge_index, identifiers))
    (tmp_path / "train.tsv").write_text("".join(f"{cid}\t{text}\n" for cid, (_, text) in pairs.items()))
    return tmp_path


CACHED_BATCH = ["L-aspartate(2-) is a dicarboxylic acid dianion. It is a conjugate base of a L-aspartate(1-).",
                "Glycine zwitterion is an amino acid zwitterion. It is a tautomer of a glycine.",
                "Frobnicol is an alcohol. It derives from an acetic acid and an ethanol.",
                "D-alanine is an amino acid. It is an enantiomer of a L-alanine.",
                "The molecule is a steroid."]


def test_cached_batch_equals_the_fresh_one_and_a_stale_key_rebuilds(tmp_path, monkeypatch, molret_warnings):
    from molret.names import cache as NC
    chem = S.SmilesDictionary({"l-aspartic acid": ASPARTIC, "glycine": "NCC(=O)O", "acetic acid": "CC(=O)O",
                               "ethanol": "CCO", "l-alanine": "C[C@H](N)C(=O)O"}, "chemicals")
    monkeypatch.setattr(S, "_SHARED", {"chemicals": chem})
    pairs = S.PairsDictionary(["Frobnicol is an alcohol."], _store(tmp_path, {"9": "CCCO"}))
    cands = [key("NC(CC([O-])=O)C([O-])=O"), key("[NH3+]CC(=O)[O-]"), key("CCCO"), key("CC(=O)O")]
    fresh = Q.resolve_queries(CACHED_BATCH, None, sources=[chem, pairs], candidate_keys=cands)
    cache_dir = tmp_path / "cache"
    first = NC.resolve_queries_cached(CACHED_BATCH, None, pairs, candidate_keys=cands, cache_dir=cache_dir)
    assert _plain(first) == _plain(fresh)
    assert first[2].subject.source == "pairs" and len(first[2].parents) == 2 and first[3].enantiomers
    assert first[0].forms and first[0].hint.charge == -2 and first[1].forms and first[4].subject is None
    assert len(list(cache_dir.glob("names-*.npz"))) == 1
    # a hit resolves nothing (no source is even built) and gives the same structures
    monkeypatch.setattr(S, "default_sources", lambda *a, **k: pytest.fail("the cache was not used"))
    hit = NC.resolve_queries_cached(CACHED_BATCH, None, pairs, candidate_keys=cands, cache_dir=cache_dir)
    assert _plain(hit) == _plain(fresh)
    assert hit[0].names.relatives == (("conjugate base of", "L-aspartate(1-)"),)   # tuples, as resolved
    monkeypatch.undo()
    # another source content (the chemicals table learnt a name): stale, one warning line, rebuilt
    chem2 = S.SmilesDictionary(dict(chem.table, frobnicol="CCCCO"), "chemicals")
    monkeypatch.setattr(S, "_SHARED", {"chemicals": chem2})
    molret_warnings.clear()
    rebuilt = NC.resolve_queries_cached(CACHED_BATCH, None, pairs, candidate_keys=cands, cache_dir=cache_dir)
    assert len(molret_warnings) == 1 and "stale" in molret_warnings[0].getMessage()
    assert rebuilt[2].subject.source == "chemicals" and rebuilt[2].subject.key == key("CCCCO")
    assert _plain(NC.resolve_queries_cached(CACHED_BATCH, None, pairs, candidate_keys=cands,
                                            cache_dir=cache_dir)) == _plain(rebuilt)
    # other forms settings or candidates are other keys
    assert NC.batch_key(CACHED_BATCH, [], "all", cands) != NC.batch_key(CACHED_BATCH, [], "none", cands)
    assert NC.batch_key(CACHED_BATCH, [], "all", cands) != NC.batch_key(CACHED_BATCH, [], "all", cands[:2])
    monkeypatch.setattr(S, "_SHARED", {"chemicals": None})
    assert NC.resolve_queries_cached(CACHED_BATCH, None, None, cache_dir=cache_dir) is None   # no source at all


def test_pool_name_features_use_the_pairs_of_the_data_dir(tmp_path, monkeypatch, molret_warnings):
    from molret.names import opsin as O
    from molret.evaluation.pool import pool_name_features
    monkeypatch.setattr(O, "_SHARED", {"opsin": None})
    monkeypatch.setattr(S, "_SHARED", {"chemicals": None})
    data = _data_dir(tmp_path / "data", {"1": ("CCCO", "Frobnicol is an alcohol."),
                                         "2": ("CC(=O)O", "Acetic acid is an acid.")})
    val = _store(tmp_path, {"10": "CCO", "11": "CCCO"})
    test = _store(tmp_path, {"12": "CCCCO"})
    val_texts, test_texts = ["Ethanol is an alcohol.", "Frobnicol is a propanol."], ["Butanol is an alcohol."]
    assert pool_name_features(val_texts, test_texts, val, test) == (None, {})         # no source at all
    names, stats = pool_name_features(val_texts, test_texts, val, test, data_dir=data, cache_dir=tmp_path / "c")
    assert names.rows.tolist() == [1]                                   # only Frobnicol: the training pair's
    assert names.values[FEATURES.index("exact"), 0].tolist() == [0.0, 1.0, 0.0]
    assert stats["subject_resolved"] == 1 and stats["exact_true_graph"] == 1
    # the whole train.tsv, and a folder without one: one warning line, the other sources still resolve
    monkeypatch.setattr(S, "_SHARED", {"chemicals": S.SmilesDictionary({"ethanol": "CCO"}, "chemicals")})
    (tmp_path / "empty").mkdir()
    molret_warnings.clear()
    names, stats = pool_name_features(val_texts, test_texts, val, test, data_dir=tmp_path / "empty",
                                      cache_dir=tmp_path / "c2")
    assert len(molret_warnings) == 1 and "no pairs dictionary" in molret_warnings[0].getMessage()
    assert names.rows.tolist() == [0] and names.values[0, 0].tolist() == [1.0, 0.0, 0.0]


def test_search_names_without_opsin_use_the_dictionaries(tmp_path, monkeypatch):
    from types import SimpleNamespace
    from molret.names import opsin as O
    from molret.search.engine import LibrarySearch
    monkeypatch.setattr(O, "_SHARED", {"opsin": None})
    monkeypatch.setattr(S, "_SHARED", {"chemicals": S.SmilesDictionary({"ethanol": "CCO"}, "chemicals")})
    data = _data_dir(tmp_path / "data", {"1": ("CCCO", "Frobnicol is an alcohol.")})
    store = _store(tmp_path, {"10": "CCO", "11": "CC(=O)O", "12": "CCCO"})
    lib = SimpleNamespace(library=SimpleNamespace(ids=["10", "11", "12"], smiles=["CCO", "CC(=O)O", "CCCO"],
                                                  smiles_decoded=False, graphs=store),
                          embeddings=np.eye(3, 4, dtype=np.float32))
    embedder = SimpleNamespace(data_dir=str(data), device=None)   # the checkpoint's data folder
    engine = LibrarySearch(embedder, lib, "numpy")
    queries, emb = ["Ethanol is an alcohol.", "Frobnicol is an alcohol."], np.ones((2, 4), np.float32)
    base = engine.fused_scores(queries, emb)
    exact_only = {"exact": 1.0, "subject": 0.0, "parent": 0.0, "form": 0.0}
    assert engine.enable_names(exact_only, cache_dir=tmp_path / "c")              # no Java: the dictionaries
    assert (engine.fused_scores(queries, emb) - base).round(6).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert engine.enable_names(exact_only, training_pairs=False)                  # chemicals alone
    assert (engine.fused_scores(queries, emb) - base).round(6).tolist() == [[1, 0, 0], [0, 0, 0]]
    engine.names = None
    monkeypatch.setattr(S, "_SHARED", {"chemicals": None})
    assert not engine.enable_names(exact_only, training_pairs=False) and engine.names is None
