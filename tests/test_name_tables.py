"""Names 3.0: the offline name -> SMILES tables beside the chemicals package (molret.names.tables):
their readers on hand-written files in each package's format, case-insensitive lookup, the
missing-package warning, their place among the sources, and a real lookup when installed."""

import bz2
import collections
import json
import pickle

import pytest

from molret.names import resolve as N
from molret.names import sources as S
from molret.names import tables as T


def key(smiles):
    return N.structure_from_smiles("x", smiles).key


LIGAND2SMILES, DRUG_NER = T.TABLES


@pytest.fixture
def no_tables(monkeypatch, tmp_path):
    """Every table read afresh (nothing shared yet), cached in a folder of its own."""
    monkeypatch.setattr(S, "_TABLES", {})
    monkeypatch.setenv("MOLRET_CACHE", str(tmp_path / "user-cache"))


def _ligand_file(tmp_path):
    f = tmp_path / "ligand_list.json"
    f.write_text(json.dumps({"Ethanol": "CCO", "  Acetic   Acid ": "CC(=O)O", "ETHANOL": "CO",
                             "nothing": "", "": "C"}))
    return f


def _drug_file(tmp_path, data):
    f = tmp_path / "drug_ner_dictionary.pkl.bz2"
    f.write_bytes(bz2.compress(pickle.dumps(data)))
    return f


DRUGS = {
    "drug_canonical_to_data": {
        "abacavir": {"name": "Abacavir", "smiles": "Nc1nc(NC2CC2)c2ncn(C3C=CC(CO)C3)c2n1.OS(=O)(=O)O"},
        "paracetamol": {"name": "Paracetamol", "smiles": "CC(=O)Nc1ccc(O)cc1"},
        "ethanol": {"name": "Ethanol", "smiles": "CCO"},
        "aspirin": {"name": "Aspirin", "smiles": "CC(=O)Oc1ccccc1C(=O)[O-].CC(=O)Oc1ccccc1C(=O)[O-].[Ca+2]"},
        "combination": {"name": "Combination", "smiles": "CC(=O)Nc1ccc(O)cc1.Cn1cnc2c1c(=O)n(C)c(=O)n2C"},
        "calciol": {"name": "Calciol", "smiles": "[2H]C([2H])([2H])CCO"},
        "calcium acetate": {"name": "Calcium acetate", "smiles": "CC(=O)[O-].CC(=O)[O-].[Ca+2]"},
        "frobnicate": {"name": "Frobnicate"},                     # no structure
    },
    "drug_variant_to_canonical": {
        "abacavir": ["abacavir"], "ziagen": ["abacavir"], "abacavir sulfate": ["abacavir"],
        "tylenol": ["paracetamol"], "frob": ["frobnicate"], "booze": ["frobnicate", "ethanol"],
        "excedrin": ["combination"],
    },
}


def test_read_ligand2smiles_normalises_names_and_keeps_the_first(tmp_path):
    pairs = T.read_ligand2smiles(_ligand_file(tmp_path))
    assert pairs == [("Ethanol", "CCO"), ("  Acetic   Acid ", "CC(=O)O"), ("ETHANOL", "CO"), ("", "C")]
    assert S.smiles_table(pairs) == {"ethanol": "CCO", "acetic acid": "CC(=O)O"}
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError):
        T.read_ligand2smiles(tmp_path / "list.json")


def test_parent_fragment_sets_counter_ions_aside_and_refuses_mixtures():
    assert T.heavy_atoms("[Ca+2].OC(=O)CCl") == 6                      # "Cl" and "[Ca+2]" are one atom each
    assert T.parent_fragment("CCO") == "CCO"
    assert T.parent_fragment("Cl.CCN(CC)CC") == "CCN(CC)CC"
    assert T.parent_fragment("[Na+].CCCCC(=O)[O-]") == "CCCCC(=O)[O-]"
    assert T.parent_fragment("CCCC(=O)O.CCCC(=O)O.[Ca+2]") == "CCCC(=O)O"    # the drug twice: one distinct fragment
    metoprolol = "CC(C)NCC(O)COc1ccc(CCOC)cc1"
    assert T.parent_fragment(f"{metoprolol}.OC(=O)[C@H](O)[C@@H](O)C(=O)O") == metoprolol  # a tartrate: 10 atoms
    assert T.parent_fragment("Cc1ccc(S(=O)(=O)[O-])cc1.CCCCCCCCN") == "CCCCCCCCN"        # a tosylate, charged
    assert T.parent_fragment("CC(=O)Nc1ccc(O)cc1.Cn1cnc2c1c(=O)n(C)c(=O)n2C") is None     # a mixture
    assert T.parent_fragment("CCO.OCC") is None


def test_read_drug_ner_maps_variants_to_the_drugs_parent(tmp_path):
    table = S.smiles_table(T.read_drug_ner(_drug_file(tmp_path, DRUGS)))
    abacavir = "Nc1nc(NC2CC2)c2ncn(C3C=CC(CO)C3)c2n1"
    assert table["abacavir"] == abacavir and table["ziagen"] == abacavir        # a salt's SMILES, a plain name
    assert "abacavir sulfate" not in table          # a salt's name: the table's SMILES may be another salt
    assert table["calcium acetate"] == "CC(=O)[O-].CC(=O)[O-].[Ca+2]"           # a salt's own entry, whole
    assert table["tylenol"] == table["paracetamol"] == "CC(=O)Nc1ccc(O)cc1"
    assert table["booze"] == "CCO"                      # the first canonical name that has a structure
    assert key(table["aspirin"]) == key("CC(=O)Oc1ccccc1C(=O)O")                  # the salt's anion, neutralised
    assert "combination" not in table and "excedrin" not in table                # a mixture
    assert "calciol" not in table                                                 # an isotope-labelled form
    assert "frob" not in table and "frobnicate" not in table


def test_read_drug_ner_refuses_a_pickle_that_names_a_class(tmp_path):
    f = _drug_file(tmp_path, {"drug_canonical_to_data": collections.OrderedDict(), "drug_variant_to_canonical": {}})
    with pytest.raises(pickle.UnpicklingError):
        T.read_drug_ner(f)


def test_shared_table_lookup_is_case_insensitive_and_read_once(tmp_path, monkeypatch, no_tables):
    f = _ligand_file(tmp_path)
    reads = []
    table = T.NameTable("ligand2smiles", "ligand2smiles", "Ligand2SMILES", f.name,
                        lambda path: reads.append(path) or T.read_ligand2smiles(path))
    monkeypatch.setattr(S, "TABLES", (table,))
    monkeypatch.setattr(S, "find_table_file", lambda t: f if t.name == "ligand2smiles" else None)
    monkeypatch.setattr(S, "_SHARED", {"chemicals": None})
    # a stat (the glycans and mixtures sources come with any other)
    assert S.source_fingerprints(None)[1:-1] == [["ligand2smiles", S.file_fingerprint(f)]] and reads == []
    shared = S.shared_table(table)
    assert shared is S.shared_table(table) and shared.name == "ligand2smiles" and reads == [f]
    upper, spaced, acid, nothing = shared.lookup(["ETHANOL", " ethanol ", "acetic  ACID", "propanol"])
    assert upper.key == spaced.key == key("CCO") and upper.source == "ligand2smiles"
    assert upper.name == "ETHANOL" and spaced.name == " ethanol "
    assert acid.key == key("CC(=O)O") and nothing is None
    assert S.source_fingerprints(None)[1:-1] == [["ligand2smiles", S.file_fingerprint(f)]]
    assert S.default_sources(None)[1:-1] == [shared]          # after the glycans, before the mixtures


def test_read_table_is_cached_and_a_changed_file_is_read_again(tmp_path, molret_warnings):
    f = _ligand_file(tmp_path)
    reads = []
    table = T.NameTable("t", "p", "m", f.name, lambda path: reads.append(path) or T.read_ligand2smiles(path))
    first = T.read_table(table, f, tmp_path / "c")
    assert first == T.read_ligand2smiles(f) and reads == [f] and (tmp_path / "c" / "t.npz").is_file()
    assert T.read_table(table, f, tmp_path / "c") == first and reads == [f]          # from the cache
    f.write_text(json.dumps({"Propanol": "CCCO"}))
    assert T.read_table(table, f, tmp_path / "c") == [("Propanol", "CCCO")] and reads == [f, f]
    assert len(molret_warnings) == 1 and "stale" in molret_warnings[0].getMessage()
    (tmp_path / "ro").write_text("a file, not a folder")
    assert T.read_table(table, f, tmp_path / "ro") == [("Propanol", "CCCO")]        # no cache: only time lost


def test_missing_package_is_one_warning_and_no_source(monkeypatch, molret_warnings, no_tables):
    monkeypatch.setattr(T.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(S, "_SHARED", {"chemicals": None})
    assert S.shared_table(DRUG_NER) is None and S.shared_table(DRUG_NER) is None
    assert len(molret_warnings) == 1
    assert "pip install drug-named-entity-recognition" in molret_warnings[0].getMessage()
    molret_warnings.clear()
    assert S.source_fingerprints(None) == [] and S.default_sources(None) == []
    assert len(molret_warnings) == 1 and "ligand2smiles" in molret_warnings[0].getMessage()


def test_unreadable_table_is_one_warning(tmp_path, monkeypatch, molret_warnings, no_tables):
    bad = tmp_path / "drug_ner_dictionary.pkl.bz2"
    bad.write_bytes(b"not bz2")
    monkeypatch.setattr(S, "find_table_file", lambda table: bad)
    assert S.shared_table(DRUG_NER) is None and S.shared_table(DRUG_NER) is None
    assert len(molret_warnings) == 1 and "cannot read the drug_ner dictionary" in molret_warnings[0].getMessage()


def test_tables_come_after_chemicals_and_before_pairs(monkeypatch):
    monkeypatch.setattr(S, "_SHARED", {"chemicals": S.SmilesDictionary({}, "chemicals")})
    monkeypatch.setattr(S, "_TABLES", {"ligand2smiles": S.SmilesDictionary({"x": "C"}, "ligand2smiles", "l"),
                                       "drug_ner": S.SmilesDictionary({"x": "CC"}, "drug_ner", "d")})
    assert S.SOURCE_ORDER == ("opsin", "glycans", "chemicals", "ligand2smiles", "drug_ner", "pairs", "mixtures")
    assert [s.name for s in S.default_sources(None)] == ["glycans", "chemicals", "ligand2smiles", "drug_ner",
                                                         "mixtures"]
    assert S.default_sources(None, chemicals=False) == []
    assert [f[0] for f in S.source_fingerprints(None)] == ["glycans", "chemicals", "ligand2smiles", "drug_ner",
                                                           "mixtures"]
    assert S.source_fingerprints(None)[2] == ["ligand2smiles", "l"]
    # the first source that knows a name wins
    s = N.resolve_names(["X"], S.default_sources(None))["X"]
    assert s.source == "ligand2smiles" and s.key == key("C")


HAVE = {t.name: T.find_table_file(t) is not None for t in T.TABLES}


@pytest.mark.skipif(not HAVE["ligand2smiles"], reason="the ligand2smiles package is not installed")
def test_ligand2smiles_real_lookup(no_tables):
    table = S.shared_table(LIGAND2SMILES)
    assert len(table) > 10_000
    xphos, nothing = table.lookup(["XPhos", "flibbertigibbetane"])
    assert xphos.key == key("CC(C)c1cc(C(C)C)c(-c2ccccc2P(C2CCCCC2)C2CCCCC2)c(C(C)C)c1")
    assert nothing is None


@pytest.mark.skipif(not HAVE["drug_ner"], reason="the drug-named-entity-recognition package is not installed")
def test_drug_ner_real_lookup(no_tables):
    table = S.shared_table(DRUG_NER)
    assert len(table) > 30_000
    paracetamol, tylenol, caffeine = table.lookup(["Paracetamol", "TYLENOL", "caffeine"])
    assert paracetamol.key == tylenol.key == key("CC(=O)Nc1ccc(O)cc1")
    assert caffeine.key == key("Cn1cnc2c1c(=O)n(C)c(=O)n2C")
