"""Molecules built with RDKit from the resolved parents a query's description names, where no name says it.

Where no name can say it ("obtained by formal condensation of the carboxy group of Y with the amino group
of Z", "the N-acetyl derivative of Y" for a Y no source knows substituted, "Y in which the phenolic
hydrogen has been replaced by a sulfo group"), the molecule is built from the parents' structures with
RDKit, and only when each parent has exactly one site of the named kind (else nothing). The
sentences are read as ``molret.names.derived`` reads them (same clause ends and parent names).
Which rules are used, and how often each is exactly right: docs/experiments.md "Names 3.0".
"""
from __future__ import annotations

import re
from typing import Sequence

from molret.names.derived import CLAUSE_END, EDIT_RULES, ESTER_PHRASE, clean_parent, parent_before, sentence_before

# (SMARTS, attach atom, leaving atom or None) per site kind; a leaving atom is the acid's O-H
_SITES = {
    "carboxy": ("[CX3](=O)[OX2H1]", 0, 2),
    "sulfo": ("[SX4](=O)(=O)[OX2H1]", 0, 3),
    "hydroxy": ("[OX2H1;$(O[#6]);!$(O[#6,#16,#15]=[#8,#16])]", 0, None),
    "alcoholic hydroxy": ("[OX2H1;$(O[CX4])]", 0, None),
    "phenolic hydroxy": ("[OX2H1;$(Oc)]", 0, None),
    "amino": ("[NX3;H3,H2,H1;+0;!$(N[#6,#16,#15]=[#7,#8,#16]);!$(N-[#7,#8]);!$(N-[#6]#*)]", 0, None),
    "primary amino": ("[NX3;H3,H2;+0;!$(N[#6,#16,#15]=[#7,#8,#16]);!$(N-[#7,#8]);!$(N-[#6]#*)]", 0, None),
    "secondary amino": ("[NX3;H1;+0;!$(N[#6,#16,#15]=[#7,#8,#16]);!$(N-[#7,#8]);!$(N-[#6]#*)]", 0, None),
}
_ACID_KINDS = ("carboxy", "sulfo")
# substituents an edit attaches in place of a hydrogen (first atom attached)
_FRAGMENTS = {"methyl": "C", "ethyl": "CC", "propyl": "CCC", "acetyl": "C(C)=O", "formyl": "C=O",
              "propanoyl": "C(=O)CC", "propionyl": "C(=O)CC", "butanoyl": "C(=O)CCC", "butyryl": "C(=O)CCC",
              "benzoyl": "C(=O)c1ccccc1", "sulfo": "S(=O)(=O)O", "phosphono": "P(=O)(O)O", "benzyl": "Cc1ccccc1",
              "hydroxy": "O", "amino": "N", "carboxy": "C(=O)O", "carbamoyl": "C(N)=O"}


def _group_kind(text: str) -> str | None:
    """The site kind of "the (2-)carboxy group", "the secondary amino group", "the anomeric hydroxy group"."""
    t = text.lower()
    if re.search(r"carboxy|carboxylic acid", t):
        return "carboxy"
    if re.search(r"\bsulfo\b|sulfonic acid", t):
        return "sulfo"
    if re.search(r"hydroxy|hydroxyl", t):
        return ("phenolic hydroxy" if "phenolic" in t else "alcoholic hydroxy" if "alcoholic" in t else "hydroxy")
    if re.search(r"amino|anilino", t):
        return "primary amino" if "primary" in t else "secondary amino" if "secondary" in t else "amino"
    return None


_GROUP = r"(?:the\s+)?(?P<g{n}>[\w'(),-]*(?:\s+[\w'(),-]+)?\s+group)"
_CONDENSATION = re.compile(
    r"\bcondensation\s+(?:reaction\s+)?(?:between|of)\s+" + _GROUP.format(n=1) +
    r"\s+of\s+(?:an?\s+|the\s+)?(?P<p1>.+?)\s+(?:with|and)\s+(?:" + _GROUP.format(n=2) + r"\s+of\s+)?"
    r"(?:an?\s+|the\s+)?(?P<p2>.+?)" + CLAUSE_END, re.I | re.S)
_ESTER_OF = re.compile(r"\b(?:is|are)\s+(?:an?|the)\s+(?P<alkyl>methyl|ethyl)\s+ester\s+of\s+(?:an?\s+|the\s+)?"
                       r"(?P<parent>.+?)" + CLAUSE_END, re.I | re.S)
_H_REPLACED = re.compile(
    r"\s+in which\s+the\s+(?P<site>(?:(?:phenolic|alcoholic|hydroxy|hydroxyl|amino|carboxy)\s+)+)hydrogen\s+"
    r"(?:has\s+been|is)\s+(?:replaced|substituted)\s+by\s+(?:an?\s+)?(?P<group>\S+)\s+(?:group|residue|moiety)"
    + CLAUSE_END, re.I | re.S)
_SITE_DERIVATIVE = re.compile(r"\b(?:is|are)\s+(?:an?\s+|the\s+)(?P<atom>[NO])-(?P<group>[a-z]+)\s+derivative\s+of\s+"
                              r"(?:the\s+parent\s+)?(?:an?\s+|the\s+)?(?P<parent>.+?)" + CLAUSE_END, re.S)


def derived_edits(query: str, subject: str | None = None, rules=EDIT_RULES) -> list[tuple[str, tuple, tuple]]:
    """(rule, parent names, edit) of each structure edit the description states, in ``rules``' order:
    edit ("condense", kind1, kind2) joins parent 1's site kind1 to parent 2's kind2 (kind2 None: the
    other parent's only site that can condense with kind1); ("attach", kind, group) puts
    ``_FRAGMENTS[group]`` on the parent's only site of that kind. The parents are names to resolve;
    ``derived_structures`` builds the molecules."""
    query = " ".join(str(query).split())
    out = []
    for rule in (r for r in rules if r in EDIT_RULES):
        if rule == "condensation":
            for m in _CONDENSATION.finditer(query):
                k1, k2 = _group_kind(m.group("g1")), _group_kind(m.group("g2")) if m.group("g2") else None
                p1, p2 = clean_parent(m.group("p1")), clean_parent(m.group("p2"))
                if not (k1 and p1 and p2) or (m.group("g2") and not k2) or p1 == p2:
                    continue
                if k2 is not None and (k1 in _ACID_KINDS) == (k2 in _ACID_KINDS):
                    continue
                out.append((rule, (p1, p2), ("condense", k1, k2)))
        elif rule == "ester_edit":
            for m in list(ESTER_PHRASE.finditer(query)) + list(_ESTER_OF.finditer(query)):
                parent = clean_parent(m.group("parent"))
                alcohol = {"methyl": "methanol", "ethyl": "ethanol"}[m.group("alkyl").lower()]
                if parent and (m.groupdict().get("alcohol") or alcohol).lower() == alcohol:
                    out.append((rule, (parent, alcohol), ("condense", "carboxy", "hydroxy")))
        elif rule == "site_edit":
            for m in _H_REPLACED.finditer(query):
                parent, group = parent_before(sentence_before(query, m.start())), m.group("group").lower()
                kind = _group_kind(m.group("site")) or ("hydroxy" if "phenolic" in m.group("site").lower() else None)
                if "phenolic" in m.group("site").lower():
                    kind = "phenolic hydroxy"
                if parent and kind and group in _FRAGMENTS:
                    out.append((rule, (parent,), ("attach", kind, group)))
            for m in _SITE_DERIVATIVE.finditer(query):
                parent, group = clean_parent(m.group("parent")), m.group("group")
                if parent and group in _FRAGMENTS:
                    out.append((rule, (parent,), ("attach", "amino" if m.group("atom") == "N" else "hydroxy", group)))
    unique = []
    for e in out:
        if e not in unique:
            unique.append(e)
    return unique


def _site_atoms(mol, kind: str) -> list[tuple[int, int | None]]:
    """(attach atom, leaving atom) of each distinct site of ``kind`` in ``mol``."""
    from rdkit import Chem
    smarts, attach, leaving = _SITES[kind]
    if kind not in _SITE_PATTERNS:
        _SITE_PATTERNS[kind] = Chem.MolFromSmarts(smarts)
    seen, out = set(), []
    for match in mol.GetSubstructMatches(_SITE_PATTERNS[kind]):
        if match[attach] not in seen:
            seen.add(match[attach])
            out.append((match[attach], None if leaving is None else match[leaving]))
    return out


_SITE_PATTERNS: dict = {}


def _join(mol1, site1: tuple, mol2, site2: tuple) -> str | None:
    """SMILES of ``mol1`` and ``mol2`` bonded at the attach atoms of their sites (each losing its leaving
    atom or one hydrogen); None when RDKit refuses the result."""
    from rdkit import Chem
    rw = Chem.RWMol(Chem.CombineMols(mol1, mol2))
    offset = mol1.GetNumAtoms()
    a, b = site1[0], site2[0] + offset
    rw.AddBond(a, b, Chem.BondType.SINGLE)
    for atom_index in (a, b):
        atom = rw.GetAtomWithIdx(atom_index)
        if atom.GetNumExplicitHs() > 0:
            atom.SetNumExplicitHs(atom.GetNumExplicitHs() - 1)
    leaving = [i for i in (site1[1], None if site2[1] is None else site2[1] + offset) if i is not None]
    for i in sorted(leaving, reverse=True):
        rw.RemoveAtom(i)
    try:
        mol = rw.GetMol()
        Chem.SanitizeMol(mol)
        return Chem.MolToSmiles(mol)
    except Exception:  # noqa: BLE001 - RDKit raises its own types
        return None


def apply_edit(edit: tuple, parent_smiles: Sequence[str]) -> str | None:
    """The SMILES ``edit`` (``derived_edits``) builds from its parents' SMILES, None unless every
    parent has exactly one site of the kind it names."""
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    mols = [Chem.MolFromSmiles(s) if s else None for s in parent_smiles]
    if any(m is None for m in mols):
        return None
    if edit[0] == "condense":
        _, k1, k2 = edit
        s1 = _site_atoms(mols[0], k1)
        if k2 is None:
            # the other parent's only site that condenses with kind1 (an acid with an alcohol or amine, or back)
            kinds = ("hydroxy", "amino") if k1 in _ACID_KINDS else _ACID_KINDS
            s2 = [s for k in kinds for s in _site_atoms(mols[1], k)]
        else:
            s2 = _site_atoms(mols[1], k2)
        if len(s1) != 1 or len(s2) != 1:
            return None
        return _join(mols[0], s1[0], mols[1], s2[0])
    if edit[0] == "attach":
        _, kind, group = edit
        sites = _site_atoms(mols[0], kind)
        if len(sites) != 1:
            return None
        return _join(mols[0], sites[0], Chem.MolFromSmiles(_FRAGMENTS[group]), (0, None))
    return None


def derived_structures(query: str, subject: str | None, parent_smiles: dict,
                       rules=EDIT_RULES) -> list[tuple[str, str]]:
    """(rule, SMILES) of each edit of ``derived_edits`` whose parents all have a SMILES in
    ``parent_smiles`` (name -> SMILES; the resolved parents) and whose sites are unambiguous, in order."""
    out = []
    for rule, parents, edit in derived_edits(query, subject, rules):
        if all(parent_smiles.get(p) for p in parents):
            smiles = apply_edit(edit, [parent_smiles[p] for p in parents])
            if smiles and (rule, smiles) not in out:
                out.append((rule, smiles))
    return out
