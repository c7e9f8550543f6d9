"""Curated RDKit features (molret.chem.mol_features): hand-counted values of tiny molecules, the undecodable
row, family selection, a store's features from its decoded graphs (cached), and the features member."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from molret.chem import mol_features as mf  # noqa: E402
from molret.config import ModelConfig  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402
from molret.data.graph_store import GraphStore, parse_identifiers  # noqa: E402
from molret.chem.smiles_graph import smiles_to_graph  # noqa: E402

ACETIC_ACID, CYCLOPROPANE, BENZENE, METHANE = "CC(=O)O", "C1CC1", "c1ccccc1", "C"


def family(smiles, name):
    """The counts of one family (log1p undone), indicator column dropped."""
    return np.expm1(mf.features_from_smiles(smiles, [name])[:, :-1].astype(np.float64)).round(4)


def test_element_counts_of_acetic_acid():
    row = family([ACETIC_ACID], "elements")[0]
    named = dict(zip(mf.column_names(["elements"]), row))
    assert named["n_C"] == 2 and named["n_O"] == 2 and named["n_H"] == 4 and named["n_heavy"] == 4
    assert named["n_N"] == 0 and named["n_other"] == 0 and named["n_cation"] == 0 and named["n_anion"] == 0
    ion = dict(zip(mf.column_names(["elements"]), family(["CC(=O)[O-].[Na+]"], "elements")[0]))
    assert ion["n_Na"] == 1 and ion["n_cation"] == 1 and ion["n_anion"] == 1 and ion["n_H"] == 3


def test_ring_counts_of_cyclopropane_and_benzene():
    # rings, aromatic, aliphatic, saturated, aromatic hetero, aliphatic hetero, size 3,4,5,6,7,8+,
    # aromatic atoms, ring atoms, spiro, bridgehead
    cyclopropane, benzene, acetic = family([CYCLOPROPANE, BENZENE, ACETIC_ACID], "rings")
    assert cyclopropane.tolist() == [1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0]
    assert benzene.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 6, 6, 0, 0]
    assert not acetic.any()


def test_maccs_oxygen_and_ring_keys():
    # MACCS key 164: an oxygen atom; key 165: a ring atom
    acetic, cyclopropane = mf.features_from_smiles([ACETIC_ACID, CYCLOPROPANE], ["maccs"])
    assert acetic[164] == 1 and acetic[165] == 0
    assert cyclopropane[164] == 0 and cyclopropane[165] == 1


def test_morgan_counts_and_carboxylic_acid_fragment():
    assert family([METHANE], "morgan")[0].sum() == 1          # one atom, one radius-0 environment
    fr = dict(zip(mf.column_names(["fragments"]), family([ACETIC_ACID], "fragments")[0]))
    assert fr["fr_COO"] == 1 and fr["fr_benzene"] == 0
    assert dict(zip(mf.column_names(["fragments"]), family([BENZENE], "fragments")[0]))["fr_benzene"] == 1


def test_undecodable_molecules_are_zero_rows_with_the_indicator():
    x = mf.features_from_smiles([ACETIC_ACID, None, "", "C1CC"], mf.DEFAULT_FAMILIES)
    assert x.shape == (4, mf.feature_width(mf.DEFAULT_FAMILIES)) and x.dtype == np.float32
    assert x[0, -1] == 0 and x[0, :-1].any()
    assert (x[1:, :-1] == 0).all() and (x[1:, -1] == 1).all()


def test_family_selection_widths_and_names():
    assert mf.parse_families("") == mf.parse_families("default") == mf.DEFAULT_FAMILIES
    assert mf.parse_families("rings, maccs,rings") == ("rings", "maccs")
    with pytest.raises(MolretError, match="unknown molecule feature family 'nope'"):
        mf.parse_families("maccs,nope")
    for names in (["maccs"], ["rings", "elements"], mf.DEFAULT_FAMILIES, list(mf.FAMILIES)):
        width = mf.feature_width(names)
        assert len(mf.column_names(names)) == width == mf.features_from_smiles([BENZENE], names).shape[1]
    # columns follow the order given
    both = mf.features_from_smiles([ACETIC_ACID], ["rings", "elements"])
    assert np.array_equal(both[0, :16], mf.features_from_smiles([ACETIC_ACID], ["rings"])[0, :-1])


def test_parallel_workers_give_the_same_rows():
    smiles = [ACETIC_ACID, CYCLOPROPANE, BENZENE, None] * 300
    assert np.array_equal(mf.features_from_smiles(smiles, ["rings", "maccs"], workers=2),
                          mf.features_from_smiles(smiles, ["rings", "maccs"], workers=1))


def store_of(smiles_list):
    ids, edges = [], []
    for smi in smiles_list:
        edge_index, identifiers = smiles_to_graph(smi)
        ids.append(parse_identifiers(identifiers, smi))
        edges.append(np.asarray(edge_index, dtype=np.int32).reshape(2, -1))
    store = GraphStore.from_parts([str(i) for i in range(len(smiles_list))], ids, edges)
    store.x = np.zeros(len(store.identifiers), dtype=np.int64)
    return store


def test_store_features_from_decoded_graphs_are_cached(tmp_path, monkeypatch):
    smiles = [ACETIC_ACID, CYCLOPROPANE, BENZENE, "OCCO"]
    store = store_of(smiles)
    x = mf.store_features(store, ["elements", "rings"], cache_dir=tmp_path, workers=1)
    assert np.array_equal(x, mf.features_from_smiles(smiles, ["elements", "rings"]))
    assert len(list(tmp_path.glob("molfeat-*.npz"))) == 1 and len(list(tmp_path.glob("decoded-*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("recomputed")
    monkeypatch.setattr(mf, "features_from_smiles", boom)
    assert np.array_equal(mf.store_features(store, ["elements", "rings"], cache_dir=tmp_path), x)  # cache hit
    with pytest.raises(AssertionError, match="recomputed"):  # other families: another key
        mf.store_features(store, ["rings"], cache_dir=tmp_path)


def test_library_smiles_are_used_when_given_and_unknown_ones_flagged(tmp_path):
    store = store_of([ACETIC_ACID, BENZENE])
    x = mf.store_features(store, ["rings"], smiles=[None, BENZENE], cache_dir=tmp_path)
    assert x[0, -1] == 1 and not x[0, :-1].any()
    assert np.array_equal(x[1], mf.features_from_smiles([BENZENE], ["rings"])[0])
    with pytest.raises(MolretError, match="2 molecules but 1 SMILES"):
        mf.store_features(store, ["rings"], smiles=[BENZENE])


def test_damaged_graph_is_scored_as_undecodable(tmp_path):
    store = store_of([ACETIC_ACID, CYCLOPROPANE])
    store.identifiers[store.node_ptr[1]] = np.uint64(12345)  # an identifier no molecule has
    x = mf.store_features(store, ["elements"], cache_dir=tmp_path, workers=1)
    assert x[0, -1] == 0 and x[1, -1] == 1 and not x[1, :-1].any()


# ------------------------------------------------------------------ the member

def feature_model(hf, conv="features", **kw):
    from molret.models.encoders import build_model
    cfg = ModelConfig(conv=conv, mol_features="rings,elements", hidden_dim=16, embed_dim=8, proj_hidden=0,
                      vocab_size=4, substructure_dim=5, heads=4, **kw)
    cfg.mol_features_dim = mf.feature_width(["rings", "elements"])
    return build_model(cfg, torch.randn(4, 5), hf_model=hf)


@pytest.fixture
def hf_tiny():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32))


def test_features_member_standardises_with_training_statistics(hf_tiny, tmp_path):
    model = feature_model(hf_tiny).eval()
    enc = model.graph_encoder
    assert not enc.has_graph and not hasattr(enc, "substructure_emb") and enc.out_dim == 16
    store = store_of([ACETIC_ACID, CYCLOPROPANE, BENZENE, "OCCO"])
    mf.attach_features(store, ["rings", "elements"], smiles=[ACETIC_ACID, CYCLOPROPANE, BENZENE, None],
                       cache_dir=tmp_path)
    enc.features.set_standardisation(store.features)
    known = torch.as_tensor(store.features[:3, :-1])
    assert torch.allclose(enc.features.mean, known.mean(0))
    assert (enc.features.std > 0).all()  # constant columns get std 1
    assert {"graph_encoder.features.mean", "graph_encoder.features.std"} <= set(model.state_dict())
    emb = model.encode_graph(store.collate([0, 1, 2, 3]))
    assert emb.shape == (4, 8) and torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    # an undecoded molecule is the training mean plus its indicator, whatever its (zero) raw row
    row = torch.as_tensor(store.features[3:4])
    lin = enc.features.linear
    expected = torch.nn.functional.gelu(lin.bias + lin.weight[:, -1])
    assert torch.allclose(enc.features(row)[0], expected, atol=1e-6)


def test_features_missing_or_of_another_width_is_one_error(hf_tiny):
    model = feature_model(hf_tiny).eval()
    store = store_of([ACETIC_ACID])
    with pytest.raises(MolretError, match="came without them"):
        model.encode_graph(store.collate([0]))
    store.features = np.zeros((1, 5), np.float32)
    with pytest.raises(MolretError, match="5 columns, the model expects"):
        model.encode_graph(store.collate([0]))
    from molret.models.encoders import build_model
    with pytest.raises(MolretError, match="no molecule-feature width"):
        build_model(ModelConfig(conv="features", mol_features="rings", vocab_size=4, substructure_dim=5),
                    hf_model=hf_tiny)


def test_gnn_plus_features_concatenates_both(hf_tiny, tmp_path):
    model = feature_model(hf_tiny, conv="gcn", num_layers=1).eval()
    enc = model.graph_encoder
    assert enc.has_graph and enc.features is not None and enc.out_dim == 32
    store = store_of([ACETIC_ACID, BENZENE])
    store.x = np.ones(len(store.identifiers), dtype=np.int64)
    mf.attach_features(store, ["rings", "elements"], cache_dir=tmp_path)
    assert enc(store.collate([0, 1])).shape == (2, 32)
    assert model.encode_graph(store.collate([0, 1])).shape == (2, 8)


def test_model_families_and_config_preparation():
    assert mf.model_families(ModelConfig(conv="gcn")) == ()
    cfg = ModelConfig(conv="features")
    assert mf.prepare_model_config(cfg) == mf.DEFAULT_FAMILIES
    assert cfg.mol_features == ",".join(mf.DEFAULT_FAMILIES)
    assert cfg.mol_features_dim == mf.feature_width(mf.DEFAULT_FAMILIES)
    cfg = ModelConfig(conv="gatv2", mol_features="maccs")
    assert mf.prepare_model_config(cfg) == ("maccs",) and cfg.mol_features_dim == 168


# ------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def features_run(demo_dir, tiny_text_model, tmp_path_factory):
    import main as main_script
    runs = tmp_path_factory.mktemp("feat_runs")
    result = main_script.main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--freeze-text",
                               "--conv", "features", "--mol-features", "rings,elements,maccs", "--epochs", "2",
                               "--batch-size", "32", "--hidden-dim", "32", "--embed-dim", "16", "--proj-hidden", "0",
                               "--max-length", "64", "--text-pooling", "mean", "--threads", "1", "--save-embeddings",
                               "--runs-dir", str(runs), "--run-name", "feat", "--cache-dir", str(runs / "cache"),
                               "--seed", "1", "--no-progress"])
    return runs / "feat", result


def test_features_member_trains_and_predictions_reproduce_it(features_run, tmp_path):
    import predictions as predictions_script
    from molret.models.checkpoint import load_model
    run_dir, result = features_run
    assert 0 < result["val"]["lrap"] <= 1
    model, cfg, vocab, _ = load_model(run_dir / "best.pt")
    assert cfg.model.mol_features == "rings,elements,maccs" and cfg.model.mol_features_dim == 16 + 20 + 167 + 1
    assert not hasattr(model.graph_encoder, "substructure_emb")  # no mol2vec table in a features member
    assert float(model.graph_encoder.features.std.max()) > 1.0 or float(model.graph_encoder.features.mean.abs().max()) > 0
    assert list((run_dir.parent / "cache").glob("molfeat-*.npz"))   # the splits' features are cached
    out = tmp_path / "pred.csv"
    predictions_script.main(["--model", str(run_dir / "best.pt"), "--out", str(out), "--no-progress"])
    assert out.read_bytes() == (run_dir / "submission.csv").read_bytes()


def test_features_member_in_an_ensemble_from_its_checkpoint(features_run, demo_dir):
    from molret.ranking.ensemble import checkpoint_embeddings
    run_dir, _ = features_run
    emb = checkpoint_embeddings(run_dir / "best.pt", splits=("val",), data_dir=str(demo_dir),
                                cache_dir=str(run_dir.parent / "cache"))
    saved = np.load(run_dir / "embeddings" / "val_graph_emb.npy")
    assert np.allclose(emb["val"].graph_emb, saved, atol=1e-5)


def test_library_search_uses_the_smiles_or_the_decoded_graphs(features_run, tmp_path):
    """A SMILES library is described from its SMILES, a folder of the same molecules' graphs from the
    decoded graphs: the same embeddings."""
    from molret.library import caches as LC
    from molret.models.checkpoint import load_model
    from molret.chem.smiles_graph import graph_to_text
    run_dir, _ = features_run
    model, cfg, vocab, _ = load_model(run_dir / "best.pt")
    smiles = [ACETIC_ACID, CYCLOPROPANE, BENZENE, "OCCO", "c1ccncc1"]
    smi = tmp_path / "lib.smi"
    smi.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    folder = tmp_path / "graphs"
    folder.mkdir()
    for i, s in enumerate(smiles):
        (folder / f"{i + 1}.graph").write_text(graph_to_text(*smiles_to_graph(s)))
    from molret.models.embedder import Embedder
    a = LC.library_embeddings(smi, Embedder.single(model, cfg, vocab), cache_dir=tmp_path / "c")
    b = LC.library_embeddings(folder, Embedder.single(model, cfg, vocab), cache_dir=tmp_path / "c")
    order = np.argsort([int(c) for c in b.library.ids])
    assert a.embeddings.shape == (5, 16)
    assert np.allclose(a.embeddings, b.embeddings[order], atol=1e-5)
