"""Names 3.0 rules: lipid spellings OPSIN parses, salts/hydrates/atoms composed from their parts."""
import pytest

from molret.names.lipids import lipid_spellings
from molret.names.mixtures import MixtureSource, split_mixture
from molret.names.resolve import graph_key
from molret.names.sources import SmilesDictionary


def key_of(smiles):
    from molret.chem.smiles_graph import smiles_to_graph
    edges, ids = smiles_to_graph(smiles)
    return graph_key(ids, edges)


@pytest.mark.parametrize("name, spelt", [
    ("Tetradecasphinganine", "2-aminotetradecane-1,3-diol"),
    ("N-docosanoyl-15-methylhexadecasphing-4-enine", "N-docosanoyl-2-amino-15-methylhexadec-4-ene-1,3-diol"),
    ("N-icosanoyl-4-hydroxy-15-methylhexadecasphinganine",
     "N-icosanoyl-2-amino-4-hydroxy-15-methylhexadecane-1,3-diol"),
    ("N-docosanoylsphinganine", "N-docosanoyl-2-aminooctadecane-1,3-diol"),      # C18 when no root is given
    ("C17 sphingosine", "2-aminoheptadec-4-ene-1,3-diol"),
    ("3-dehydrotetradecasphinganine", "2-amino-1-hydroxy-tetradecan-3-one"),
    ("N-icosanoyl-(4E,14Z)-sphingadienine", "N-icosanoyl-2-aminooctadeca-4,14-diene-1,3-diol"),
    ("Beta-D-glucosyl-(1<->1')-N-docosanoylsphinganine",
     "1-O-beta-D-glucosyl-N-docosanoyl-2-aminooctadecane-1,3-diol"),
    ("1,2-dioleoyl-sn-glycero-3-phospho-(1'-sn-glycerol)", "1,2-dioleoyl-sn-glycero-3-phospho-sn-glycerol"),
    ("1-hexadecanoyl-2-(9Z,12Z-octadecadienoyl)-sn-glycerol", "1-hexadecanoyl-2-(9Z,12Z)-octadecadienoyl-sn-glycerol"),
])
def test_lipid_spellings(name, spelt):
    assert lipid_spellings(name) == [spelt]


def test_lipid_spellings_leave_other_names_alone():
    assert lipid_spellings("ethanol") == [] and lipid_spellings("sphingomyelin") == []


def test_split_mixture_reads_parts_and_amounts():
    m = split_mixture("Triprolidine hydrochloride dihydrate")
    assert m.base == "Triprolidine" and sorted(m.parts) == [("Cl", 1), ("O", 2)] and m.cation is None
    m = split_mixture("disodium foo")
    assert m.base == "foo" and m.cation == "[Na+]" and m.cations == 2
    m = split_mixture("Sulcofuron-sodium")
    assert m.base == "Sulcofuron" and m.cations is None          # as many as the base's charge asks
    m = split_mixture("foo bromide")
    assert m.anions == 1 and m.parts == (("[Br-]", 1),)
    assert split_mixture("(S)-ropivacaine hydrochloride (anhydrous)").base == "(S)-ropivacaine"
    assert split_mixture("ethanol") is None and split_mixture("hydrochloride") is None


def _source(table):
    return MixtureSource([SmilesDictionary({k.lower(): v for k, v in table.items()}, "dict")])


def test_salts_and_hydrates_are_joined_as_the_challenge_draws_them():
    source = _source({"methylamine": "CN", "acetic acid": "CC(=O)O", "tetramethylammonium": "C[N+](C)(C)C"})
    hcl, hydrate, quat, missing = source.lookup(["methylamine hydrochloride", "acetic acid dihydrate",
                                                 "tetramethylammonium bromide", "frobamine hydrochloride"])
    assert hcl.key == key_of("CN.Cl") and hcl.key != key_of("CN")            # neutral HCl beside the base
    assert hydrate.key == key_of("CC(=O)O.O.O")
    assert quat.key == key_of("C[N+](C)(C)C.[Br-]")
    assert missing is None
    assert hcl.source == "mixtures"


def test_counter_cations_take_the_bases_anion():
    source = _source({"acetic acid": "CC(=O)O", "ethane": "CC", "oxalic acid": "OC(=O)C(=O)O",
                      "sulfoacetic acid": "OC(=O)CS(=O)(=O)O"})
    sodium, = source.lookup(["sodium acetic acid"])
    assert sodium.key == key_of("CC(=O)[O-].[Na+]")
    assert source.lookup(["sodium ethane"]) == [None]                        # no acid: nothing to pair with
    # two different acidic sites, one sodium: which one loses its proton is not unique -> no structure
    assert source.lookup(["sodium sulfoacetic acid"]) == [None]
    sodium_oxalate, = source.lookup(["sodium oxalic acid"])                  # two equal sites: one graph
    assert sodium_oxalate.key == key_of("[O-]C(=O)C(=O)O.[Na+]")
    disodium, = source.lookup(["disodium oxalic acid"])
    assert disodium.key == key_of("[O-]C(=O)C(=O)[O-].[Na+].[Na+]")
    bromide_of_neutral, = source.lookup(["acetic acid bromide"])
    assert bromide_of_neutral is None                                        # a bromide needs a cation


def test_atoms_and_isotopes():
    boron, k39, none = _source({}).lookup(["Boron atom", "Potassium-39 atom", "Frobnium atom"])
    assert boron.key == key_of("[B]") and k39.key == key_of("[39K]") and none is None


@pytest.mark.parametrize("name, spelt", [
    ("XTP", "xanthosine 5'-triphosphate"),
    ("dTDP", "thymidine 5'-diphosphate"),
    ("DTDP", "thymidine 5'-diphosphate"),                               # a sentence-initial capital
    ("UDP-N-acetyl-alpha-D-glucosamine", "uridine 5'-(N-acetyl-alpha-D-glucosaminyl dihydrogen diphosphate)"),
    ("DTDP-beta-L-rhamnose", "thymidine 5'-(beta-L-rhamnosyl dihydrogen diphosphate)"),
    ("CMP-beta-D-ribose", "cytidine 5'-(beta-D-ribosyl hydrogen phosphate)"),
])
def test_nucleotide_spellings(name, spelt):
    from molret.names.nucleotides import nucleotide_spellings
    assert nucleotide_spellings(name) == [spelt]


def test_nucleotide_spellings_leave_other_names_alone():
    from molret.names.nucleotides import nucleotide_spellings
    # a partner that is not a sugar has no glycosyl form; "ATPase" and "DTT" are not nucleotide codes
    assert nucleotide_spellings("CDP-glycerol") == [] and nucleotide_spellings("ATPase") == []
    assert nucleotide_spellings("DTT") == [] and nucleotide_spellings("ethanol") == []


def test_a_batch_whose_mixture_lookup_lost_opsin_is_not_cached(tmp_path, monkeypatch, molret_warnings):
    from molret.names import cache as NC
    from molret.names import sources as S
    from molret.names.opsin import OpsinUnavailable

    class StoppingOpsin:              # answers the first call (the names), stops on the next (a salt's base)
        calls = 0
        jar = None

        def resolve(self, names):
            StoppingOpsin.calls += 1
            if StoppingOpsin.calls > 1:
                raise OpsinUnavailable("stopped")
            return [None for _ in names]

    monkeypatch.setattr(S, "_SHARED", {"chemicals": SmilesDictionary({"methylamine": "CN"}, "chemicals")})
    batch = ["Methylamine hydrochloride is a hydrochloride."]
    got = NC.resolve_queries_cached(batch, StoppingOpsin(), None, cache_dir=tmp_path)
    assert StoppingOpsin.calls >= 2 and got[0].subject is not None and got[0].subject.key == key_of("CN.Cl")
    assert not list(tmp_path.glob("names-*.npz"))     # resolved without OPSIN: not saved


def test_spellings_name_their_rules():
    from molret.names.variants import spellings
    assert spellings("Gly-Glu(1-)")[:2] == [("peptide", "glycyl-L-glutamic acid"), ("neutral", "Gly-Glu")]
    assert ("cation", "spermine") in spellings("sperminium")
    assert ("lipid", "2-aminotetradecane-1,3-diol") in spellings("Tetradecasphinganine(1+)")
    assert ("nucleotide", "xanthosine 5'-triphosphate") in spellings("XTP(3-)")
    assert spellings("(+)-artemisinin") == [("stereo", "artemisinin")]
