"""A graph library decoded to SMILES in shards, on the engine of ``molret.library.distribute`` (Ray or processes).

The passes of ``molret.chem.store_decoding.decode_store`` run shard-parallel:
in each pass, shard ``I`` of ``N`` (the graphs whose position ``r`` in the
library has ``r % N == I``) decodes its graphs still to do with the table as
the pass starts (learning from its own exact graphs as it goes, as a worker of
one process does); the driver then adds every environment learned to the
table, and the graphs that failed are retried in the next pass, a *wide* one
when a pass taught nothing, until nothing is left or a wide pass teaches
nothing.  A worker reads only its shard's graphs (in later passes only those
still to do), so the library is never shipped; the table travels once per
pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from molret.utils.errors import MolretError


@dataclass
class DecodePassJob:
    """One pass over the shards (a ``molret.library.distribute`` job)."""
    library: str
    num_shards: int
    table: object                           # molret.chem.morgan_env.EnvironmentTable as the pass starts
    wide: bool = False
    todo: dict | None = None                # shard -> library positions still to decode (None: all)

    def setup(self) -> None:
        pass

    def run(self, shard: int) -> tuple[list, list, list]:
        """([(position, SMILES or None, status)], [(identifier, environment) learned], [positions whose graph
        file did not parse]) of the shard's graphs to do."""
        from molret.chem.store_decoding import decode_graphs
        from molret.data.graph_store import GraphSource, build_graph_store
        from molret.library.reading import graph_layout, list_graph_ids
        source_path, ids_file = graph_layout(self.library)
        ids = list_graph_ids(source_path, ids_file)
        rows = range(shard, len(ids), self.num_shards) if self.todo is None else self.todo.get(shard, [])
        row_of = {ids[r]: r for r in rows}
        store = build_graph_store(list(row_of), GraphSource(source_path), progress=False, on_error=lambda e: None)
        out, learned = decode_graphs(store, self.table, range(len(store)), self.wide) if len(store) else ([], [])
        parsed = set(store.cids)
        return ([(row_of[store.cids[g]], smi, st) for g, smi, st in out], learned,
                [r for cid, r in row_of.items() if cid not in parsed])


@dataclass
class ShardedDecoding:
    """Per position of the library: the SMILES (None unless exact) and the status; ``unparsed``: the
    positions whose graph file did not parse (their status is for the caller to say)."""
    ids: list
    smiles: list
    status: list
    unparsed: list
    passes: list = field(default_factory=list)   # graphs decoded exactly in each pass
    engine: str = ""
    workers: int = 0
    start_seconds: float = 0.0


def decode_in_shards(library, num_shards: int, distribute, known_smiles=(), max_passes: int | None = None,
                     on_pass=None) -> ShardedDecoding:
    """Every graph of the graph library at ``library`` decoded in ``num_shards`` shards per pass."""
    from molret.chem.graph_decoder import STATUS_EXACT
    from molret.chem.morgan_env import EnvironmentTable
    from molret.chem.smiles_graph import add_smiles
    from molret.chem.store_decoding import MAX_PASSES, worth_retrying
    from molret.library.distribute import run_shards
    from molret.library.reading import graph_layout, list_graph_ids
    if num_shards < 1:
        raise MolretError(f"--shards must be at least 1, got {num_shards}")
    ids = list_graph_ids(*graph_layout(library))
    table = EnvironmentTable.shipped()
    add_smiles(table, list(known_smiles))
    smiles, status = [None] * len(ids), ["not decoded"] * len(ids)
    out = ShardedDecoding(ids, smiles, status, [])
    todo, wide = None, False
    for _ in range(max_passes or MAX_PASSES):
        known = len(table)
        shards = range(num_shards) if todo is None else sorted(s for s, rows in todo.items() if rows)
        run = run_shards(DecodePassJob(str(library), num_shards, table, wide, todo), shards, distribute)
        out.engine, out.workers = run.engine, max(out.workers, run.workers)
        out.start_seconds += run.start_seconds
        solved = 0
        for shard in sorted(run.results):   # shard order: the table learns in a fixed order
            decoded, learned, unparsed = run.results[shard]
            for r, smi, st in decoded:
                smiles[r], status[r] = smi, st
                solved += st == STATUS_EXACT
            for ident, env in learned:
                table.add(env, ident)
            out.unparsed += unparsed
        out.passes.append(solved)
        if on_pass is not None:
            on_pass(len(out.passes), solved)
        todo, unparsed = {}, set(out.unparsed)
        for r, st in enumerate(status):
            if r not in unparsed and worth_retrying(st):
                todo.setdefault(r % num_shards, []).append(r)
        if not todo or (wide and len(table) == known):
            break
        wide = len(table) == known
    out.unparsed = sorted(out.unparsed)
    return out

