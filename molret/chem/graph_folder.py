"""Writing a challenge-style library folder: ``<out>/raw/<id>.graph`` per molecule and ``<out>/cids.txt``
(smiles_to_graph.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from molret.utils.errors import MolretError
from molret.utils.files import atomic_write_text, check_writable_dir
from molret.chem.smiles_graph import graph_to_text, mol_to_graph


def check_graph_id(ident: str) -> str | None:
    """Why ``ident`` cannot name a graph file / cids.txt line (None if it can)."""
    if not ident:
        return "empty id"
    if any(c.isspace() for c in ident):
        return f"id {ident!r} contains whitespace (ids are file names and cids.txt lines)"
    if ident in (".", "..") or any(c in ident for c in "/\\\0"):
        return f"id {ident!r} is not a valid file name"
    if len(ident.encode("utf-8")) > 200:
        return f"id {ident[:40]!r}... is longer than 200 bytes"
    return None


def prepare_graph_dir(out_dir) -> Path:
    """Create ``<out_dir>/raw`` and check that files can be written there; returns it.

    Raises MolretError naming the folder if it cannot be created or written.
    """
    out = Path(out_dir)
    return check_writable_dir(out / "raw", shown=out)


def write_graph_dir(records: Iterable, out_dir, *,
                    on_skip: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Write ``<out_dir>/raw/<id>.graph`` per valid record (``molret.chem.molecule_files.Record``) and ``<out_dir>/cids.txt``.

    Each file is written atomically (temporary file + ``os.replace``);
    cids.txt lists the written ids in input order and is written last, so it
    only names graphs that exist.  Records with an error, an id unfit for a
    file name, or an id already written are skipped and reported through
    ``on_skip(message)``.  Other ``.graph`` files already in ``raw/`` are left
    alone; cids.txt defines the library.  Returns ``(written, skipped)``.
    Raises MolretError if the folder cannot be written.
    """
    out = Path(out_dir)
    raw = prepare_graph_dir(out)
    written_ids: list[str] = []
    seen: set[str] = set()
    skipped = 0

    def skip(msg):
        nonlocal skipped
        skipped += 1
        if on_skip is not None:
            on_skip(msg)

    for rec in records:
        if rec.error is not None or rec.mol is None:
            skip(rec.error or f"{rec.where}: no molecule")
            continue
        bad = check_graph_id(rec.id)
        if bad:
            skip(f"{rec.where}: {bad}")
            continue
        if rec.id in seen:
            skip(f"{rec.where}: duplicate id {rec.id!r} (first occurrence kept)")
            continue
        try:
            text = graph_to_text(*mol_to_graph(rec.mol))
        except MolretError as e:
            skip(f"{rec.where}: {e}")
            continue
        try:
            atomic_write_text(raw / f"{rec.id}.graph", text, fsync=False)
        except OSError as e:
            raise MolretError(f"cannot write {raw / (rec.id + '.graph')}: {e.strerror or e}") from None
        seen.add(rec.id)
        written_ids.append(rec.id)
    try:
        atomic_write_text(out / "cids.txt", "".join(f"{i}\n" for i in written_ids))
    except OSError as e:
        raise MolretError(f"cannot write {out / 'cids.txt'}: {e.strerror or e}") from None
    return len(written_ids), skipped
