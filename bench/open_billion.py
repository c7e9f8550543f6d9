"""Opening a shard folder of 10^9 molecules: time and memory of ``open_shard_folder``, and bytes read.

    python bench/open_billion.py --dir /tmp/billion --rows 1000000000 --shards 100 --dim 256

The folder is synthetic: every file has the size and header that ``embed_library.py`` would write
for that many molecules (float16 embeddings, ids and SMILES text of ``--line-bytes`` per line, int64
record numbers, the line offsets), but is sparse (holes read as zeros): only the headers, the
manifests and the last line offset of each text are real bytes, so it takes no disk space. Opening
must read none of the text. Measured in a fresh process: wall time of the open, peak RSS beyond the
imports (``ru_maxrss``), and the bytes read by system calls (``rchar`` of /proc/self/io); then a few
random embeddings and record numbers are read back (not lines: the synthetic offsets are holes).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sparse_npy(path: Path, shape: tuple, dtype, last=None) -> None:
    """A .npy of ``shape`` whose data are a hole (zeros), optionally with its last element set."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                 "shape": shape})
        header = f.tell()
        size = header + int(np.prod(shape)) * np.dtype(dtype).itemsize
        f.truncate(size)
        if last is not None:
            f.seek(size - np.dtype(dtype).itemsize)
            f.write(np.asarray([last], dtype=dtype).tobytes())


def build(folder: Path, rows: int, shards: int, dim: int, line_bytes: int) -> None:
    from molret.library.shard_folder import FOLDER_FILE, line_offsets_ext, shard_name
    folder.mkdir(parents=True, exist_ok=True)
    common = {"model_key": "synthetic", "fingerprint": "synthetic", "num_shards": shards, "dtype": "float16",
              "dim": dim, "smiles_decoded": False}
    (folder / FOLDER_FILE).write_text(json.dumps({"format": "molret-shard-folder", **common, "library": "synthetic"}))
    for i in range(shards):
        n = len(range(i, rows, shards))
        name = shard_name(i, shards)
        _sparse_npy(folder / f"{name}.npy", (n, dim), np.float16)
        _sparse_npy(folder / f"{name}.rows.npy", (n,), np.int64)
        for ext in (".ids.txt", ".smiles.txt"):
            with open(folder / f"{name}{ext}", "wb") as f:
                f.truncate(n * line_bytes)
            _sparse_npy(folder / f"{name}{line_offsets_ext(ext)}", (n + 1,), np.int64, last=n * line_bytes)
        (folder / f"{name}.json").write_text(json.dumps({
            "format": "molret-shard", "version": 1, **common, "shard": i, "count": n, "invalid": 0,
            "invalid_examples": [], "seconds": 0.0, "library": "synthetic", "written": "synthetic"}))


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def measure(folder: Path) -> dict:
    """Run in a fresh process: open the folder, report time, RSS and bytes read."""
    from molret.library.shard_folder import open_shard_folder
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r0, t0 = _rchar(), time.perf_counter()
    lib = open_shard_folder(folder)
    seconds = time.perf_counter() - t0
    read = _rchar() - r0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(lib), 5)
    t1 = time.perf_counter()
    emb = lib.embeddings.take(pick)
    rows = lib.rows.take(pick)
    access = time.perf_counter() - t1
    return {"molecules": len(lib), "shards": lib.meta["num_shards"], "open_seconds": round(seconds, 3),
            "rss_before_mb": round(rss0 / 1024, 1), "rss_peak_after_open_mb": round(rss1 / 1024, 1),
            "rss_added_mb": round((rss1 - rss0) / 1024, 1), "bytes_read_by_open": read,
            "random_access_ms": round(access * 1e3, 1), "emb_shape": list(emb.shape),
            "rows_read": len(rows),
            "text_bytes_on_disk": sum(p.stat().st_blocks * 512 for p in folder.glob("*.txt")),
            "apparent_gb": round(sum(p.stat().st_size for p in folder.iterdir()) / 1e9, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="folder to write the synthetic shard folder into (sparse files)")
    p.add_argument("--rows", type=int, default=1_000_000_000)
    p.add_argument("--shards", type=int, default=100)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--line-bytes", type=int, default=16, help="bytes per id / SMILES line")
    p.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    folder = Path(args.dir)
    if args.measure_only:
        print(json.dumps(measure(folder)))
        return
    t0 = time.perf_counter()
    build(folder, args.rows, args.shards, args.dim, args.line_bytes)
    print(f"built {folder}: {args.rows:,} rows in {args.shards} shards in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    out = subprocess.run([sys.executable, __file__, "--dir", str(folder), "--measure-only"], capture_output=True,
                         text=True, check=True)
    result = json.loads(out.stdout)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
