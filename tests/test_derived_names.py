"""Names and structures built from a query's description (molret.names.derived, molret.names.edits) and their use
in resolve_queries."""
from __future__ import annotations

from molret.chem.smiles_graph import mol_to_graph, parse_smiles
from molret.names import queries as Q
from molret.names import sources as S
from molret.names.derived import DEFAULT_RULES, RULES, derived_names, substituent_prefixes
from molret.names.edits import apply_edit, derived_edits, derived_structures
from molret.names.resolve import graph_key


def key(smiles: str) -> str:
    edge_index, identifiers = mol_to_graph(parse_smiles(smiles))
    return graph_key(identifiers, edge_index)


def names_of(query: str, subject: str, rule: str) -> list[str]:
    return [n for r, n in derived_names(query, subject) if r == rule]


# ------------------------------------------------------------------ substituent lists

def test_substituent_list_to_prefixes():
    assert substituent_prefixes("hydroxy groups at positions 3, 16 and 25") == ["3,16,25-trihydroxy"]
    assert substituent_prefixes("hydroxy groups at positions 1, 3, 6 and 7, a prenyl group at position 2 and a "
                                "geranyl group at position 5") == ["1,3,6,7-tetrahydroxy", "2-prenyl", "5-geranyl"]
    # primed locants, "by" repeated, a trailing "respectively", a compound group in parentheses
    assert substituent_prefixes("hydroxy groups at positions 5, 7 and 2' and by a methoxy group at position 4' "
                                "respectively") == ["5,7,2'-trihydroxy", "4'-methoxy"]
    assert substituent_prefixes("pyridin-3-ylmethylene groups at positions 2 and 6") == \
        ["2,6-bis(pyridin-3-ylmethylene)"]
    assert substituent_prefixes("a 2-carboxyethyl group at position 4") == ["4-(2-carboxyethyl)"]
    # gem-dimethyl written twice, and "geminal"
    assert substituent_prefixes("methyl groups at positions 4, 4, and 8") == ["4,4,8-trimethyl"]
    assert substituent_prefixes("geminal methyl groups at position 2") == ["2,2-dimethyl"]
    # groups and positions paired in order
    assert substituent_prefixes("an ethyl, a benzoyl, and a hydroxy group at positions 1, 4 and 5, respectively") \
        == ["1-ethyl", "4-benzoyl", "5-hydroxy"]
    # ChEBI's "isoprenyl" is prenyl (3-methylbut-2-en-1-yl), stereo words on a group dropped
    assert substituent_prefixes("an isoprenyl group at position 2 and a beta-hydroxy group at position 6") == \
        ["2-prenyl", "6-hydroxy"]
    assert substituent_prefixes("chlorine at position 6 and an (all-trans)-hexaprenyl group at position 2") == \
        ["6-chloro", "2-(hexaprenyl)"]


def test_substituent_list_that_does_not_parse_gives_nothing():
    assert substituent_prefixes("a hydroxy group at positions 2 and 4") is None      # one group, two positions
    assert substituent_prefixes("a hydroxy group") is None                          # no position
    assert substituent_prefixes("a 2,2-dimethyl pyran group across positions 7 and 8") is None
    assert substituent_prefixes("hydroxy groups at positions 3 and 5 and a methyl group") is None
    assert substituent_prefixes("phenyl groups at position 6") is None       # plural, one position, no count
    assert substituent_prefixes("two methyl groups at position 8") == ["8,8-dimethyl"]
    # items separated by semicolons ("...; by methyl groups ...")
    assert substituent_prefixes("hydroxy groups at positions 1 and 4; by methyl groups at positions 6 and 8") == \
        ["1,4-dihydroxy", "6,8-dimethyl"]


# ------------------------------------------------------------------ the rules

def test_substituted_by():
    q = ("Gentisein is a member of the class of xanthones that is 9H-xanthen-9-one substituted by hydroxy groups at "
         "positions 1, 3 and 7. It has a role as a plant metabolite.")
    assert derived_names(q, "Gentisein") == [("substituted", "1,3,7-trihydroxy-9H-xanthen-9-one")]
    q = ("Foo is a steroid that is cholestane substituted by hydroxy groups at positions 3, 16 and 25 "
         "(the 3beta isomer).")
    assert names_of(q, "Foo", "substituted") == ["3,16,25-trihydroxycholestane", "3,16,25-trihydroxy-cholestane"]
    # "which is substituted", a leading stereo descriptor of the parent dropped
    q = "Bar is a diol that is (3R,5S)-heptane-3,5-diol which is substituted by a methyl group at position 2."
    assert names_of(q, "Bar", "substituted")[0] == "2-methylheptane-3,5-diol"


def test_substituted_at_positions_by_and_bearing():
    q = "Foo is an acid that is abieta-8,11,13-triene substituted at position 18 by a carboxy group. It is a diterpenoid."
    assert names_of(q, "Foo", "substituted")[0] == "18-carboxyabieta-8,11,13-triene"
    q = "Foo is pyrazine substituted at positions 2, 3, and 5 by methyl, benzyl, and phenyl groups, respectively."
    assert names_of(q, "Foo", "substituted")[0] == "2-methyl-3-benzyl-5-phenylpyrazine"
    q = ("Foo is an acid that consists of 1,4,7,10-tetraazacyclododecane bearing three carboxymethyl substituents at "
         "positions 1, 4 and 7 as well as an (R)-2-hydroxypropyl group at position 10.")
    assert names_of(q, "Foo", "substituted") == \
        ["1,4,7-tris(carboxymethyl)-10-(2-hydroxypropyl)-1,4,7,10-tetraazacyclododecane"]


def test_substituted_by_keeps_what_places_double_bonds_and_the_whole_list():
    q = "Foo is (5Z,8E)-tetradeca-5,8-dienoic acid substituted by a hydroxy group at position 3. It is a lipid."
    assert names_of(q, "Foo", "substituted")[0] == "3-hydroxy-(5Z,8E)-tetradeca-5,8-dienoic acid"
    q = ("Foo is butane substituted by a hydroxy group at position 1; by methyl groups at positions 2 and 3. "
         "It is an alcohol.")
    assert names_of(q, "Foo", "substituted")[0] == "1-hydroxy-2,3-dimethylbutane"


def test_substituted_by_needs_a_parent_name_and_a_complete_list():
    # the sentence goes on changing the molecule: the substituents alone would name another molecule
    assert derived_names("Foo is pyridin-4-amine substituted by a methyl group at position 2, and in which the "
                         "amino group has been substituted by an ethyl group.", "Foo") == []
    # an ester's name: which part a prefix goes to is unclear
    assert derived_names("Foo is butyl acetate substituted by a hydroxy group at position 3.", "Foo") == []
    assert derived_names("Foo is a steroid substituted by hydroxy groups.", "Foo") == []
    # the clause before "substituted" is a description, not a name
    assert derived_names("Foo is an N-sulfonylurea in which the nitrogen is substituted by a methyl group at "
                         "position 2.", "Foo") == []


def test_hydrogens_replaced_by():
    q = ("Tioxazafen is a 1,2,4-oxadiazole in which the hydrogens at positions 3 and 5 have been replaced by phenyl "
         "and thiophen-2-yl groups, respectively.")
    assert names_of(q, "Tioxazafen", "replaced") == ["3-phenyl-5-(thiophen-2-yl)-1,2,4-oxadiazole"]
    q = "Baz is pyridine in which the hydrogens at positions 2 and 6 have been replaced by methyl groups."
    assert names_of(q, "Baz", "replaced") == ["2,6-dimethylpyridine", "2,6-dimethyl-pyridine"]
    q = "Baz is pyridine in which the hydrogens at positions 2 and 6 have been replaced by a methyl group."
    assert names_of(q, "Baz", "replaced") == []     # one group, two positions
    q = "Baz is cyclohexanone in which the hydrogens at position 4 have been replaced by methyl groups."
    assert names_of(q, "Baz", "replaced") == []     # how many is not said
    q = "Baz is cyclohexanone in which one of the hydrogens at position 4 has been replaced by a methyl group."
    assert names_of(q, "Baz", "replaced")[0] == "4-methylcyclohexanone"


def test_derivative_of():
    q = "Qux is a sterigmatocystin that is the 11-hydroxy-8-O-methyl derivative of the parent sterigmatocystin."
    assert derived_names(q, "Qux") == [("derivative", "11-hydroxy-8-O-methylsterigmatocystin"),
                                       ("derivative", "11-hydroxy-8-O-methyl-sterigmatocystin")]
    q = "Quux is an acetamide that is the N-acetyl derivative of serotonin."
    assert names_of(q, "Quux", "derivative")[0] == "N-acetylserotonin"
    # no locant: which position is not said
    assert derived_names("Quux is the dihydro derivative of bruceanol D.", "Quux") == []


def test_o_substituted():
    q = "Foo is D-glucose in which the hydroxy group at position 4 has been converted into its acetate ester."
    assert derived_names(q, "Foo") == [("o_substituted", "4-O-acetyl-D-glucose")]
    q = "Foo is isoorientin in which the phenolic hydrogens at positions 3' and 7 have been replaced by methyl groups."
    assert names_of(q, "Foo", "o_substituted")[0] == "3',7-di-O-methylisoorientin"
    q = ("Foo is D-mannitol in which the hydroxy group at position 2 has been converted into the corresponding "
         "alpha-D-mannopyranoside.")
    assert names_of(q, "Foo", "o_substituted") == ["2-O-(D-mannopyranosyl)-D-mannitol"]
    q = "Foo is embelin in which the hydroxy group at position 5 is replaced by an ethoxy group."
    assert names_of(q, "Foo", "o_substituted")[0] == "5-O-ethylembelin"


def test_methyl_ester():
    q = ("Triflusulfuron-methyl is a methyl ester resulting from the formal condensation of the carboxy group of "
         "triflusulfuron with methanol.")
    assert derived_names(q, "Triflusulfuron-methyl") == [("ester", "triflusulfuron methyl ester")]
    q = "Mec is the ethyl ester of 2-methylbenzoic acid."
    assert names_of(q, "Mec", "ester") == ["2-methylbenzoic acid ethyl ester", "ethyl 2-methylbenzoate"]
    # the alcohol contradicts the ester's name: nothing
    assert derived_names("Foo is a methyl ester obtained by formal condensation of the carboxy group of benzoic "
                         "acid with ethanol.", "Foo") == []


def test_rules_are_ordered_and_names_unique():
    q = ("Foo is 9H-xanthen-9-one substituted by a hydroxy group at position 1. It is the methyl ester of "
         "2-methylbenzoic acid.")
    got = derived_names(q, "Foo")
    assert [r for r, _ in got] == ["substituted", "ester", "ester"]
    assert len({n for _, n in got}) == len(got)
    assert derived_names(q, "Foo", rules=("ester",)) == got[1:]
    assert set(RULES) >= {"substituted", "replaced", "derivative", "ester"}


# ------------------------------------------------------------------ resolve_queries

def test_resolve_queries_resolves_the_subject_from_its_description():
    source = S.SmilesDictionary({"2,6-dimethylpyridine": "Cc1cccc(C)n1", "pyridine": "c1ccncc1"}, "test")
    batch = ["Lutidinol is a pyridine that is pyridine substituted by methyl groups at positions 2 and 6.",
             "Pyridine is an azaarene. It derives from a lutidinol."]
    q = Q.resolve_queries(batch, None, sources=[source])
    assert q[0].subject is not None and q[0].subject.kind == "derived" and q[0].subject.rule == "substituted"
    assert q[0].subject.name == "Lutidinol" and q[0].identity_keys == {key("Cc1cccc(C)n1")}
    assert q[1].subject.kind == "name" and q[1].subject.rule == ""      # a resolved subject is left alone
    # no rules: the subject stays unresolved
    q = Q.resolve_queries(batch, None, sources=[source], derived_rules=())
    assert q[0].subject is None
    # a name that does not resolve gives nothing
    q = Q.resolve_queries(["Lutidinol is pyridine substituted by chloro groups at positions 2 and 6."], None,
                          sources=[source])
    assert q[0].subject is None


# ------------------------------------------------------------------ structure edits

def test_condensation_edits_are_parsed_with_their_site_kinds():
    q = ("Foo is an amide obtained by formal condensation of the carboxy group of acetic acid with the amino group of "
         "ethylamine. It is a metabolite.")
    assert derived_edits(q, "Foo") == [("condensation", ("acetic acid", "ethylamine"),
                                        ("condense", "carboxy", "amino"))]
    q = ("Foo is an ester resulting from the formal condensation of the primary amino group of serotonin with "
         "acetic acid.")
    assert derived_edits(q, "Foo") == [("condensation", ("serotonin", "acetic acid"),
                                        ("condense", "primary amino", None))]
    # two acids (or two alcohols) cannot condense into an ester or amide
    q = ("Foo is obtained by formal condensation of the carboxy group of acetic acid with the carboxy group of "
         "formic acid.")
    assert derived_edits(q, "Foo") == []
    q = "Foo is the methyl ester of propanoic acid."
    assert derived_edits(q, "Foo", rules=("ester_edit",)) == [("ester_edit", ("propanoic acid", "methanol"),
                                                               ("condense", "carboxy", "hydroxy"))]
    q = "Foo is phenol in which the phenolic hydrogen has been replaced by a sulfo group. It is an aryl sulfate."
    assert derived_edits(q, "Foo") == [("site_edit", ("phenol",), ("attach", "phenolic hydroxy", "sulfo"))]
    assert derived_edits("Foo is the N-acetyl derivative of ethylamine.", "Foo") == \
        [("site_edit", ("ethylamine",), ("attach", "amino", "acetyl"))]


def test_edits_build_the_molecule_only_at_a_unique_site():
    assert key(apply_edit(("condense", "carboxy", "amino"), ["CC(=O)O", "CCN"])) == key("CC(=O)NCC")
    assert key(apply_edit(("condense", "carboxy", "hydroxy"), ["CC(=O)O", "CO"])) == key("CC(=O)OC")
    # the other parent's site found from the first's kind (an amine with an acid)
    assert key(apply_edit(("condense", "amino", None), ["NCO", "CC(=O)O"])) == key("CC(=O)NCO")
    assert key(apply_edit(("condense", "sulfo", "amino"), ["CS(=O)(=O)O", "CN"])) == key("CS(=O)(=O)NC")
    assert key(apply_edit(("attach", "phenolic hydroxy", "methyl"), ["Oc1ccccc1"])) == key("COc1ccccc1")
    assert key(apply_edit(("attach", "amino", "acetyl"), ["NCC(=O)O"])) == key("CC(=O)NCC(=O)O")
    # two carboxy groups, two amines, an amine or alcohol with no acid: nothing
    assert apply_edit(("condense", "carboxy", "hydroxy"), ["OC(=O)CC(=O)O", "CO"]) is None
    assert apply_edit(("condense", "carboxy", "amino"), ["CC(=O)O", "NCCN"]) is None
    assert apply_edit(("condense", "amino", None), ["NCC", "CCO"]) is None
    # an amide N-H is not an amino group; a carboxylic O-H is not a hydroxy group
    assert apply_edit(("attach", "amino", "methyl"), ["CC(N)=O"]) is None
    assert apply_edit(("attach", "hydroxy", "methyl"), ["CC(=O)O"]) is None


def test_derived_structures_need_every_parent():
    q = "Foo is an amide obtained by formal condensation of the carboxy group of acetic acid with the amino group of " \
        "ethylamine."
    assert derived_structures(q, "Foo", {"acetic acid": "CC(=O)O"}) == []
    [(rule, smiles)] = derived_structures(q, "Foo", {"acetic acid": "CC(=O)O", "ethylamine": "CCN"})
    assert rule == "condensation" and key(smiles) == key("CCNC(C)=O")


def test_resolve_queries_builds_the_subject_from_its_parents():
    source = S.SmilesDictionary({"acetic acid": "CC(=O)O", "ethylamine": "CCN"}, "test")
    q = ("Frobamide is an amide obtained by formal condensation of the carboxy group of acetic acid with the amino "
         "group of ethylamine.")
    [got] = Q.resolve_queries([q], None, sources=[source])
    assert got.subject.kind == "derived" and got.subject.rule == "condensation" and got.subject.source == "test"
    assert got.identity_keys == {key("CCNC(C)=O")} and got.subject.name == "Frobamide"
    assert Q.resolve_queries([q], None, sources=[source], derived_rules=("substituted",))[0].subject is None
    assert "ester" not in DEFAULT_RULES and set(DEFAULT_RULES) <= set(RULES)
