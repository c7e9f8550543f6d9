"""Members trained as subprocesses, a few at a time, the optional ones only while a deadline allows.

A member is a ``Job``: a run folder name, its command's flags and seed. ``run_jobs`` keeps finished members
(``member_state``), continues interrupted ones when asked, starts an optional job only when the mean duration
of the jobs finished so far says it ends before the deadline, and on Ctrl-C passes the signal on (each
member saves its ``last.pt``). The recipe (``molret.cli.recipe``) builds the jobs and their command lines.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from molret.utils.errors import MolretError

log = logging.getLogger("molret")


@dataclass
class Job:
    """One member to train: main.py ``flags`` with ``seed`` (and a ``--time-budget`` of ``minutes``; None: its
    flags' epochs). An ``optional`` job starts only while the budget's deadline allows it; one that ``needs``
    another starts only after that one trained."""
    name: str
    flags: list
    seed: int
    minutes: float | None = None
    optional: bool = False
    needs: str | None = None



def member_state(run_dir: Path) -> str:
    """done (result.json), started (last.pt) or new."""
    if (run_dir / "result.json").exists() and (run_dir / "embeddings" / "test_text_emb.npy").exists():
        return "done"
    return "started" if (run_dir / "last.pt").exists() else "new"


def run_jobs(jobs: list, runs_dir: Path, command: Callable[[Job, bool], list], slots: int = 1, resume: bool = False,
             deadline: float | None = None, prior_minutes: float = 1.0) -> tuple[list, list, dict]:
    """Train ``jobs`` in order, ``slots`` at a time, job ``j`` as the process ``command(j, continues)`` (its
    output in ``runs_dir/<name>.out``; ``continues``: it resumes an interrupted run, which needs ``resume``).
    An optional job starts only when it is expected to finish by ``deadline`` (a ``time.perf_counter()``
    value): its expected wall time is the mean of the jobs finished so far (``prior_minutes`` before the
    first). A job whose ``needs`` did not train is skipped. Returns (names trained or kept, names already
    trained before, {"skipped": [...], "minutes": [...]})."""
    queue = JobQueue(runs_dir, command, deadline, prior_minutes)
    queue.add(jobs, resume)
    try:
        while queue.pending or queue.running:
            queue.start_what_fits(slots)
            if queue.running:
                time.sleep(1)
                queue.reap()
    except BaseException:
        queue.interrupt()
        raise
    return queue.done, queue.kept, {"skipped": queue.skipped, "minutes": [round(d, 2) for d in queue.durations]}


class JobQueue:
    """The state of ``run_jobs``: jobs pending (with whether each continues an interrupted run), running
    (job, process, log file, start time), done, kept, skipped, and the finished ones' durations in minutes."""

    def __init__(self, runs_dir: Path, command, deadline: float | None, prior_minutes: float):
        self.runs_dir, self.command, self.deadline, self.prior_minutes = runs_dir, command, deadline, prior_minutes
        self.pending, self.running, self.done, self.kept, self.skipped, self.durations = [], [], [], [], [], []
        # one thread per member process: the slots are the cores
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def add(self, jobs: list, resume: bool) -> None:
        for job in jobs:
            state = member_state(self.runs_dir / job.name)
            if state == "done":
                log.info(f"member {job.name}: already trained (kept)")
                self.done.append(job.name)
                self.kept.append(job.name)
            elif state == "started" and not resume:
                raise MolretError(f"{self.runs_dir / job.name} holds an interrupted member: add --resume, or another "
                                  f"--run-name")
            else:
                self.pending.append((job, state == "started"))

    def expected_seconds(self) -> float:
        return 60 * (sum(self.durations) / len(self.durations) if self.durations else self.prior_minutes)

    def decision(self, job: Job) -> str:
        """start, wait (for the member it needs, queued or training) or skip (why)."""
        if job.needs is not None and job.needs not in self.done:
            queued = [j.name for j, _ in self.pending] + [r[0].name for r in self.running]
            return "wait" if job.needs in queued else f"skip: {job.needs} did not train"
        if job.optional and self.deadline is not None and time.perf_counter() + self.expected_seconds() > self.deadline:
            return f"skip: it would end after the budget's deadline (~{self.expected_seconds() / 60:.1f} min a member)"
        return "start"

    def start_what_fits(self, slots: int) -> None:
        """Start pending jobs in order while a slot is free; skip those that may not start."""
        for item in list(self.pending):
            if len(self.running) >= slots:
                return
            job, continues = item
            what = self.decision(job)
            if what == "wait":
                continue
            self.pending.remove(item)
            if what != "start":
                self.skipped.append(job.name)
                log.info(f"member {job.name}: {what}")
                continue
            cmd = self.command(job, continues)
            logf = open(self.runs_dir / f"{job.name}.out", "a")
            log.info(f"member {job.name}: training ({' '.join(cmd[2:])})")
            self.running.append((job, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.env), logf,
                                 time.perf_counter()))

    def reap(self) -> None:
        """Collect the jobs that ended; a failed one stops the run, naming its log."""
        for item in list(self.running):
            job, proc, logf, started = item
            if proc.poll() is None:
                continue
            self.running.remove(item)
            logf.close()
            if proc.returncode != 0:
                raise MolretError(f"member {job.name} failed (exit {proc.returncode}); its log: "
                                  f"{self.runs_dir / (job.name + '.out')}")
            self.durations.append((time.perf_counter() - started) / 60)
            self.done.append(job.name)
            log.info(f"member {job.name}: done ({self.durations[-1]:.1f} min)")

    def interrupt(self) -> None:
        """Ctrl-C or an error: each running member gets SIGINT (it saves its last.pt) and is waited for."""
        for _, proc, _, _ in self.running:
            proc.send_signal(2)
        for _, proc, _, _ in self.running:
            proc.wait()
