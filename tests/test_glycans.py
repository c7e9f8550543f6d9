"""ChEBI glycan names -> structures (molret.names.glycans), checked by graph identity with hand-written SMILES."""
import pytest

from molret.names import sources as S
from molret.names.glycans import GlycanSource, glycan_smiles, parse_glycan
from molret.names.resolve import resolve_names, structure_from_smiles


def key(smiles):
    return structure_from_smiles("x", smiles).key


def glycan_key(name):
    smiles = glycan_smiles(name)
    assert smiles is not None, name
    return key(smiles)


LACTOSE = "C([C@@H]1[C@@H]([C@@H]([C@H]([C@@H](O1)O[C@@H]2[C@H](OC([C@@H]([C@H]2O)O)O)CO)O)O)O)O"   # with stereo
LEWIS_X = "CC(=O)NC1C(O)OC(CO)C(OC2OC(CO)C(O)C(O)C2O)C1OC1OC(C)C(O)C(O)C1O"


def test_lactose_gives_the_graph_of_its_smiles_whatever_the_stereo_words():
    assert glycan_key("beta-D-Galp-(1->4)-D-Glcp") == key(LACTOSE)
    assert glycan_key("Beta-D-Galp-(1->4)-beta-D-Glcp") == key(LACTOSE)      # capitalised, anomer given
    assert glycan_key("alpha-D-Glcp-(1->4)-D-Glcp") == key(LACTOSE)          # maltose: same graph
    assert glycan_key("beta-D-Galp-(1->3)-D-Glcp") != key(LACTOSE)           # another linkage, another graph
    assert glycan_key("beta-D-Galf-(1->4)-D-Glcp") != key(LACTOSE)           # a furanose


def test_branched_trisaccharide_puts_each_branch_on_its_position():
    assert glycan_key("beta-D-Galp-(1->4)-[alpha-L-Fucp-(1->3)]-D-GlcpNAc") == key(LEWIS_X)
    assert glycan_key("alpha-L-Fucp-(1->3)-[beta-D-Galp-(1->4)]-D-GlcpNAc") == key(LEWIS_X)   # written the other way
    assert glycan_key("beta-D-Galp-(1->6)-[alpha-L-Fucp-(1->3)]-D-GlcpNAc") != key(LEWIS_X)
    # (Lewis a, Gal on O3 and Fuc on O4, has Lewis x's graph: radius-1 identifiers cannot tell them apart)
    # braces are brackets too, and a branch may follow a linkage without a hyphen
    assert glycan_key("beta-D-Galp-(1->4)-{alpha-L-Fucp-(1->3)}-D-GlcpNAc") == key(LEWIS_X)


def test_n_acetyl_residues():
    chitobiose = "CC(=O)NC1C(O)OC(CO)C(OC2OC(CO)C(O)C(O)C2NC(C)=O)C1O"
    assert glycan_key("beta-D-GlcpNAc-(1->4)-D-GlcpNAc") == key(chitobiose)
    assert glycan_key("beta-D-GlcNAc-(1->4)-D-GlcNAc") == key(chitobiose)        # no ring letter: pyranose
    assert glycan_key("beta-D-GlcpN-(1->4)-D-GlcpNAc") != key(chitobiose)


def test_sialic_acids_link_from_carbon_2():
    neu5ac_gal = "CC(=O)NC1C(O)CC(OC2C(O)C(O)OC(CO)C2O)(C(=O)O)OC1C(O)C(O)CO"
    assert glycan_key("alpha-Neup5Ac-(2->3)-beta-D-Galp") == key(neu5ac_gal)
    assert glycan_key("alpha-Neu5Ac-(2->3)-beta-D-Galp") == key(neu5ac_gal)
    neu5gc_gal = "OCC(=O)NC1C(O)CC(OC2C(O)C(O)OC(CO)C2O)(C(=O)O)OC1C(O)C(O)CO"
    assert glycan_key("alpha-Neup5Gc-(2->3)-beta-D-Galp") == key(neu5gc_gal)
    assert glycan_smiles("alpha-Neup5Ac-(1->3)-beta-D-Galp") is None            # its anomeric carbon is 2
    # a repeating unit with its count: a chain of that many, ends free
    assert glycan_key("[8)-alpha-Neu5Ac-(2->]2") == glycan_key("alpha-Neu5Ac-(2->8)-Neu5Ac")


def test_aglycons_and_modifications():
    assert glycan_key("alpha-D-Manp-(1->6)-alpha-D-ManpOMe") == key("COC1OC(COC2OC(CO)C(O)C(O)C2O)C(O)C(O)C1O")
    assert glycan_key("beta-D-Galp6S-(1->4)-D-Glcp") == key("OC1OC(CO)C(OC2OC(COS(=O)(=O)O)C(O)C(O)C2O)C(O)C1O")
    assert glycan_key("beta-D-Galp3Me-(1->4)-D-Glcp") == key("OC1OC(CO)C(OC2OC(CO)C(O)C(OC)C2O)C(O)C1O")
    assert glycan_key("alpha-L-Rhap-(1->3)-alpha-L-RhapO[CH2]5NH2") == key(
        "CC1OC(OC2C(O)C(OCCCCCN)OC(C)C2O)C(O)C(O)C1O")
    # the reducing end reduced to its alditol ("-OH"): 2-O-fucosyl-glucitol
    assert glycan_key("Alpha-L-Fucp-(1->2)-D-Glc-OH") == key("CC1OC(OC(CO)C(O)C(O)C(O)CO)C(O)C(O)C1O")
    lactosylceramide = ("CCCCCCCCCCCCCC=CC(O)C(COC1OC(CO)C(OC2OC(CO)C(O)C(O)C2O)C(O)C1O)NC(=O)"
                        "CCCCCCCCCCCCCCC")
    assert glycan_key("beta-D-Galp-(1->4)-beta-D-Glcp-(1<->1')-Cer(d18:1/16:0)") == key(lactosylceramide)
    assert glycan_smiles("beta-D-Galp-(1->4)-beta-D-Glcp-(1<->1')-Cer(d18:1/16:1)") is None   # where is the bond?


@pytest.mark.parametrize("name", [
    "", "ethanol", "Gal", "Man", "beta-D-Galp-(1->4)", "(1->4)-D-Glcp", "beta-D-Galp-(1->9)-D-Glcp",
    "beta-D-Galp-(1->5)-D-Glcp",                        # O5 closes the pyranose ring
    "beta-D-Galp-(1->4)-[alpha-L-Fucp-(1->4)]-D-Glcp",  # two residues on one oxygen
    "Foo-(1->4)-D-Glcp", "beta-D-Galp-(1->4)-[", "]]-(1->", "[4)-beta-D-Glcp-(1->]0",
    "beta-D-Galp-(1->4)-D-Glcp sodium salt", "beta-D-Galp D-Glcp", "x" * 5000, None, 12,
    "beta-D-Galp-(1->4)-D-Glcp-(1->4)",                 # a linkage to nothing
])
def test_garbage_is_none(name):
    assert glycan_smiles(name) is None


def test_parse_keeps_residues_in_order_with_the_reducing_end_last():
    glycan = parse_glycan("alpha-L-Fucp-(1->2)-[alpha-D-GalpNAc-(1->3)]-beta-D-Galp-(1->4)-D-GlcpNAc")
    assert [r.symbol for r in glycan.residues] == ["Fucp", "GalpNAc", "Galp", "GlcpNAc"]
    assert [r.anomer for r in glycan.residues] == ["a", "a", "b", ""]
    assert sorted(glycan.links) == [(0, 1, 2, 2), (1, 1, 2, 3), (2, 1, 3, 4)]


def test_source_resolves_glycans_after_opsin():
    source = GlycanSource()
    lactose, nothing = source.lookup(["beta-D-Galp-(1->4)-D-Glcp", "ethanol"])
    assert lactose.key == key(LACTOSE) and lactose.source == "glycans" and lactose.name == "beta-D-Galp-(1->4)-D-Glcp"
    assert nothing is None
    assert source.fingerprint() == GlycanSource().fingerprint() and len(source.fingerprint()) == 40

    class FakeOpsin:
        name = "opsin"

        def lookup(self, names):
            return [structure_from_smiles(n, "CCO") if n == "ethanol" else None for n in names]
    found = resolve_names(["beta-D-Galp-(1->4)-D-Glcp", "ethanol", "Lactose(1-)"], [FakeOpsin(), source])
    assert found["beta-D-Galp-(1->4)-D-Glcp"].source == "glycans" and found["ethanol"].key == key("CCO")
    assert found["Lactose(1-)"] is None
    # its charged species resolves through the neutral spelling
    spelled = resolve_names(["beta-D-GlcpA-(1->4)-D-Glcp(1-)"], [source])["beta-D-GlcpA-(1->4)-D-Glcp(1-)"]
    assert spelled.kind == "spelling" and spelled.key == glycan_key("beta-D-GlcpA-(1->4)-D-Glcp")


def test_default_sources_place_glycans_after_opsin(monkeypatch):
    monkeypatch.setattr(S, "_SHARED", {"chemicals": S.SmilesDictionary({}, "chemicals")})
    monkeypatch.setattr(S, "_TABLES", {t.name: None for t in S.TABLES})      # the other tables: not installed
    assert [s.name for s in S.default_sources(None)] == ["glycans", "chemicals", "mixtures"]
    assert [f[0] for f in S.source_fingerprints(None)] == ["glycans", "chemicals", "mixtures"]
    monkeypatch.setattr(S, "_SHARED", {"chemicals": None})
    assert S.default_sources(None) == [] and S.source_fingerprints(None) == []   # alone: no names, as before
