"""Where a chemical name's structure comes from: dictionaries beside OPSIN.

A *source* turns names into :class:`molret.names.resolve.Structure` s (or None). A
name is looked up in the sources in ``SOURCE_ORDER`` and the first that knows
it wins; only then are its other spellings (``molret.names.variants``) tried,
in the same order:

1. ``opsin``: OPSIN's systematic-name parser (``molret.names.opsin.Opsin``);
2. ``glycans``: ChEBI's glycan notation ("beta-D-Galp-(1->4)-D-Glcp"), which OPSIN
   does not read (``molret.names.glycans``; no dependency); with the other
   sources only: alone it would resolve a few glycans, and no source at all
   still means no name features;
3. ``chemicals``: the PubChem synonyms table shipped by the ``chemicals``
   package (``Identifiers/chemical identifiers pubchem large.tsv``, 71,346
   compounds with SMILES; case-insensitive), loaded once (~2 s, ~100 MB);
4. the offline name -> SMILES tables of other packages (``molret.names.tables``: ``ligand2smiles``,
   ``drug_ner``), after the chemicals table (docs/experiments.md "Names 3.0: offline name tables");
5. ``pairs``: the labelled pairs themselves (a training ``cid<TAB>text``
   file): the subject name of every pair maps to that pair's graph, exactly
   as the challenge draws it. Last because it has no SMILES (so no charge or
   tautomer forms): put first, it took names OPSIN resolves through another
   spelling, whose forms then found the true molecule (docs/experiments.md "Names 2.0");
6. ``mixtures``: salts, hydrates and single atoms (``molret.names.mixtures``): the base
   resolved by the sources above, the named parts joined to it as the challenge draws them.

A missing source (no Java, the package not installed) is one warning line;
the others still resolve.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Sequence

from molret.names.glycans import GlycanSource
from molret.names.mixtures import MixtureSource
from molret.names.tables import READ_ERRORS, TABLE_NAMES, TABLES, NameTable, find_table_file, read_table

log = logging.getLogger("molret")

SOURCE_ORDER = ("opsin", "glycans", "chemicals", *TABLE_NAMES, "pairs", "mixtures")
CHEMICALS_FILE = "chemical identifiers pubchem large.tsv"


def normal_name(name: str) -> str:
    """The dictionary key of a name: lower case, single spaces, no surrounding quotes."""
    return " ".join(str(name).split()).strip(" \"'").lower()


class OpsinSource:
    """OPSIN as a source (names -> SMILES -> structures)."""
    name = "opsin"

    def __init__(self, opsin):
        self.opsin = opsin

    def fingerprint(self) -> str:
        return opsin_fingerprint(self.opsin)

    def lookup(self, names: Sequence[str]) -> list:
        from molret.names.resolve import structure_from_smiles
        return [structure_from_smiles(n, s, source=self.name) if s else None
                for n, s in zip(names, self.opsin.resolve(list(names)))]


class SmilesDictionary:
    """A name -> SMILES table (case-insensitive); structures memoised."""
    name = "dictionary"

    def __init__(self, table: dict, name: str | None = None, origin: str | None = None):
        """``origin``: what identifies the table's content cheaply (its file's path, size and
        modification time); without it ``fingerprint`` hashes the table."""
        self.table = table
        if name:
            self.name = name
        self.origin = origin
        self._memo: dict = {}

    def fingerprint(self) -> str:
        return self.origin or content_hash(sorted(self.table.items()))

    def __len__(self) -> int:
        return len(self.table)

    def lookup(self, names: Sequence[str]) -> list:
        from molret.names.resolve import structure_from_smiles
        out = []
        for n in names:
            smiles = self.table.get(normal_name(n))
            if smiles is None:
                out.append(None)
                continue
            if smiles not in self._memo:
                self._memo[smiles] = structure_from_smiles(n, smiles, source=self.name)
            s = self._memo[smiles]
            out.append(None if s is None else s.renamed(n))
        return out


class PairsDictionary:
    """The subject name of each labelled pair -> that pair's graph (a GraphStore row)."""
    name = "pairs"

    def __init__(self, texts: Sequence[str], graphs):
        """``texts``: the pairs' descriptions; ``graphs``: their GraphStore (same order)."""
        import numpy as np
        from molret.names.resolve import Structure, extract_names, graph_keys
        keys = graph_keys(graphs.identifiers, graphs.node_ptr, graphs.edges, graphs.edge_ptr)
        self.table: dict = {}
        for i, text in enumerate(texts):
            subject = extract_names(text).subject
            if subject and normal_name(subject) not in self.table:
                ids = np.unique(np.asarray(graphs.identifiers[graphs.node_ptr[i]:graphs.node_ptr[i + 1]],
                                           dtype=np.uint64))
                self.table[normal_name(subject)] = Structure(subject, "", keys[i], ids, source=self.name)

    def __len__(self) -> int:
        return len(self.table)

    def fingerprint(self) -> str:
        """A hash of the table's content (names, graph keys, identifiers)."""
        return content_hash(sorted((n, s.key, s.identifiers.tolist()) for n, s in self.table.items()))

    def lookup(self, names: Sequence[str]) -> list:
        out = []
        for n in names:
            s = self.table.get(normal_name(n))
            out.append(None if s is None else s.renamed(n))
        return out


def pairs_dictionary_from_dir(data_dir, cache_dir=None, split: str = "train") -> PairsDictionary | None:
    """The pairs dictionary of a challenge data folder's ``train.tsv`` (graphs from its raw
    folder or raw.zip, through the graph cache); None with one warning line when it cannot be read."""
    from molret.data.graph_store import GraphSource, load_graphs
    from molret.data.challenge import default_cache_dir, read_pairs_tsv, resolve_data_dir
    from molret.utils.errors import MolretError
    try:
        paths = resolve_data_dir(data_dir)
        cids, texts = read_pairs_tsv(paths.need(split))
        cache = Path(cache_dir) if cache_dir else default_cache_dir(data_dir)
        graphs = load_graphs(split, cids, GraphSource(paths.need("raw")), cache, None, False)
    except (MolretError, OSError) as e:
        log.warning(f"names: no pairs dictionary from {data_dir} ({e})")
        return None
    return PairsDictionary(texts, graphs)


def find_chemicals_table() -> Path | None:
    """The PubChem synonyms table of the ``chemicals`` package (found without importing it)."""
    spec = importlib.util.find_spec("chemicals")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "Identifiers" / CHEMICALS_FILE
    return path if path.is_file() else None


def read_chemicals_table(path) -> dict:
    """name (normalised) -> SMILES. Columns: pubchem id, CAS, formula, weight, SMILES, InChI,
    InChI key, IUPAC name, common name, synonyms...; a name several compounds share goes to the
    one that has it as its common name, else as its IUPAC name, else the first listing it."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) > 8 and parts[4]:
                rows.append(parts)
    table: dict = {}
    for column in (8, 7):
        for parts in rows:
            table.setdefault(normal_name(parts[column]), parts[4])
    for parts in rows:
        for n in parts[9:]:
            if n:
                table.setdefault(normal_name(n), parts[4])
    table.pop("", None)
    return table


_SHARED: dict = {}


def shared_chemicals() -> SmilesDictionary | None:
    """The process-wide ``chemicals`` dictionary, loaded once; None (one warning line, once) when
    the package is not installed."""
    if "chemicals" not in _SHARED:
        path = find_chemicals_table()
        if path is None:
            log.warning("names: the chemicals package is not installed (pip install chemicals): "
                        "no synonyms dictionary")
            _SHARED["chemicals"] = None
        else:
            _SHARED["chemicals"] = SmilesDictionary(read_chemicals_table(path), "chemicals", file_fingerprint(path))
    return _SHARED["chemicals"]


_TABLES: dict = {}


def smiles_table(pairs) -> dict:
    """name (``normal_name``) -> SMILES of (name, SMILES) pairs, the first pair of a name winning."""
    table: dict = {}
    for name, smiles in pairs:
        table.setdefault(normal_name(name), smiles)
    table.pop("", None)
    return table


def shared_table(table: NameTable) -> SmilesDictionary | None:
    """The process-wide dictionary of a table beside the chemicals package (``molret.names.tables``),
    read once; None (one warning line, once) when its package is not installed or its file unreadable."""
    if table.name not in _TABLES:
        _TABLES[table.name] = None
        path = find_table_file(table)
        if path is None:
            log.warning(f"names: the {table.package} package is not installed (pip install {table.package}): "
                        f"no {table.name} dictionary")
        else:
            try:
                _TABLES[table.name] = SmilesDictionary(smiles_table(read_table(table, path)), table.name,
                                                       file_fingerprint(path))
            except READ_ERRORS as e:
                log.warning(f"names: cannot read the {table.name} dictionary {path} ({e})")
    return _TABLES[table.name]


# ------------------------------------------------------------------ fingerprints (keys of cached resolutions)

def content_hash(obj) -> str:
    """sha1 of a JSON-able object."""
    return hashlib.sha1(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def file_fingerprint(path) -> str:
    """path, size, modification time: a file's identity without reading it."""
    st = Path(path).stat()
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def opsin_fingerprint(opsin) -> str:
    """The OPSIN parser's identity: its jar (version in the name, path, size, time)."""
    jar = getattr(opsin, "jar", None)
    try:
        return file_fingerprint(jar) if jar is not None else type(opsin).__name__
    except OSError:
        return str(jar)


def source_fingerprints(opsin, pairs: PairsDictionary | None = None, chemicals: bool = True) -> list:
    """[name, fingerprint] of each source ``default_sources`` gives for the same arguments, in
    order, computed without loading the chemicals table or the others (a stat of the file when not
    loaded yet)."""
    out = []
    if opsin is not None:
        out.append(["opsin", opsin_fingerprint(opsin)])
    if chemicals:
        if "chemicals" in _SHARED:
            c = _SHARED["chemicals"]
            if c is not None:
                out.append([c.name, c.fingerprint()])
        else:
            path = find_chemicals_table()
            if path is not None:
                out.append(["chemicals", file_fingerprint(path)])
        for table in TABLES:
            if table.name in _TABLES:
                if _TABLES[table.name] is not None:
                    out.append([table.name, _TABLES[table.name].fingerprint()])
            elif (path := find_table_file(table)) is not None:
                out.append([table.name, file_fingerprint(path)])
    if pairs is not None:
        out.append([pairs.name, pairs.fingerprint()])
    if out:
        out = with_glycans(out, [GlycanSource.name, GlycanSource().fingerprint()], opsin is not None)
        out.append([MixtureSource.name, MixtureSource([]).fingerprint()])
    return out


def default_sources(opsin, pairs: PairsDictionary | None = None, chemicals: bool = True) -> list:
    """The sources in SOURCE_ORDER: OPSIN (when not None), the glycan notation (when any other is
    there), the chemicals dictionary and the tables beside it (those installed, when ``chemicals``),
    ``pairs`` (when given), then the mixtures of what those resolve."""
    out = []
    if opsin is not None:
        out.append(OpsinSource(opsin))
    if chemicals:
        c = shared_chemicals()
        if c is not None:
            out.append(c)
        out += [t for t in map(shared_table, TABLES) if t is not None]
    if pairs is not None:
        out.append(pairs)
    if out:
        out = with_glycans(out, GlycanSource(), opsin is not None)
        out.append(MixtureSource(out))
    return out


def with_glycans(sources: list, glycans, after_opsin: bool) -> list:
    """``sources`` with ``glycans`` in its SOURCE_ORDER place (after OPSIN when there), none when empty."""
    if not sources:
        return sources
    at = 1 if after_opsin else 0
    return sources[:at] + [glycans] + sources[at:]
