"""Parsing of challenge `.graph` files.

Format (CRLF or LF line endings)::

    edgelist:
    0 1
    1 0

    idx to identifier:
    0 3537119515
    1 2059730245

Both directions of each bond are listed; a single-atom molecule has an empty
edge list.
"""
from __future__ import annotations

import numpy as np

from molret.utils.errors import GraphFormatError


def parse_graph_text(text: str, source: str = "<graph>"):
    """Parse one `.graph` file's text.

    Returns ``(edge_index, identifiers)``: an int64 array of shape ``[2, E]``
    and the list of per-atom substructure identifiers (strings, atom order).
    Raises GraphFormatError naming ``source`` and the line on bad input.
    """
    lines = text.splitlines()
    # Skip leading blank lines.
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != "edgelist:":
        raise GraphFormatError(f"{source}: line {i + 1}: expected 'edgelist:'")
    src, dst, i = _parse_edges(lines, i + 1, source)
    identifiers = _parse_identifiers(lines, i + 1, source)
    if not identifiers:
        raise GraphFormatError(f"{source}: no atoms under 'idx to identifier:'")
    n = len(identifiers)
    edge_index = np.array([src, dst], dtype=np.int64).reshape(2, -1)
    if edge_index.size and int(edge_index.max()) >= n:
        bad = int(np.argmax(edge_index.max(axis=0)))
        raise GraphFormatError(
            f"{source}: edge {edge_index[0, bad]} {edge_index[1, bad]} refers to an atom that does not exist "
            f"(the molecule has {n} atoms)")
    return edge_index, identifiers


def _parse_edges(lines: list, i: int, source: str) -> tuple[list, list, int]:
    """(sources, destinations, index of the 'idx to identifier:' line) of the edge list from line ``i``."""
    src, dst = [], []
    while i < len(lines):
        line = lines[i].strip()
        if line == "idx to identifier:":
            return src, dst, i
        if line:
            parts = line.split()
            if len(parts) != 2:
                raise GraphFormatError(f"{source}: line {i + 1}: expected two node indices, got {line!r}")
            try:
                a, b = int(parts[0]), int(parts[1])
            except ValueError:
                raise GraphFormatError(f"{source}: line {i + 1}: node indices must be integers, got {line!r}") from None
            if a < 0 or b < 0:
                raise GraphFormatError(f"{source}: line {i + 1}: negative node index in {line!r}")
            src.append(a)
            dst.append(b)
        i += 1
    raise GraphFormatError(f"{source}: missing 'idx to identifier:' section")


def _parse_identifiers(lines: list, i: int, source: str) -> list[str]:
    """The per-atom identifiers from line ``i`` to the end (atom indices 0..N-1 in order)."""
    identifiers: list[str] = []
    while i < len(lines):
        line = lines[i].strip()
        if line:
            parts = line.split()
            if len(parts) != 2:
                raise GraphFormatError(f"{source}: line {i + 1}: expected '<atom index> <identifier>', got {line!r}")
            try:
                idx = int(parts[0])
            except ValueError:
                raise GraphFormatError(f"{source}: line {i + 1}: atom index must be an integer, got {line!r}") from None
            if idx != len(identifiers):
                raise GraphFormatError(
                    f"{source}: line {i + 1}: atom indices must be 0..N-1 in order, expected {len(identifiers)}, got {idx}")
            identifiers.append(parts[1])
        i += 1
    return identifiers
