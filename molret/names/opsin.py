"""OPSIN, the open chemical-name-to-structure parser, in one long-lived Java process.

The jar is shipped by the ``py2opsin`` package; ``Opsin`` feeds it a name per
line and reads a SMILES (or an empty line) per line, so a name costs a few
milliseconds once the JVM is up.  Java or the jar missing: ``shared_opsin``
says so in one warning line and returns None.
"""
from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Sequence

log = logging.getLogger("molret")

OPSIN_TIMEOUT_S = 20.0          # a name OPSIN has not answered in this time stops the parser
OPSIN_START_TIMEOUT_S = 180.0   # the first answer of a new process: a JVM start on a loaded machine is slow


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
            log.warning(f"--names opsin: {e}; names from the other sources only (the chemicals table, the training pairs)")
            _SHARED["opsin"] = None
    return _SHARED["opsin"]
