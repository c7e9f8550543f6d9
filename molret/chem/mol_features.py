"""Curated RDKit features of molecules: the chemistry a learned encoder of
2,801 pairs cannot find alone (ring systems, functional groups, elements).

``features_from_smiles(smiles, families)`` turns a list of SMILES (None: the
molecule is unknown) into a float32 matrix whose columns are the chosen
families (``FAMILIES``: name -> width and RDKit function) in the order given,
followed by one indicator column ``undecoded``.

A molecule that cannot be had as an RDKit molecule (the graph decoder could
not rebuild it, about 0.5% of the challenge graphs, or RDKit refuses its
SMILES) gets a row of zeros with ``undecoded`` = 1.  The features member
(``molret.models.encoders.FeatureEncoder``) standardises with statistics of the decoded
training molecules and sets the standardised values of such a row to 0 (the
training mean) while keeping the indicator: the molecule is still scored,
from an "average molecule" embedding plus what the indicator learned.

Counts (Morgan, fragments, elements, rings) are log1p-compressed; MACCS
keys are bits; ``descriptors`` are raw RDKit values (the model
standardises every column).

For a ``GraphStore`` (``store_features``), the molecules come from
``molret.chem.store_decoding`` (the challenge's graphs rebuilt exactly), or from
the SMILES a library already has; the features are cached through
``molret.utils.cache``, keyed by what they depend on (the store's graphs or the
SMILES, the families, this module's version and RDKit's).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from molret.utils import cache
from molret.utils.errors import MolretError

log = logging.getLogger(__name__)

FEATURES_VERSION = 1     # bump when a family's values can change for the same molecule
INDICATOR = "undecoded"  # the last column: 1 for a molecule without a structure

# element counts: these elements, then every other heavy element together
ELEMENTS = ("C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "B", "Si", "Se", "As", "Na", "K")
RING_SIZES = (3, 4, 5, 6, 7)   # then one column for rings of 8 atoms or more


# ---------------------------------------------------------------- families

def _maccs(mol) -> np.ndarray:
    from rdkit.Chem import MACCSkeys
    return np.array(list(MACCSkeys.GenMACCSKeys(mol)), dtype=np.float32)


_GENERATORS: dict = {}


def _morgan(radius: int) -> Callable:
    def compute(mol) -> np.ndarray:
        gen = _GENERATORS.get(radius)
        if gen is None:
            from rdkit.Chem import rdFingerprintGenerator
            gen = _GENERATORS[radius] = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=2048)
        return np.log1p(gen.GetCountFingerprintAsNumPy(mol).astype(np.float32))
    return compute


def _fragment_functions() -> list:
    from rdkit.Chem import Fragments
    return [(name, getattr(Fragments, name)) for name in sorted(dir(Fragments)) if name.startswith("fr_")]


def _fragments(mol) -> np.ndarray:
    return np.log1p(np.array([fn(mol) for _, fn in _fragment_functions()], dtype=np.float32))


def _elements(mol) -> np.ndarray:
    """Counts of ELEMENTS, other heavy atoms, hydrogens (implicit and explicit),
    heavy atoms, positively and negatively charged atoms; log1p."""
    counts = np.zeros(len(ELEMENTS) + 5, dtype=np.float32)
    index = {e: i for i, e in enumerate(ELEMENTS)}
    for atom in mol.GetAtoms():
        symbol = atom.GetSymbol()
        if symbol == "H":
            counts[len(ELEMENTS) + 1] += 1
            continue
        counts[index.get(symbol, len(ELEMENTS))] += 1
        counts[len(ELEMENTS) + 1] += atom.GetTotalNumHs()
        counts[len(ELEMENTS) + 2] += 1
        charge = atom.GetFormalCharge()
        counts[len(ELEMENTS) + 3] += charge > 0
        counts[len(ELEMENTS) + 4] += charge < 0
    return np.log1p(counts)


def _rings(mol) -> np.ndarray:
    """Rings (all, aromatic, aliphatic, saturated, aromatic and aliphatic
    heterocycles), rings by size (3..7, 8+), aromatic atoms, ring atoms,
    spiro and bridgehead atoms; log1p."""
    from rdkit.Chem import rdMolDescriptors as d
    sizes = [len(r) for r in mol.GetRingInfo().AtomRings()]
    by_size = [sum(1 for s in sizes if s == k) for k in RING_SIZES] + [sum(1 for s in sizes if s >= 8)]
    values = [len(sizes), d.CalcNumAromaticRings(mol), d.CalcNumAliphaticRings(mol), d.CalcNumSaturatedRings(mol),
              d.CalcNumAromaticHeterocycles(mol), d.CalcNumAliphaticHeterocycles(mol), *by_size,
              sum(1 for a in mol.GetAtoms() if a.GetIsAromatic()), sum(1 for a in mol.GetAtoms() if a.IsInRing()),
              d.CalcNumSpiroAtoms(mol), d.CalcNumBridgeheadAtoms(mol)]
    return np.log1p(np.array(values, dtype=np.float32))


def _descriptors(mol) -> np.ndarray:
    """Whole-molecule descriptors: log1p(weight), logP, TPSA, H-bond donors
    and acceptors, rotatable bonds, fraction of sp3 carbons, heteroatoms,
    net formal charge."""
    from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors as d
    values = [np.log1p(Descriptors.MolWt(mol)), Crippen.MolLogP(mol), d.CalcTPSA(mol), d.CalcNumHBD(mol),
              d.CalcNumHBA(mol), d.CalcNumRotatableBonds(mol), d.CalcFractionCSP3(mol), d.CalcNumHeteroatoms(mol),
              sum(a.GetFormalCharge() for a in mol.GetAtoms())]
    return np.array(values, dtype=np.float32)


@dataclass(frozen=True)
class Family:
    width: Callable[[], int]
    compute: Callable
    doc: str


FAMILIES = {
    "maccs": Family(lambda: 167, _maccs, "the 166 MACCS structural keys (RDKit; bit 0 unused)"),
    "morgan": Family(lambda: 2048, _morgan(2), "Morgan radius-2 environment counts folded to 2,048, log1p"),
    "morgan3": Family(lambda: 2048, _morgan(3), "Morgan radius-3 environment counts folded to 2,048, log1p"),
    "fragments": Family(lambda: len(_fragment_functions()), _fragments,
                        "RDKit Fragments.fr_* functional-group counts, log1p"),
    "elements": Family(lambda: len(ELEMENTS) + 5, _elements,
                       "element counts, other heavy atoms, H, heavy atoms, charged atoms; log1p"),
    "rings": Family(lambda: 6 + len(RING_SIZES) + 1 + 4, _rings, "ring counts by kind and size, ring atoms; log1p"),
    "descriptors": Family(lambda: 9, _descriptors, "weight, logP, TPSA, H-bond donors/acceptors, rotatable bonds, "
                                                   "sp3 fraction, heteroatoms, charge"),
}
DEFAULT_FAMILIES = ("maccs", "morgan", "fragments", "elements", "rings")


def parse_families(text: str | Sequence[str]) -> tuple:
    """Family names from a comma-separated string (or a sequence), checked,
    duplicates dropped; '' or 'default' gives DEFAULT_FAMILIES."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names or names == ["default"]:
        return DEFAULT_FAMILIES
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise MolretError(f"unknown molecule feature family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    return tuple(dict.fromkeys(names))


def feature_width(families) -> int:
    """Columns of ``features_from_smiles`` for ``families`` (the indicator included)."""
    return sum(FAMILIES[f].width() for f in parse_families(families)) + 1


def column_names(families) -> list:
    names = []
    for f in parse_families(families):
        if f == "fragments":
            names += [n for n, _ in _fragment_functions()]
        elif f == "elements":
            names += [f"n_{e}" for e in ELEMENTS] + ["n_other", "n_H", "n_heavy", "n_cation", "n_anion"]
        else:
            names += [f"{f}_{i}" for i in range(FAMILIES[f].width())]
    return names + [INDICATOR]


def _mol(smiles):
    if not smiles:
        return None
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    try:
        return Chem.MolFromSmiles(smiles)
    except Exception:  # noqa: BLE001 - RDKit raises several types for odd input
        return None


def _rows(args) -> np.ndarray:
    smiles, families = args
    width = feature_width(families)
    out = np.zeros((len(smiles), width), dtype=np.float32)
    for i, smi in enumerate(smiles):
        mol = _mol(smi)
        if mol is None:
            out[i, -1] = 1.0
            continue
        try:
            out[i, :-1] = np.concatenate([FAMILIES[f].compute(mol) for f in families])
        except Exception:  # noqa: BLE001 - a molecule RDKit parses but cannot describe: treated as unknown
            out[i] = 0.0
            out[i, -1] = 1.0
    return out


def features_from_smiles(smiles: Sequence, families=DEFAULT_FAMILIES, *, workers: int | None = 1,
                         progress: bool = False) -> np.ndarray:
    """[len(smiles), feature_width(families)] float32; None, '' or a SMILES
    RDKit refuses gives zeros with the ``undecoded`` indicator at 1.
    ``workers`` > 1 (None: one per core) computes chunks in forked processes."""
    families = parse_families(families)
    smiles = list(smiles)
    chunk = 512
    parts = [(smiles[i:i + chunk], families) for i in range(0, len(smiles), chunk)]
    if not parts:
        return np.zeros((0, feature_width(families)), dtype=np.float32)
    workers = max(1, min(workers or (os.cpu_count() or 1), 64))
    from tqdm.auto import tqdm
    bar = tqdm(total=len(smiles), desc="molecule features", unit="mol", disable=not progress, mininterval=1.0)
    out = []
    if workers == 1 or len(parts) == 1:
        for p in parts:
            out.append(_rows(p))
            bar.update(len(p[0]))
    else:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as pool:
            for rows in pool.imap(_rows, parts):
                out.append(rows)
                bar.update(len(rows))
    bar.close()
    return np.concatenate(out)


# --------------------------------------------------------------- graph stores

def rdkit_version() -> str:
    import rdkit
    return rdkit.__version__


def store_features(store, families, *, smiles: Sequence | None = None, cache_dir=None, workers: int | None = None,
                   progress: bool = False) -> np.ndarray:
    """Features of every graph of ``store`` (a ``GraphStore``), in its order.

    The molecules are ``smiles`` when given (a library's SMILES; None entries
    are unknown molecules), else the store's graphs decoded by
    ``molret.chem.store_decoding`` (undecodable graphs are unknown molecules).
    With ``cache_dir`` the decoding and the features are cached there."""
    families = parse_families(families)
    h = hashlib.sha1(f"molret-mol-features-v{FEATURES_VERSION}:rdkit-{rdkit_version()}:"
                     f"{','.join(families)}".encode())
    decoding_file = None
    if smiles is not None and len(smiles) != len(store):
        raise MolretError(f"{len(store)} molecules but {len(smiles)} SMILES")
    if smiles is not None and any(smiles):
        h.update(b"smiles:" + cache.json_array(list(smiles)).tobytes())
    else:
        from molret.chem.store_decoding import decoding_key
        smiles = None
        dkey = decoding_key(store)
        h.update(f"decoded:{dkey}".encode())
        if cache_dir is not None:
            decoding_file = Path(cache_dir) / f"decoded-{dkey[:16]}.npz"
    key = h.hexdigest()
    file = Path(cache_dir) / f"molfeat-{key[:16]}.npz" if cache_dir is not None else None
    if file is not None:
        hit = cache.load(file, key, FEATURES_VERSION)
        if hit is not None and hit["features"].shape == (len(store), feature_width(families)):
            return hit["features"]
    if smiles is None:
        from molret.chem.store_decoding import cached_decode_store
        decoded = cached_decode_store(store, decoding_file, workers=workers, progress=progress)
        smiles = decoded.smiles
        missing = sum(1 for s in smiles if not s)
        if missing:
            log.info(f"molecule features: {missing} of {len(smiles)} graphs could not be decoded (zero features, "
                     f"'{INDICATOR}' column set)")
    features = features_from_smiles(smiles, families, workers=workers, progress=progress)
    if file is not None:
        try:
            cache.save(file, key, FEATURES_VERSION, {"features": features})
        except MolretError as e:
            log.warning(f"could not cache the molecule features in {file}: {e}")
    return features


def attach_features(store, families, *, smiles: Sequence | None = None, cache_dir=None, progress: bool = False):
    """Set ``store.features`` (what ``GraphStore.collate`` hands to the model)
    unless it already holds these families' features; returns the store."""
    families = parse_families(families)
    if store.features is not None and store.feature_families == families:
        return store
    if cache_dir is None:
        cache_dir = getattr(store, "cache_dir", None) or cache.user_cache_base() / "mol-features"
    store.features = store_features(store, families, smiles=smiles, cache_dir=cache_dir, progress=progress)
    store.feature_families = families
    return store


# ------------------------------------------------------------------ models

def model_families(model_cfg) -> tuple:
    """The feature families a ``ModelConfig`` reads: its --mol-features, the
    default families for --conv features without them, else ()."""
    if model_cfg.mol_features:
        return parse_families(model_cfg.mol_features)
    return DEFAULT_FAMILIES if model_cfg.conv == "features" else ()


def prepare_model_config(model_cfg) -> tuple:
    """Before a model is built for training: its families written out in full
    (so the checkpoint names them) and ``mol_features_dim`` set; returns the families."""
    families = model_families(model_cfg)
    if families:
        model_cfg.mol_features = ",".join(families)
        model_cfg.mol_features_dim = feature_width(families)
    return families


def ensure_model_features(model_cfg, store, *, smiles: Sequence | None = None, cache_dir=None,
                          progress: bool = False):
    """``store`` with the features ``model_cfg`` reads attached (nothing for
    a model without --mol-features); their width is checked against the model's."""
    families = model_families(model_cfg)
    if not families:
        return store
    attach_features(store, families, smiles=smiles, cache_dir=cache_dir, progress=progress)
    if model_cfg.mol_features_dim and store.features.shape[1] != model_cfg.mol_features_dim:
        raise MolretError(f"the molecule features have {store.features.shape[1]} columns but the model was trained "
                          f"with {model_cfg.mol_features_dim} (another RDKit version?)")
    return store
