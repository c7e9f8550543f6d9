"""Embedding a library on a local Ray against shard processes started by hand, one after the other in one run.

    flock /tmp/cpu.lock python bench/distributed_embed.py --model runs/<name>/best.pt \
        --library ../shared/data/altegrad/raw.zip --work /tmp/dist-bench [--limit 20000]

Both write a 2-shard folder of the same library with the same model, one torch thread per worker:

1. by hand: ``embed_library.py --shard 0/2`` and ``--shard 1/2`` started together (the README's way);
   wall time until both have finished;
2. on Ray: ``embed_library.py --shards 2 --workers 2 --engine ray`` (a local Ray started by the command);
   wall time of the command, Ray's start-up included (the command reports it).

Reported: both walls, their ratio (Ray / by hand), Ray's start-up time, the load average around each
run, and whether the two folders hold the same bytes (embeddings, ids, SMILES, record numbers).
``--limit N`` embeds a raw.zip of the library's first N graphs instead (written into --work).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _subset(library: Path, limit: int, work: Path) -> Path:
    out = work / f"first-{limit}.zip"
    if out.is_file():
        return out
    with zipfile.ZipFile(library) as z, zipfile.ZipFile(out, "w") as o:
        names = [n for n in z.namelist() if n.endswith(".graph")][:limit]
        for n in names:
            o.writestr(n, z.read(n))
    return out


def _embed_cmd(model, library, out, *extra) -> list:
    return [sys.executable, str(REPO / "embed_library.py"), "--model", str(model), "--library", str(library),
            "--out", str(out), "--threads", "1", "--no-progress", *extra]


def _same_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir() if p.suffix != ".json")
    return names == sorted(p.name for p in b.iterdir() if p.suffix != ".json") and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--library", required=True)
    p.add_argument("--work", required=True, help="folder for the two shard folders (emptied first)")
    p.add_argument("--limit", type=int, default=0, help="embed only the first N graphs of a raw.zip")
    p.add_argument("--one-thread-env", action="store_true",
                   help="start the by-hand processes with OMP_NUM_THREADS=1 (what Ray sets for a 1-CPU worker)")
    p.add_argument("--ray-first", action="store_true", help="run the Ray side first")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    library = _subset(Path(args.library), args.limit, work) if args.limit else Path(args.library)
    hand, on_ray = work / "hand", work / "ray"
    for d in (hand, on_ray):
        shutil.rmtree(d, ignore_errors=True)
    out = {"library": str(args.library), "limit": args.limit, "model": str(args.model), "cpus": os.cpu_count(),
           "one_thread_env": args.one_thread_env, "ray_first": args.ray_first}
    env = dict(os.environ, OMP_NUM_THREADS="1") if args.one_thread_env else None
    if args.ray_first:
        _ray_side(args, library, on_ray, out)
    _hand_side(args, library, hand, out, env)
    if not args.ray_first:
        _ray_side(args, library, on_ray, out)
    out["ratio_ray_over_hand"] = round(out["ray_wall_s"] / out["hand_wall_s"], 3)
    out["same_bytes"] = _same_bytes(hand, on_ray)
    out["molecules"] = sum(json.loads(m.read_text())["count"] for m in hand.glob("shard-*.json"))
    print(json.dumps(out, indent=1))


def _hand_side(args, library, hand, out, env) -> None:
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(_embed_cmd(args.model, library, hand, "--shard", f"{i}/2"), stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(2)]
    errs = [pr.communicate()[1] for pr in procs]
    out["hand_wall_s"] = round(time.perf_counter() - t0, 1)
    if any(pr.returncode for pr in procs):
        sys.exit("by-hand shard failed:\n" + "\n".join(errs))
    out["hand_lines"] = [e.strip().splitlines()[-1] for e in errs]
    out["hand_load"] = [load0, os.getloadavg()]


def _ray_side(args, library, on_ray, out) -> None:
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    pr = subprocess.run(_embed_cmd(args.model, library, on_ray, "--shards", "2", "--workers", "2", "--engine", "ray"),
                        stderr=subprocess.PIPE, text=True)
    out["ray_wall_s"] = round(time.perf_counter() - t0, 1)
    if pr.returncode:
        sys.exit("Ray run failed:\n" + pr.stderr)
    last = pr.stderr.strip().splitlines()[-1]
    out["ray_line"] = last
    started = re.search(r"started in ([0-9.]+) s", last)
    out["ray_start_s"] = float(started.group(1)) if started else None
    out["ray_load"] = [load0, os.getloadavg()]


if __name__ == "__main__":
    main()
