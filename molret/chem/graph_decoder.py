"""Challenge graphs -> RDKit molecules: decode the Morgan identifiers back to atoms and bonds, exactly.

1. The identifier -> environment table (``molret.chem.morgan_env.EnvironmentTable``:
   the one shipped in ``molret/chem/resources``, built by
   ``tools/build_env_table.py`` from public ChEBI structures, plus what the
   caller adds and what earlier graphs solved) fixes most atoms and, through
   their neighbour lists, the invariants of their neighbours and the types
   of their bonds;
2. radius-0 identifiers are inverted by enumerating invariants;
3. the remaining atoms and bonds are found by a search
   (``molret.chem.env_search``) in which an atom whose environment is unknown is
   checked against its identifier with the hash, without building a
   molecule per candidate;
4. the solution becomes an RDKit molecule, sanitised, and is accepted only if
   re-encoding it with ``molret.chem.smiles_graph.mol_to_graph`` gives the identical
   graph: the same bonds and every atom's identifier, on that atom or on the atom
   a renumbering that keeps the bonds puts there (``same_labelled_graph``).
   Anything else is reported undecodable with its reason: a wrong structure is
   never returned.

RDKit's log is silenced only around the decoder's own RDKit calls (a sanitised
candidate is expected to fail now and then; the reasons are ours), never for the
whole process.

The graphs carry no stereochemistry, so neither do the decoded molecules.
Isotope labels that the identifiers do not distinguish (``[13C]`` has the
isotope term of natural carbon) are lost the same way.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from molret.chem.env_search import EnvironmentSearch, SearchLimit
from molret.chem.smiles_graph import mol_to_graph, rdkit_log_blocked
from molret.chem.morgan_env import (AROMATIC, DOUBLE, SINGLE, TRIPLE, Environment, EnvironmentTable, isotope_for,
                                    plausible_invariants, radius0_candidates)

NO_STEREO_NOTE = "decoded from the challenge graph: no stereochemistry (the graphs carry none)"
STATUS_EXACT = "exact"
DEFAULT_MAX_STEPS = 20000
DEFERRED = "deferred: an unknown atom has no known neighbour"
MAX_SOLUTIONS = 16     # solutions built and verified per graph before giving up
MAX_MATCH_STEPS = 100_000  # renumberings tried by same_labelled_graph before it refuses


@dataclass
class Decoded:
    """The result of decoding one graph: ``mol`` and ``smiles`` when exact, else the ``reason``."""
    mol: object | None
    smiles: str | None
    status: str                                  # "exact", or why not
    learned: list = field(default_factory=list)  # (identifier, Environment) solved in this graph

    @property
    def ok(self) -> bool:
        return self.status == STATUS_EXACT


class _Deferred(Exception):
    """An atom that no known neighbour constrains: left for a wide pass."""


def _ring_atoms(n: int, adj: list) -> list:
    """1 for atoms on a cycle (an edge that is not a bridge), else 0; iterative bridge finding."""
    in_ring = [0] * n
    disc = [-1] * n
    low = [0] * n
    timer = 0
    for root in range(n):
        if disc[root] >= 0:
            continue
        disc[root] = low[root] = timer
        timer += 1
        stack = [(root, -1, iter(adj[root]))]
        while stack:
            v, parent_edge, it = stack[-1]
            advanced = False
            for w, e in it:
                if e == parent_edge:
                    continue
                if disc[w] < 0:
                    disc[w] = low[w] = timer
                    timer += 1
                    stack.append((w, e, iter(adj[w])))
                    advanced = True
                    break
                low[v] = min(low[v], disc[w])
                in_ring[v] = in_ring[w] = 1      # a back edge closes a cycle through v and w
            if advanced:
                continue
            stack.pop()
            if stack:
                u = stack[-1][0]
                low[u] = min(low[u], low[v])
                if low[v] <= disc[u]:            # edge u-v is not a bridge: both on a cycle
                    in_ring[u] = in_ring[v] = 1
    return in_ring


def _bonds_of(n: int, edge_index) -> list:
    """Undirected bonds (a < b) from a both-directions edge list; duplicates and self-loops refused."""
    seen = set()
    src, dst = edge_index
    for a, b in zip(list(src), list(dst)):
        a, b = int(a), int(b)
        if a == b:
            raise ValueError(f"atom {a} is bonded to itself")
        if not (0 <= a < n and 0 <= b < n):
            raise ValueError(f"bond {a}-{b} refers to an atom that does not exist")
        seen.add((a, b) if a < b else (b, a))
    return sorted(seen)


class GraphDecoder:
    """Decodes challenge graphs with an ``EnvironmentTable``, learning the environments it solves."""

    def __init__(self, table: EnvironmentTable | None = None, max_steps: int = DEFAULT_MAX_STEPS,
                 learn: bool = True):
        self.table = table if table is not None else EnvironmentTable.shipped()
        self.max_steps = max_steps
        self.learn = learn

    # -- one graph
    def decode(self, edge_index, identifiers, wide: bool = False) -> Decoded:
        """Decode one graph (``edge_index`` [2, E] both directions, one identifier per atom).

        ``wide`` lets atoms that no known neighbour constrains try every
        plausible invariant (slower); otherwise such graphs are left for a
        later pass once more environments are known.
        """
        try:
            ids = [int(i) for i in identifiers]
        except (TypeError, ValueError):
            return Decoded(None, None, "damaged graph: an identifier is not an integer")
        n = len(ids)
        if n == 0:
            return Decoded(None, None, "damaged graph: no atoms")
        try:
            bonds = _bonds_of(n, edge_index)
        except ValueError as e:
            return Decoded(None, None, f"damaged graph: {e}")
        adj = [[] for _ in range(n)]
        for e, (a, b) in enumerate(bonds):
            adj[a].append((b, e))
            adj[b].append((a, e))
        degree = [len(x) for x in adj]
        in_ring = _ring_atoms(n, adj)
        try:
            solutions = self._solve(ids, bonds, adj, degree, in_ring, wide)
            tried = 0
            reason = None
            for invs, types in solutions:
                tried += 1
                with rdkit_log_blocked():
                    mol, why = _build_molecule(invs, bonds, types)
                    if mol is not None:
                        why = reencoding_differs(mol, ids, bonds)
                if mol is None:
                    reason = why
                else:
                    if why is None:
                        return self._accept(mol, ids, invs, bonds, types, adj)
                    reason = why
                if tried >= MAX_SOLUTIONS:
                    break
        except SearchLimit:
            return Decoded(None, None, f"search limit: more than {self.max_steps} steps")
        except _Deferred:
            return Decoded(None, None, DEFERRED)
        if reason is None:
            unknown = sum(1 for i in ids if i not in self.table.envs)
            reason = (f"no structure fits: {unknown} atom identifier(s) not in the environment table"
                      if unknown else "no structure fits the identifiers")
        return Decoded(None, None, reason)

    def _accept(self, mol, ids, invs, bonds, types, adj) -> Decoded:
        from rdkit import Chem
        learned = []
        for i, ident in enumerate(ids):
            if not adj[i] or ident in self.table.envs:
                continue
            env = Environment(invs[i], tuple(sorted((types[e], invs[j]) for j, e in adj[i])))
            if env.identifier() == ident and all(e != env for _, e in learned):  # not a radius-0 atom of a diatomic
                learned.append((ident, env))
        if self.learn:
            for ident, env in learned:
                self.table.add(env, ident)
        return Decoded(mol, Chem.MolToSmiles(mol), STATUS_EXACT, learned)

    # -- the search
    def _atom_states(self, i, ident, degree, in_ring, adj):
        """The states the table and the radius-0 inversion give atom ``i``: (invariant, Environment or None)."""
        g, r = degree[i], in_ring[i]
        states = []
        if g:
            for env in self.table.envs.get(ident, ()):
                if env.center[1] - env.center[2] == g and env.center[5] == r and len(env.neighbours) == g:
                    states.append((env.center, env))
        if g == 0 or (g == 1 and degree[adj[i][0][0]] == 1):   # an isolated atom or a diatomic fragment
            states.extend((inv, None) for inv in radius0_candidates(g, r, ident))
        return states

    def _solve(self, ids, bonds, adj, degree, in_ring, wide):
        n = len(ids)
        states = [self._atom_states(i, ids[i], degree, in_ring, adj) for i in range(n)]
        # Unknown atoms: their invariant from the neighbour lists of known neighbours.
        unknown = [i for i in range(n) if not any(isinstance(env, Environment) for _, env in states[i])]
        for i in unknown:
            cands = None
            for j, _ in adj[i]:
                envs = [env for _, env in states[j] if isinstance(env, Environment)]
                if not envs:
                    continue
                here = {inv for env in envs for _, inv in env.neighbours
                        if inv[1] - inv[2] == degree[i] and inv[5] == in_ring[i]}
                cands = here if cands is None else cands & here
            if cands is None:
                if not wide:
                    if states[i]:
                        continue  # a radius-0 atom: its own states
                    raise _Deferred
                cands = set(plausible_invariants(degree[i], in_ring[i], self.table.invariants))
            if degree[i]:  # radius-0 states (if any) stay; hash-checked radius-1 states are added
                states[i] = states[i] + [(inv, "hash") for inv in sorted(cands)]
        for i in range(n):
            if not states[i]:
                return iter(())
        return EnvironmentSearch(ids, bonds, adj, states, self.max_steps).solutions()


_RD_BOND = None


def _build_molecule(invs, bonds, types):
    """(sanitised RDKit molecule, None) or (None, reason)."""
    global _RD_BOND
    from rdkit import Chem
    if _RD_BOND is None:
        _RD_BOND = {SINGLE: Chem.BondType.SINGLE, DOUBLE: Chem.BondType.DOUBLE,
                    TRIPLE: Chem.BondType.TRIPLE, AROMATIC: Chem.BondType.AROMATIC}
    rw = Chem.RWMol()
    aromatic_atoms = set()
    for (a, b), bt in zip(bonds, types):
        if bt == AROMATIC:
            aromatic_atoms.update((a, b))
    for i, (z, _deg, h, q, term, _ring) in enumerate(invs):
        atom = Chem.Atom(z)
        atom.SetFormalCharge(q)
        atom.SetNumExplicitHs(h)
        atom.SetNoImplicit(True)
        iso = isotope_for(z, term)
        if iso < 0:
            return None, f"no isotope of element {z} has isotope term {term}"
        if iso:
            atom.SetIsotope(iso)
        if i in aromatic_atoms:
            atom.SetIsAromatic(True)
        rw.AddAtom(atom)
    for (a, b), bt in zip(bonds, types):
        rw.AddBond(a, b, _RD_BOND[bt])
        if bt == AROMATIC:
            rw.GetBondBetweenAtoms(a, b).SetIsAromatic(True)
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception as e:  # RDKit raises several exception types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"RDKit cannot sanitise the decoded structure: {msg}"
    return mol, None


def reencoding_differs(mol, ids, bonds) -> str | None:
    """None when re-encoding ``mol`` gives the graph (``ids`` per atom, undirected ``bonds`` a < b), else why not."""
    from molret.utils.errors import MolretError
    try:
        edge_index, new_ids = mol_to_graph(mol)
    except MolretError as e:
        return f"re-encoding failed: {e}"
    new_bonds = sorted({(min(a, b), max(a, b)) for a, b in zip(edge_index[0].tolist(), edge_index[1].tolist())})
    if new_bonds != bonds:
        return "re-encoding changed the bonds"
    if same_labelled_graph(ids, [int(x) for x in new_ids], bonds):
        return None
    return "re-encoding gives other identifiers (aromaticity or charge placement differs)"


def same_labelled_graph(ids, new_ids, bonds, max_steps: int = MAX_MATCH_STEPS) -> bool:
    """Whether ``new_ids`` on the atoms of ``bonds`` is the graph ``ids`` on them, up to atom order.

    True when every atom keeps its identifier, or when a renumbering of the
    atoms that maps the bonds onto themselves (an automorphism) carries each
    atom's new identifier onto the graph's (a symmetric molecule whose charge,
    say, sits on the mirror atom).  Equal identifiers on other atoms are not
    enough: that is another molecule.  A search past ``max_steps`` answers False.
    """
    n = len(ids)
    if list(new_ids) == list(ids):
        return True
    if len(new_ids) != n or Counter(new_ids) != Counter(ids):
        return False
    nbrs = [set() for _ in range(n)]
    for a, b in bonds:
        nbrs[a].add(b)
        nbrs[b].add(a)
    with_label = defaultdict(list)
    for j, label in enumerate(new_ids):
        with_label[label].append(j)
    order = _breadth_first(nbrs)
    image, used = [-1] * n, [False] * n

    def candidates(i):
        mapped = [image[j] for j in nbrs[i] if image[j] >= 0]
        pool = nbrs[mapped[0]] if mapped else with_label[ids[i]]
        for c in sorted(pool):
            if (not used[c] and new_ids[c] == ids[i] and len(nbrs[c]) == len(nbrs[i])
                    and all(m in nbrs[c] for m in mapped)
                    and sum(1 for m in nbrs[c] if used[m]) == len(mapped)):
                yield c

    stack, steps = [candidates(order[0])], 0
    while stack:
        i = order[len(stack) - 1]
        if image[i] >= 0:                      # undo the last choice for this atom
            used[image[i]], image[i] = False, -1
        c = next(stack[-1], None)
        if c is None:
            stack.pop()
            continue
        steps += 1
        if steps > max_steps:
            return False
        image[i], used[c] = c, True
        if len(stack) == n:
            return True
        stack.append(candidates(order[len(stack)]))
    return False


def _breadth_first(nbrs) -> list:
    """The atoms in breadth-first order, component by component: each after a neighbour, where it has one."""
    order, seen = [], [False] * len(nbrs)
    for root in range(len(nbrs)):
        if seen[root]:
            continue
        seen[root] = True
        k = len(order)
        order.append(root)
        while k < len(order):
            for j in sorted(nbrs[order[k]]):
                if not seen[j]:
                    seen[j] = True
                    order.append(j)
            k += 1
    return order


def canonical_smiles(smiles: str) -> str | None:
    """Canonical SMILES without stereochemistry, for comparing a decoded molecule with a known one."""
    from rdkit import Chem
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)

