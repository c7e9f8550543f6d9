"""The search for the atom invariants and bond types whose Morgan hashes are a graph's identifiers.

Each atom has a list of *states*: ``(invariant, Environment)`` when its
identifier is in the table (its neighbour pairs are then a multiset every
bond must match), ``(invariant, None)`` for a radius-0 identifier, or
``(invariant, "hash")`` for a candidate invariant of an unknown identifier,
checked with ``environment_hash`` once its neighbours and bonds are set.
``EnvironmentSearch`` enumerates the assignments depth first, iteratively
(molecules of thousands of atoms would overflow Python's recursion).
"""
from __future__ import annotations

from collections import Counter, deque

from molret.chem.morgan_env import BOND_TYPES, Environment, cached_invariant_hash, environment_hash


class SearchLimit(Exception):
    """The search took more steps than allowed."""


class EnvironmentSearch:
    """Depth-first search over a graph's atom states and bond types; ``solutions()`` yields
    ``(invariants, bond types)`` that satisfy every atom's identifier.

    Decision ``d`` is either the state of the order's k-th atom or the type of
    one of its bonds to earlier atoms; an atom is checked once its last
    neighbour is placed.
    """

    def __init__(self, ids, bonds, adj, states, max_steps: int):
        self.ids, self.bonds, self.adj, self.states, self.max_steps = ids, bonds, adj, states, max_steps
        n = len(ids)
        self.order = self._order()
        pos = [0] * n
        for k, v in enumerate(self.order):
            pos[v] = k
        self.back = [[(w, e) for w, e in adj[v] if pos[w] < pos[v]] for v in self.order]
        self.finishing = [[] for _ in range(n)]   # atoms complete once the k-th atom and its bonds are placed
        for v in range(n):
            self.finishing[max([pos[v]] + [pos[w] for w, _ in adj[v]])].append(v)
        self.decisions = []                       # (k, -1): the k-th atom's state; (k, j): its j-th back bond
        for k in range(n):
            self.decisions.append((k, -1))
            self.decisions.extend((k, j) for j in range(len(self.back[k])))
        self.last = [j == len(self.back[k]) - 1 for k, j in self.decisions]
        self.chosen = [None] * n                  # the state of each placed atom
        self.types = [0] * len(bonds)
        self.remaining = [None] * n               # env atoms: the neighbour pairs not yet matched

    def _order(self) -> list:
        """Breadth first from the most constrained atom, so each atom's bonds to earlier atoms come together."""
        states, adj = self.states, self.adj
        order, placed = [], [False] * len(states)
        for start in sorted(range(len(states)), key=lambda i: (len(states[i]), -len(adj[i]))):
            if placed[start]:
                continue
            placed[start] = True
            queue = deque([start])
            while queue:
                v = queue.popleft()
                order.append(v)
                for w, _ in sorted(adj[v], key=lambda x: len(states[x[0]])):
                    if not placed[w]:
                        placed[w] = True
                        queue.append(w)
        return order

    def _complete_ok(self, v) -> bool:
        inv, env = self.chosen[v]
        if env != "hash" or not self.adj[v]:
            return True  # env atoms: every pair was matched against the multiset on the way
        pairs = [(self.types[e], cached_invariant_hash(self.chosen[w][0])) for w, e in self.adj[v]]
        return environment_hash(cached_invariant_hash(inv), pairs) == self.ids[v]

    def _options(self, d) -> list:
        k, j = self.decisions[d]
        v = self.order[k]
        if j < 0:  # states whose invariant every placed env neighbour still has room for
            return [s for s in self.states[v]
                    if not any(self.remaining[w] is not None and
                               not any(p[1] == s[0] and c > 0 for p, c in self.remaining[w].items())
                               for w, _ in self.back[k])]
        w, _e = self.back[k][j]
        inv_v, inv_w = self.chosen[v][0], self.chosen[w][0]
        rv, rw = self.remaining[v], self.remaining[w]
        return [bt for bt in BOND_TYPES
                if (rv is None or rv.get((bt, inv_w), 0) > 0) and (rw is None or rw.get((bt, inv_v), 0) > 0)]

    def _apply(self, d, opt, sign: int) -> None:
        """Place (sign -1) or take back (sign +1) option ``opt`` of decision ``d``."""
        k, j = self.decisions[d]
        v = self.order[k]
        if j < 0:
            if sign < 0:
                self.chosen[v] = opt
                self.remaining[v] = Counter(opt[1].neighbours) if isinstance(opt[1], Environment) else None
            else:
                self.chosen[v] = self.remaining[v] = None
            return
        w, e = self.back[k][j]
        self.types[e] = opt
        if self.remaining[v] is not None:
            self.remaining[v][(opt, self.chosen[w][0])] += sign
        if self.remaining[w] is not None:
            self.remaining[w][(opt, self.chosen[v][0])] += sign

    def _try_next(self, d, opts, at) -> bool:
        """Place the first option of decision ``d`` from ``at[d]`` on that passes the checks."""
        while at[d] < len(opts[d]):
            self.steps += 1
            if self.steps > self.max_steps:
                raise SearchLimit
            opt = opts[d][at[d]]
            self._apply(d, opt, -1)
            if not self.last[d] or all(self._complete_ok(u) for u in self.finishing[self.decisions[d][0]]):
                return True
            self._apply(d, opt, +1)
            at[d] += 1
        return False

    def solutions(self):
        total = len(self.decisions)
        opts, at = [None] * total, [0] * total   # the options of each decision, and the one placed
        self.steps = 0
        d = 0
        while d >= 0:
            if d == total:
                yield [s[0] for s in self.chosen], list(self.types)
            else:
                if opts[d] is None:
                    opts[d], at[d] = self._options(d), 0
                if self._try_next(d, opts, at):
                    d += 1
                    continue
                opts[d] = None                    # exhausted: on to the previous decision's next option
            d -= 1
            if d >= 0:
                self._apply(d, opts[d][at[d]], +1)
                at[d] += 1
