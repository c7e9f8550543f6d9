"""Offline name -> SMILES tables beside the chemicals package: name sources read from the data files
other PyPI packages ship (docs/experiments.md "Names 3.0: offline name tables").

Each :class:`NameTable` is a package (found with ``importlib.util.find_spec``, never imported: both
load their data at import time), its data file and a reader that turns it into (name, SMILES) pairs,
the preferred first; ``molret.names.sources.shared_table`` makes them a case-insensitive dictionary
once per process, looked up after the chemicals dictionary (``molret.names.sources.SOURCE_ORDER``):

- ``ligand2smiles``: the ``ligand2smiles`` package's ``ligand_list.json`` (12,868 names: Wikidata's
  SMILES statements, CC0, and PubChem, public domain; many natural products);
- ``drug_ner``: the ``drug-named-entity-recognition`` package's dictionary (drug names and
  synonyms from the DrugBank open vocabulary (CC0), MeSH, MedlinePlus, NHS and Wikipedia; SMILES
  from PubChem's CID-SMILES file for 6,803 drugs). Its SMILES are often the marketed salt
  ("abacavir" -> abacavir sulfate): a name maps to the drug's parent fragment, and names that say
  salt or hydrate are left out (``read_drug_ner``).

What a reader returns is kept in a cache file (``read_table``): drug_ner's pickle takes seconds to read.
A package that is not installed is one warning line (once; ``molret.names.sources``); the other
sources still resolve.
"""
from __future__ import annotations

import bz2
import hashlib
import importlib.util
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from molret.utils import cache
from molret.utils.errors import MolretError

CACHE_VERSION = 1       # of the cached (name, SMILES) pairs; the reader's code is in the key too


def read_ligand2smiles(path) -> list:
    """(name, SMILES) pairs of a JSON object ``{"name": "SMILES", ...}``, in the file's order (entries
    without a SMILES left out)."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return [(str(name), smiles) for name, smiles in data.items() if isinstance(smiles, str) and smiles]


class _PlainUnpickler(pickle.Unpickler):
    """Builds only pickle's own types (dicts, lists, strings, numbers): a data file that names any
    class or function is refused instead of run."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


# a name that says salt or hydrate: the table's SMILES is its drug's (often another salt), not the name's
_SALT_WORDS = re.compile(r"hydrochloride|hydrobromide|hydrate|sodium|potassium|calcium|magnesium|mesylate|"
                         r"maleate|tartrate|citrate|sulfate|fumarate|besylate|acetate|phosphate|bromide|chloride|"
                         r"succinate|tosylate|\bsalt\b|lithium|zinc", re.I)
_SMILES_ATOM = re.compile(r"\[[^\]]*\]|Br|Cl|[BCNOPSFI]|[bcnops]")
_ISOTOPE = re.compile(r"\[\d")
_CHARGE = re.compile(r"[+-]\d*\]")


def heavy_atoms(smiles: str) -> int:
    """Heavy atoms of a SMILES read from its text alone (bracket atoms, organic-subset symbols)."""
    return len(_SMILES_ATOM.findall(smiles))


# the acids and bases of drugs' salts (neutral, no stereo): set aside, never taken for the drug itself
COUNTER_IONS = ("OC(=O)C(O)C(O)C(=O)O", "OC(=O)CC(O)(CC(=O)O)C(=O)O", "OC(=O)C=CC(=O)O", "OC(=O)CCC(=O)O",
                "OC(=O)CC(O)C(=O)O", "CS(=O)(=O)O", "O=S(=O)(O)c1ccccc1", "Cc1ccc(S(=O)(=O)O)cc1",
                "O=S(=O)(O)c1ccc2ccccc2c1", "OP(=O)(O)O", "OS(=O)(=O)O", "CC(=O)O", "CC(O)C(=O)O",
                "OC(=O)C(=O)O", "OCC(O)C(O)C(O)C(O)C(=O)O", "CNCC(O)C(O)C(O)C(O)CO", "NCCCCC(N)C(=O)O",
                "N=C(N)NCCCC(N)C(=O)O", "NC(CO)(CO)CO", "OCCN", "OCCNCCO", "O=C(O)c1ccccc1O",
                "OC(=O)c1cc2ccccc2cc1O", "CCS(=O)(=O)O", "OS(=O)(=O)CCS(=O)(=O)O")
_COUNTER_IONS: set = set()


def _bare(smiles: str) -> str | None:
    """A fragment's neutral canonical SMILES without stereo (None when RDKit refuses it)."""
    from molret.chem.smiles_graph import rdkit_chem
    from molret.names.variants import neutralised
    Chem = rdkit_chem()
    mol = Chem.MolFromSmiles(smiles)
    mol = neutralised(mol) if mol is not None else None
    return Chem.MolToSmiles(mol, isomericSmiles=False) if mol is not None else None


def parent_fragment(smiles: str) -> str | None:
    """The drug in a salt's SMILES: its largest fragment (the first of equals) once the
    ``COUNTER_IONS`` are set aside, when every other distinct fragment has at most half its heavy
    atoms (small ions, water); None for a mixture of comparable molecules (a combination product)."""
    fragments = sorted(set(smiles.split(".")), key=lambda f: (-heavy_atoms(f), smiles.index(f)))
    if len(fragments) > 1:
        if not _COUNTER_IONS:
            _COUNTER_IONS.update(_bare(c) for c in COUNTER_IONS)
        fragments = [f for f in fragments if _bare(f) not in _COUNTER_IONS] or fragments
    if len(fragments) > 1 and 2 * heavy_atoms(fragments[1]) > heavy_atoms(fragments[0]):
        return None
    return fragments[0]


def uncharged(smiles: str) -> str | None:
    """A SMILES neutralised where it can be (``molret.names.variants.neutralised``); None when RDKit
    refuses it."""
    from molret.chem.smiles_graph import rdkit_chem
    from molret.names.variants import neutralised
    Chem = rdkit_chem()
    mol = Chem.MolFromSmiles(smiles)
    mol = neutralised(mol) if mol is not None else None
    return Chem.MolToSmiles(mol) if mol is not None else None


def read_drug_ner(path) -> list:
    """(name, SMILES) pairs of drug-named-entity-recognition's bz2 pickle: a dict with
    ``drug_canonical_to_data`` (canonical name -> {"smiles": ..., ...}) and
    ``drug_variant_to_canonical`` (name or synonym -> [canonical names]). Canonical names come
    first, then variants (the first of their canonical names with a SMILES). Its SMILES come from a
    PubChem look-up of the drug, often a salt or a labelled form: a name gets the drug's parent
    fragment (``parent_fragment``), neutralised when it was a salt's ion (the drug as named is the
    neutral compound: "aspirin" from aspirin calcium). Names that say salt or hydrate (but a salt's
    own entry, kept whole), mixtures and isotope-labelled SMILES are left out. Only plain data is
    unpickled."""
    with bz2.open(path, "rb") as fh:
        data = _PlainUnpickler(fh).load()
    smiles_of = {k: v["smiles"] for k, v in data.get("drug_canonical_to_data", {}).items()
                 if isinstance(v, dict) and isinstance(v.get("smiles"), str) and v["smiles"]}
    names = [(k, k) for k in smiles_of]
    for variant, canonicals in data.get("drug_variant_to_canonical", {}).items():
        canonical = next((c for c in canonicals if c in smiles_of), None)
        if canonical is not None:
            names.append((variant, canonical))
    parents = {c: parent_fragment(s) for c, s in smiles_of.items() if not _ISOTOPE.search(s)}
    parents = {c: uncharged(p) if p and p != smiles_of[c] and _CHARGE.search(p) else p
               for c, p in parents.items()}
    out = []
    for name, c in names:
        if not _SALT_WORDS.search(name):
            if parents.get(c):
                out.append((name, parents[c]))
        elif name == c and not _ISOTOPE.search(smiles_of[c]):
            out.append((name, smiles_of[c]))     # the salt's own entry: PubChem's look-up of that name
    return out


@dataclass(frozen=True)
class NameTable:
    """A name source from a package's data file: ``name`` the source's name, ``package`` what pip
    installs, ``module`` its import name, ``file`` the data file inside it, ``reader`` file -> (name,
    SMILES) pairs (raising one of ``READ_ERRORS`` on a damaged file)."""
    name: str
    package: str
    module: str
    file: str
    reader: Callable


TABLES = (
    NameTable("ligand2smiles", "ligand2smiles", "Ligand2SMILES", "ligand_list.json", read_ligand2smiles),
    NameTable("drug_ner", "drug-named-entity-recognition", "drug_named_entity_recognition",
              "drug_ner_dictionary.pkl.bz2", read_drug_ner),
)
TABLE_NAMES = tuple(t.name for t in TABLES)
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, pickle.UnpicklingError)


def find_table_file(table: NameTable) -> Path | None:
    """The table's data file in its installed package (found without importing it); None if absent."""
    spec = importlib.util.find_spec(table.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / table.file
        if path.is_file():
            return path
    return None


def read_table(table: NameTable, path, cache_dir=None) -> list:
    """``table.reader(path)``, kept in a ``molret.utils.cache`` file (in ``cache_dir``, default
    ``user_cache_base() / "name-tables"``) keyed on the data file (path, size, modification time) and
    this module's code; a folder that cannot be written only costs time."""
    path = Path(path)
    st = path.stat()
    code = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{code}"
    folder = Path(cache_dir) if cache_dir is not None else cache.user_cache_base() / "name-tables"
    file = folder / f"{table.name}.npz"
    hit = cache.load(file, key, CACHE_VERSION,
                     lambda arrays, meta: [(str(n), str(s)) for n, s in cache.from_json_array(arrays["pairs"])])
    if hit is not None:
        return hit
    pairs = table.reader(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        cache.save(file, key, CACHE_VERSION, {"pairs": cache.json_array(pairs)}, {"table": table.name})
    except (MolretError, OSError):
        pass  # a read-only cache folder only costs time
    return pairs
