"""What a structure has: the attributes the claims rules (``molret.ranking.claims.statements``) are checked
against, computed with RDKit from a molecule's SMILES.

``attributes(smiles)`` gives {attribute: value} (None for a SMILES RDKit cannot read); ``attribute_matrix``
a [molecules, attributes] matrix (NaN rows for unknown molecules) in ``ATTRIBUTES`` order, cached in a folder
by ``cached_attribute_matrix`` (molret.utils.cache; keyed by the SMILES, this module's tables and RDKit's version).
"""
from __future__ import annotations

import hashlib
import logging
from collections import deque
from functools import lru_cache
from pathlib import Path

import numpy as np

from molret.utils import cache
from molret.utils.errors import MolretError

log = logging.getLogger(__name__)
ATTRIBUTES_VERSION = 1   # bump when an attribute's value can change for the same molecule

# class word -> SMARTS alternatives (any one matching); generic bonds (~) where a class allows any saturation
CLASS_SMARTS = {
    "steroid": ("[#6]1~[#6]~[#6]~[#6]2~[#6](~[#6]~1)~[#6]~[#6]~[#6]1~[#6]~2~[#6]~[#6]~[#6]2~[#6]~[#6]~[#6]~[#6]~1~2",),
    "flavonoid": ("[#6]1(-c2ccccc2)~[#6]~[#6]~c2ccccc2~[#8]~1", "[#6]1~[#6](-c2ccccc2)~[#6]~c2ccccc2~[#8]~1",
                  "c1ccccc1-[#6](=O)-[#6]~[#6]-c1ccccc1", "[#6]1(~[#6]-c2ccccc2)~[#6]~c2ccccc2~[#8]~1"),
    "beta_lactam": ("[#8]=[#6]1~[#6]~[#6]~[#7]~1",),
    "fatty_acid": ("[CX3](=O)([OX2,OX1-,SX2])[#6;!R]~[#6;!R]~[#6;!R]~[#6;!R]",),
    "acyl_coa": ("[#16]-[#6]-[#6]-[#7]-[#6](=O)-[#6]-[#6]-[#7]-[#6]=O",),
    "nucleoside": ("[#7;a]-[#6]1~[#8]~[#6]~[#6]~[#6]~1",),
    "purine": ("[#6]1~[#7]~[#6]~[#7]~[#6]2~[#6]~1~[#7]~[#6]~[#7]~2",),
    "pyrimidine": ("[#6]1~[#6]~[#7]~[#6]~[#7]~[#6]~1",),
    "indole": ("[#6]1~[#6]~[#6]~[#6]2~[#6](~[#6]~1)~[#6]~[#6]~[#7]~2",),
    "pyridine": ("n1ccccc1",),
    "quinoline": ("[#6]1~[#6]~[#6]~[#6]2~[#6](~[#6]~1)~[#6]~[#6]~[#6]~[#7]~2",
                  "[#6]1~[#6]~[#6]~[#6]2~[#6](~[#6]~1)~[#6]~[#6]~[#7]~[#6]~2"),
    "imidazole": ("[#6]1~[#7]~[#6]~[#7]~[#6]~1",),
    "furan": ("[#8]1~[#6]~[#6]~[#6]~[#6]~1",),
    "thiophene": ("[#16]1~[#6]~[#6]~[#6]~[#6]~1",),
    "benzene": ("c1ccccc1",),
    "naphthalene": ("c1ccc2ccccc2c1",),
    "coumarin": ("[#8]=[#6]1~[#6]~[#6]~[#6]2~[#6]~[#6]~[#6]~[#6]~[#6]~2~[#8]~1",),
    "piperidine": ("N1CCCCC1",),
    "pyrrolidine": ("N1CCCC1",),
    "piperazine": ("N1CCNCC1",),
    "morpholine": ("N1CCOCC1",),
    "lactone": ("[#6;R](=[#8])[#8;R]",),
    "lactam": ("[#6;R](=[#8])[#7;R]",),
    "ester": ("[#6][CX3](=O)[OX2][#6]",),
    "amide": ("[CX3](=O)[NX3]",),
    "ether": ("[OX2]([#6;!$(C=O)])[#6;!$(C=O)]",),
    "ketone": ("[#6][CX3](=O)[#6]",),
    "aldehyde": ("[CX3H1](=O)",),
    "primary_alcohol": ("[CX4H2][OX2H]",),
    "secondary_alcohol": ("[CX4H1]([#6])([#6])[OX2H]",),
    "tertiary_alcohol": ("[CX4H0]([#6])([#6])([#6])[OX2H]",),
    "phenols": ("c[OX2H1,OX1-]",),
    "carboxylic_acid": ("[CX3](=O)[OX2H1]",),
    "carboxylate": ("[CX3](=O)[OX1-]",),
    "primary_amine": ("[NX3H2][#6]", "[NX4H3+][#6]"),
    "secondary_amine": ("[NX3H1]([#6])[#6]", "[NX4H2+]([#6])[#6]"),
    "tertiary_amine": ("[NX3H0]([#6])([#6])[#6]", "[NX4H1+]([#6])([#6])[#6]"),
    "quaternary_ammonium": ("[NX4+H0]",),
    "nitrile": ("C#N",),
    "thiol": ("[SX2H1,SX1-][#6]",),
    "epoxide": ("[#6]1~[#8]~[#6]~1",),
    "guanidine": ("[#7]~[#6](~[#7])~[#7]",),
    "urea": ("[#7][CX3](=O)[#7]",),
    "glycerophospholipid": ("P(~O)(~O)(~O)OCC(O)CO", "P(~O)(~O)(~O)OCC(CO)O"),
    "glycerolipid": ("C(=O)OCC(O)CO", "C(=O)OCC(CO)O"),
    "quinone": ("[#8]=[#6]1~[#6]~[#6]~[#6](=[#8])~[#6]~[#6]~1", "[#8]=[#6]1[#6](=[#8])~[#6]~[#6]~[#6]~[#6]~1"),
    "azo": ("[#6]-[#7]=[#7]-[#6]",),
    "sulfonamide": ("S(=O)(=O)[#7]",),
    "hydroperoxide": ("[OX2][OX2H,OX1-]",),
    "aromatic": ("a",),
    "heterocycle": ("[!#6;!#1;R]",),
    "macrocycle": ("[r{12-}]",),
}

# group count -> SMARTS whose unique matches (by the first atom) are counted
GROUP_SMARTS = {
    "hydroxy": "[OX2H1][#6;!$([#6]=O)]",
    "amino": "[NX3,NX4+;!$(N[#6]=[O,S,N]);!$(N~[!#6;!#1]);!a]",
    "carboxy": "[CX3](=O)[OX2H1,OX1-]",
    "sulfo": "[SX4](=O)(=O)[OX2,OX1-]",
    "methoxy": "[CH3][OX2][#6]",
    "methyl": "[CH3]",
    "oxo": "[#6;!$([#6](=O)[OX2H1,OX1-])]=[OX1]",
    "nitro": "[NX3](~[OX1])~[OX1]",
    "acetyl": "[CH3][CX3](=O)[#7,#8]",
    "amino_acid_units": "[CX4;$([CX4][NX3,NX4+]);$([CX4][CX3](=O)[OX2,OX1-,NX3])]",
}
ELEMENTS = {"phosphate": 15, "chloro": 17, "bromo": 35, "fluoro": 9, "iodo": 53, "sulfur": 16, "phosphorus": 15,
            "selenium": 34, "boron": 5, "silicon": 14, "arsenic": 33, "nitrogen": 7}
NONMETALS = {1, 2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32, 33, 34, 35, 36, 52, 53, 54}
ATTRIBUTES = (("net_charge", "zwitterion", "chain", "carbons", "cc_double", "ring_system_rings", "sugar_rings",
               "amino_acid_units", "waters", "fragments", "metal")
              + tuple(g for g in GROUP_SMARTS if g != "amino_acid_units") + tuple(ELEMENTS)
              + tuple(f"class:{c}" for c in CLASS_SMARTS))


@lru_cache(maxsize=None)
def _pattern(smarts: str):
    from rdkit import Chem
    p = Chem.MolFromSmarts(smarts)
    if p is None:
        raise ValueError(f"bad SMARTS {smarts}")
    return p


def longest_carbon_chain(mol) -> int:
    """Atoms of the longest path of acyclic carbons (a forest: the diameter of each tree, two BFS)."""
    chain = {a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 6 and not a.IsInRing()}
    nbrs = {i: [n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetIdx() in chain] for i in chain}

    def farthest(start):
        dist, queue, last = {start: 1}, deque([start]), start
        while queue:
            last = queue.popleft()
            for n in nbrs[last]:
                if n not in dist:
                    dist[n] = dist[last] + 1
                    queue.append(n)
        return last, dist
    best, seen = 0, set()
    for i in chain:
        if i in seen:
            continue
        end, dist = farthest(i)
        seen |= set(dist)
        _, dist2 = farthest(end)
        best = max(best, max(dist2.values()))
    return best


def ring_system_rings(mol) -> int:
    """Rings of the largest ring system (rings that share atoms, merged)."""
    systems = []
    for ring in mol.GetRingInfo().AtomRings():
        ring, n = set(ring), 1
        for s in [s for s in systems if s[0] & ring]:
            systems.remove(s)
            ring |= s[0]
            n += s[1]
        systems.append((ring, n))
    return max((n for _, n in systems), default=0)


def sugar_rings(mol) -> int:
    """5- and 6-membered rings of one oxygen and saturated carbons, two or more carrying an O or N outside it."""
    n = 0
    for ring in mol.GetRingInfo().AtomRings():
        atoms = [mol.GetAtomWithIdx(i) for i in ring]
        if len(ring) not in (5, 6) or sum(a.GetAtomicNum() == 8 for a in atoms) != 1:
            continue
        carbons = [a for a in atoms if a.GetAtomicNum() == 6]
        if len(carbons) != len(ring) - 1 or any(a.GetIsAromatic() or a.GetHybridization().name != "SP3"
                                                 for a in carbons):
            continue
        substituted = sum(any(nb.GetAtomicNum() in (7, 8) and nb.GetIdx() not in ring for nb in a.GetNeighbors())
                          for a in carbons)
        n += substituted >= 2
    return n


def attributes(smiles: str | None) -> dict | None:
    """{attribute: value} of a molecule (ATTRIBUTES), None when RDKit cannot read ``smiles``."""
    from rdkit import Chem
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return None
    charges = [a.GetFormalCharge() for a in mol.GetAtoms()]
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    fragments = Chem.GetMolFrags(mol)
    out = {"net_charge": sum(charges), "zwitterion": int(any(c > 0 for c in charges) and any(c < 0 for c in charges)),
           "chain": longest_carbon_chain(mol), "carbons": numbers.count(6),
           "cc_double": sum(b.GetBondTypeAsDouble() == 2 and not b.GetIsAromatic() and
                            b.GetBeginAtom().GetAtomicNum() == 6 and b.GetEndAtom().GetAtomicNum() == 6
                            for b in mol.GetBonds()),
           "ring_system_rings": ring_system_rings(mol), "sugar_rings": sugar_rings(mol),
           "waters": sum(len(f) == 1 and numbers[f[0]] == 8 and charges[f[0]] == 0 for f in fragments),
           "fragments": len(fragments), "metal": sum(z not in NONMETALS for z in numbers)}
    for g, smarts in GROUP_SMARTS.items():
        out[g] = len({m[0] for m in mol.GetSubstructMatches(_pattern(smarts), uniquify=True, maxMatches=1000)})
    for name, z in ELEMENTS.items():
        out[name] = numbers.count(z)
    for c, alternatives in CLASS_SMARTS.items():
        out[f"class:{c}"] = int(any(mol.HasSubstructMatch(_pattern(s)) for s in alternatives))
    return out


def attribute_matrix(smiles) -> np.ndarray:
    """[len(smiles), len(ATTRIBUTES)] attributes, NaN rows for molecules RDKit cannot read."""
    from rdkit import rdBase
    out = np.full((len(smiles), len(ATTRIBUTES)), np.nan, np.float32)
    with rdBase.BlockLogs():   # the decoder's SMILES are valid; RDKit's warnings about them are noise here
        for i, s in enumerate(smiles):
            a = attributes(s)
            if a is not None:
                out[i] = [a[k] for k in ATTRIBUTES]
    return out


def attributes_key(smiles) -> str:
    """sha1 of what an attribute matrix depends on: the SMILES, the attributes and patterns, RDKit's version."""
    import rdkit
    h = hashlib.sha1(f"molret-claims-attributes-v{ATTRIBUTES_VERSION}:rdkit-{rdkit.__version__}".encode())
    h.update(repr((ATTRIBUTES, CLASS_SMARTS, GROUP_SMARTS, ELEMENTS)).encode())
    h.update(cache.json_array(list(smiles)).tobytes())
    return h.hexdigest()


def cached_attribute_matrix(smiles, cache_dir=None) -> np.ndarray:
    """``attribute_matrix(smiles)``, read from (else written to) ``cache_dir`` when given."""
    smiles = list(smiles)
    if cache_dir is None:
        return attribute_matrix(smiles)
    key = attributes_key(smiles)
    file = Path(cache_dir) / f"claims-attributes-{key[:16]}.npz"
    hit = cache.load(file, key, ATTRIBUTES_VERSION)
    if hit is not None and hit["attributes"].shape == (len(smiles), len(ATTRIBUTES)):
        return hit["attributes"]
    out = attribute_matrix(smiles)
    try:
        cache.save(file, key, ATTRIBUTES_VERSION, {"attributes": out})
    except MolretError as e:
        log.warning(f"could not cache the claims attributes in {file}: {e}")
    return out
