"""Chemical names in a query: found, resolved to structures with OPSIN, and
turned into the challenge's graphs.

Most ChEBI-style descriptions open with the molecule's name ("2-hydroxybutanoic
acid is a ...") and cite others ("It derives from a butyric acid", "It is a
conjugate acid of ...", "... that is alpha-D-mannopyranose in which ...").
``extract_names`` finds them; ``Opsin`` resolves names to SMILES with OPSIN
(the open name-to-structure parser, shipped as a jar by the ``py2opsin``
package, run in one long-lived Java process); ``resolve_queries`` turns each
query's names into :class:`QueryStructures` (graph identity keys and
substructure-identifier sets, built with ``molret.smiles``). How these
structures score candidate molecules is ``molret.name_fusion``.

Nothing fails because a name is odd: a name OPSIN rejects, or whose structure
RDKit refuses, is skipped. Java or OPSIN missing: one warning line, and no
names are resolved.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .name_variants import _acid_name, name_variants  # noqa: F401 - _acid_name: tests

log = logging.getLogger("molret")

NAMES_CHOICES = ("none", "opsin")
OPSIN_TIMEOUT_S = 20.0          # a name OPSIN has not answered in this time stops the parser
OPSIN_START_TIMEOUT_S = 180.0   # the first answer of a new process: a JVM start on a loaded machine is slow
MAX_NAME_CHARS = 300            # longer "names" are sentence fragments, not names

# ------------------------------------------------------------------ finding names

_ARTICLE = r"(?:(?:a|an|the)\s+)?"
# the molecule's own name: everything before the first "is a/an/the", "are"
_SUBJECT = re.compile(r"^\s*\"?(?P<name>\S.*?)\s+(?:is|are)\s+(?:a|an|the|one|two)\b", re.S)
# cited structures: "<phrase> <name>" up to the end of the clause
_CITED = re.compile(
    r"\b(?P<phrase>derives from|conjugate (?:acid|base) of|tautomer of|enantiomer of)\s+" + _ARTICLE +
    r"(?P<names>.+?)(?=\.\s|\.$|;|,\s+(?:obtained|arising|formed|resulting|with|which|in which)\b|$)", re.I | re.S)
# "... is <name> in which ..." (the name the molecule is a modification of): the words between the
# last "is"/"are" (and article) of the clause and "in which"
_IN_WHICH = re.compile(r"\bin which\b", re.I)
_LAST_IS = re.compile(r".*\b(?:is|are)\s+" + _ARTICLE + r"(?P<name>.+)$", re.I | re.S)
_SUBJECT_NO_ARTICLE = re.compile(r"^\s*\"?(?P<name>\S+(?:\s+\S+){0,5}?)\s+(?:is|are)\s+", re.S)
_FIRST_IS = re.compile(r"\s+(?:is|are)\s+")
_LIST_SPLIT = re.compile(r",\s+(?:and\s+)?" + _ARTICLE + r"|\s+and\s+" + _ARTICLE, re.I)
_LEADING = re.compile(r"^(?:(?:a|an|the)\s+)?(?:hydride of\s+)?(?:(?:a|an|the)\s+)?", re.I)
# words that start a description without naming the molecule (ChEBI-20 writes "The molecule is ...")
_NOT_A_NAME = {"it", "this", "molecule", "the molecule", "this molecule", "compound", "this compound", "the compound",
               "they", "these"}


@dataclass(frozen=True)
class QueryNames:
    """The names found in one query: its subject (the molecule itself), its
    enantiomers (same graph: the challenge graphs carry no chirality), and the
    other structures it cites (parents, conjugate acids/bases, tautomers)."""
    subject: str | None = None
    enantiomers: tuple = ()
    parents: tuple = ()

    def all(self) -> list[str]:
        return [n for n in (self.subject, *self.enantiomers, *self.parents) if n]


def _clean(name: str) -> str | None:
    name = _LEADING.sub("", " ".join(name.split())).strip(" .,;:\"'")
    if not name or len(name) > MAX_NAME_CHARS or name.lower() in _NOT_A_NAME:
        return None
    return name


def extract_names(query: str) -> QueryNames:
    """The chemical names of ``query`` (see :class:`QueryNames`); role phrases
    such as "has a role as" name no structure and are ignored."""
    query = str(query)
    subject = None
    m = _SUBJECT.match(query) or _SUBJECT_NO_ARTICLE.match(query)
    if m:
        # "X is conjugate base of Y. It is a ...": ChEBI drops the article after some "is"; the name ends at the
        # first "is"/"are" (a chemical name holds no such word)
        subject = _clean(_FIRST_IS.split(m.group("name"), maxsplit=1)[0])
    enantiomers, parents = [], []
    for m in _CITED.finditer(query):
        names = [_clean(n) for n in _LIST_SPLIT.split(m.group("names"))]
        target = enantiomers if m.group("phrase").lower() == "enantiomer of" else parents
        target.extend(n for n in names if n)
    for m in _IN_WHICH.finditer(query):
        clause = re.split(r"[.;,]\s", query[:m.start()])[-1]
        last = _LAST_IS.match(clause.rstrip())
        name = _clean(last.group("name")) if last else None
        if name and len(name.split()) <= 4:
            parents.append(name)
    dedup = lambda xs: tuple(dict.fromkeys(x for x in xs if x != subject))  # noqa: E731
    return QueryNames(subject, dedup(enantiomers), dedup(parents))


# ------------------------------------------------------------------ OPSIN

def find_opsin_jar() -> Path | None:
    """The OPSIN jar shipped by the py2opsin package (found without importing
    it: its import runs ``java -version``)."""
    import importlib.util
    spec = importlib.util.find_spec("py2opsin")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        jars = sorted(Path(folder).glob("opsin*.jar"))
        if jars:
            return jars[-1]
    return None


class OpsinUnavailable(Exception):
    """Java or the OPSIN jar is missing, or the parser stopped."""


class Opsin:
    """One long-lived OPSIN process (``java -jar opsin.jar -osmi``): a name per
    line in, a SMILES (or an empty line) per line out, so a name costs a few
    milliseconds once the JVM is up instead of a JVM start. Thread-safe;
    results are memoised per name."""

    def __init__(self, jar: Path | str | None = None, java: str = "java", timeout: float = OPSIN_TIMEOUT_S,
                 start_timeout: float = OPSIN_START_TIMEOUT_S):
        self.jar = Path(jar) if jar else find_opsin_jar()
        self.java = shutil.which(java) if java else None
        self.timeout = timeout
        self.start_timeout = max(timeout, start_timeout)
        self._answered = False          # has the running process answered a name yet
        self._proc = None
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.memo: dict[str, str | None] = {}
        if self.java is None:
            raise OpsinUnavailable("no Java runtime found (install one, e.g. Debian's default-jre-headless)")
        if self.jar is None or not self.jar.is_file():
            raise OpsinUnavailable("the OPSIN parser is not installed (pip install py2opsin)")

    @property
    def version(self) -> str:
        return self.jar.name

    def _start(self) -> None:
        # -s: stereochemistry OPSIN cannot interpret is ignored (the graphs carry none)
        self._proc = subprocess.Popen([self.java, "-Xss8m", "-jar", str(self.jar), "-osmi", "-s"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True, encoding="utf-8", bufsize=1)
        self._lines = queue.Queue()
        self._answered = False
        threading.Thread(target=self._read_lines, args=(self._proc, self._lines), daemon=True).start()

    @staticmethod
    def _read_lines(proc, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)  # the process ended

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __del__(self):  # noqa: D105
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def resolve(self, names: Sequence[str]) -> list[str | None]:
        """SMILES of each name (None where OPSIN finds no structure)."""
        todo = list(dict.fromkeys(n for n in names if n not in self.memo))
        if todo:
            with self._lock:
                self._resolve_new(todo)
        return [self.memo.get(n) for n in names]

    def _resolve_new(self, names: list[str]) -> None:
        if self._proc is None or self._proc.poll() is not None:
            try:
                self._start()
            except OSError as e:
                raise OpsinUnavailable(f"cannot start Java: {e.strerror or e}") from None
        # a writer thread: OPSIN's output pipe would fill up while we are still writing a long batch
        clean = [" ".join(n.split()) or "?" for n in names]
        writer = threading.Thread(target=self._write, args=(self._proc, clean), daemon=True)
        writer.start()
        for name in names:
            try:
                line = self._lines.get(timeout=self.timeout if self._answered else self.start_timeout)
            except queue.Empty:
                line = None
            if line is None:
                self.close()
                raise OpsinUnavailable(f"OPSIN stopped answering (at the name {name[:80]!r})")
            self._answered = True
            self.memo[name] = line.strip() or None
        writer.join()

    @staticmethod
    def _write(proc, names: list[str]) -> None:
        try:
            for n in names:
                proc.stdin.write(n + "\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the reader notices the process is gone


_SHARED: dict = {}


def shared_opsin() -> Opsin | None:
    """The process-wide OPSIN parser, started once; None (with one warning
    line, once) when Java or OPSIN is missing."""
    if "opsin" not in _SHARED:
        try:
            _SHARED["opsin"] = Opsin()
        except OpsinUnavailable as e:
            log.warning(f"--names opsin: {e}; using the learned scores only")
            _SHARED["opsin"] = None
    return _SHARED["opsin"]


# ------------------------------------------------------------------ structures

@dataclass
class Structure:
    """A resolved name as the challenge would draw it: ``key`` identifies the
    graph (atom identifiers and bonds as identifier pairs, as multisets), and
    ``identifiers`` is its set of substructure identifiers."""
    name: str
    smiles: str
    key: str
    identifiers: np.ndarray   # uint64, sorted unique


def _mix(x: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of uint64 values (wrapping arithmetic): a well-spread hash."""
    with np.errstate(over="ignore"):
        z = x + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _segment_sums(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Per-segment sums modulo 2**64 (order-independent: a multiset hash)."""
    with np.errstate(over="ignore"):
        cs = np.concatenate([np.zeros(1, np.uint64), np.cumsum(values, dtype=np.uint64)])
        return cs[ptr[1:]] - cs[ptr[:-1]]


def graph_keys(identifiers: np.ndarray, node_ptr: np.ndarray, edges: np.ndarray, edge_ptr: np.ndarray) -> list[str]:
    """Identity of each labelled graph of a flat store (molret.data.GraphStore
    layout) up to atom renumbering: a hash of the multiset of its atom
    identifiers and of its bonds as unordered identifier pairs (what
    ``bench/verify_smiles_graphs.py`` compares), 256 bits, vectorised."""
    ids = np.asarray(identifiers, dtype=np.uint64)
    node_ptr, edge_ptr = np.asarray(node_ptr, np.int64), np.asarray(edge_ptr, np.int64)
    n_graphs = len(node_ptr) - 1
    edge_graph = np.repeat(np.arange(n_graphs), np.diff(edge_ptr))
    ends = np.asarray(edges, np.int64).reshape(2, -1) + node_ptr[edge_graph][None, :]  # global atom rows
    a, b = ids[ends[0]], ids[ends[1]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)  # both directions of a bond give the same pair
    columns = [_segment_sums(_mix(ids, s), node_ptr) for s in (0, 1)]
    columns += [_segment_sums(_mix(_mix(lo, 2) ^ hi, s), edge_ptr) for s in (3, 4)]
    columns += [np.diff(node_ptr).astype(np.uint64), np.diff(edge_ptr).astype(np.uint64)]
    table = np.stack(columns, axis=1)
    return [row.tobytes().hex() for row in table]


def graph_key(identifiers: Sequence, edge_index: np.ndarray) -> str:
    """``graph_keys`` of one graph (identifiers as strings or ints, edge_index [2, 2 * bonds])."""
    ids = np.asarray([int(i) for i in identifiers], dtype=np.uint64)
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    return graph_keys(ids, np.array([0, len(ids)]), ei, np.array([0, ei.shape[1]]))[0]


def structure_from_smiles(name: str, smiles: str) -> Structure | None:
    """The challenge graph of a SMILES (None when RDKit refuses it)."""
    from .errors import MolretError
    from .smiles import smiles_to_graph
    try:
        edge_index, identifiers = smiles_to_graph(smiles)
    except MolretError:
        return None
    except Exception:  # noqa: BLE001 - RDKit raises its own types on odd input
        return None
    ids = np.unique(np.asarray([int(i) for i in identifiers], dtype=np.uint64))
    return Structure(name, smiles, graph_key(identifiers, edge_index), ids)


@dataclass
class QueryStructures:
    """The resolved structures of one query, by role."""
    names: QueryNames
    subject: Structure | None = None
    enantiomers: list = field(default_factory=list)
    parents: list = field(default_factory=list)

    @property
    def identity_keys(self) -> set:
        """Graph keys the described molecule has (its own, its enantiomers')."""
        return {s.key for s in ([self.subject] if self.subject else []) + self.enantiomers}


def resolve_queries(queries: Sequence[str], opsin: Opsin | None) -> list[QueryStructures]:
    """Names of every query, resolved in one batch (``opsin`` None: names
    found but nothing resolved). An OPSIN failure is one warning line and
    leaves the rest unresolved."""
    found = [extract_names(q) for q in queries]
    smiles: dict[str, str | None] = {}
    if opsin is not None:
        wanted = list(dict.fromkeys(n for names in found for n in names.all()))
        try:
            smiles = dict(zip(wanted, opsin.resolve(wanted)))
            # names OPSIN does not parse ("4-phospho-L-aspartate", "TMP(2-)", "Leu-Cys"): the first variant it
            # parses (name_variants) gives a close structure (same skeleton), for the similarity evidence
            retry = {n: name_variants(n) for n in wanted if smiles[n] is None}
            alternatives = list(dict.fromkeys(v for vs in retry.values() for v in vs))
            found_alt = dict(zip(alternatives, opsin.resolve(alternatives)))
            for n, variants in retry.items():
                smiles[n] = next((found_alt[v] for v in variants if found_alt[v]), None)
        except OpsinUnavailable as e:
            log.warning(f"--names opsin: {e}; using the learned scores only")
            smiles = {}
    structures: dict[str, Structure | None] = {}

    def structure(name):
        if name not in structures:
            s = smiles.get(name)
            structures[name] = structure_from_smiles(name, s) if s else None
        return structures[name]

    out = []
    for names in found:
        q = QueryStructures(names)
        q.subject = structure(names.subject) if names.subject else None
        q.enantiomers = [s for s in map(structure, names.enantiomers) if s is not None]
        q.parents = [s for s in map(structure, names.parents) if s is not None]
        out.append(q)
    return out
