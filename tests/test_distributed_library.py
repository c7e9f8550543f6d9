"""Libraries on Ray (molret.library.distribute): every shard of a folder scheduled on a local Ray equals the
shards run by hand byte for byte, a killed worker's shard is redone once, the IVF-PQ index filled per shard
equals the single-process one, the graph decoder's rows on Ray equal one process's; and without Ray, the
local process pool writes the same files and --cluster is one error line.

One local Ray (2 CPUs, no dashboard) serves the whole module.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")
pytest.importorskip("faiss")

from molret.library import shards as SH  # noqa: E402
from molret.library.distribute import DistributeOptions, run_shards  # noqa: E402
from molret.library.shard_folder import open_shard_folder  # noqa: E402
from molret.utils.errors import MolretError  # noqa: E402
from tests.test_shards import QUERIES, SMI, loaded, tiny_ckpt  # noqa: E402,F401  (module fixtures)

NEEDS_RAY = pytest.mark.skipif(not __import__("importlib").util.find_spec("ray"),
                               reason="Ray is not installed (pip install -r requirements-optional.txt)")
# a longer library than test_shards' (the same 14 rows, 3 times: 36 valid, 6 invalid), so that a shard has chunks
LONG_SMI = "\n".join(line.split()[0] + f" m{k}_{line.split()[1]}" for k in range(3)
                     for line in SMI.splitlines()[1:]) + "\n"


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (2 CPUs, no dashboard); shut down after it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-optional.txt)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture
def lib(tmp_path):
    p = tmp_path / "long.smi"
    p.write_text(LONG_SMI)
    return p


def _job(tiny_ckpt, lib, out, n, **kw):
    return SH.EmbedShardsJob(str(tiny_ckpt), str(lib), str(out), n, "float32", chunk_size=4, device="cpu", **kw)


def _data_files(folder: Path) -> dict:
    """Every file of a shard folder but the manifests' timings: name -> bytes (or the manifest without them)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.suffix == ".json":
            m = json.loads(p.read_text())
            out[p.name] = {k: v for k, v in m.items() if k not in ("seconds", "written")}
        else:
            out[p.name] = p.read_bytes()
    return out


@NEEDS_RAY
def test_ray_shards_equal_hand_started_shards_and_the_whole(ray_local, tiny_ckpt, loaded, lib, tmp_path):
    from molret.models.embedder import Embedder
    from molret.search.ann import AnnIndex
    from molret.search.index import SearchIndex
    from molret.library.caches import library_embeddings
    by_hand = tmp_path / "hand"
    for i in range(4):
        SH.embed_shard(lib, by_hand, i, 4, Embedder.single(*loaded), dtype="float32", chunk_size=4)
    on_ray = tmp_path / "ray"
    run = SH.embed_all_shards(_job(tiny_ckpt, lib, on_ray, 4), DistributeOptions(engine="ray", workers=2))
    assert run.engine == "ray" and run.workers == 2 and not run.retries
    assert sorted(run.results) == [0, 1, 2, 3] and not any(r.skipped for r in run.results.values())
    assert _data_files(on_ray) == _data_files(by_hand)
    assert list(on_ray.glob("*.offsets.npy"))
    # exact top-10 over the folder = the library embedded whole (distinct molecules: no near-ties)
    distinct = tmp_path / "distinct.smi"
    distinct.write_text(SMI)
    SH.embed_all_shards(_job(tiny_ckpt, distinct, tmp_path / "d", 4), DistributeOptions(engine="ray", workers=2))
    folder = open_shard_folder(tmp_path / "d")
    whole = library_embeddings(distinct, Embedder.single(*loaded), cache_dir=tmp_path / "cache")
    q = Embedder.single(*loaded).encode_texts(QUERIES)
    _, ref = SearchIndex(whole.embeddings, "numpy").search(q, 10)
    _, got = AnnIndex(folder.embeddings, "exact", order=folder.rows).search(q, 10)
    assert [[folder.ids[int(j)] for j in row] for row in got] == [[whole.library.ids[j] for j in row] for row in ref]


@NEEDS_RAY
def test_killed_worker_redoes_its_shard_once(ray_local, tiny_ckpt, lib, tmp_path):
    out, marker = tmp_path / "k", tmp_path / "died"
    run = SH.embed_all_shards(_job(tiny_ckpt, lib, out, 2, die_once=str(marker)),
                              DistributeOptions(engine="ray", workers=2))
    assert marker.exists() and run.retries == 1          # one worker died in mid-shard, after its first chunk
    folder = open_shard_folder(out)
    ids = [folder.ids[i] for i in range(len(folder))]
    assert len(ids) == len(set(ids)) == 36 and folder.meta["invalid"] == 6
    assert sorted(np.asarray(folder.rows).tolist()) == sorted(r for r in range(42) if r % 14 not in (4, 9))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # the dead worker's temporaries removed
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = SH.embed_all_shards(_job(tiny_ckpt, lib, out, 2), DistributeOptions(engine="ray", workers=2))
    assert all(r.skipped for r in again.results.values())
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp   # a second run writes nothing


def test_process_pool_writes_the_same_files_and_survives_a_dead_worker(tiny_ckpt, lib, tmp_path):
    pool, marker = tmp_path / "pool", tmp_path / "died"
    run = SH.embed_all_shards(_job(tiny_ckpt, lib, pool, 3, die_once=str(marker)),
                              DistributeOptions(engine="processes", workers=2))
    assert run.engine == "processes" and run.retries == 1 and marker.exists()
    serial = tmp_path / "serial"
    job = _job(tiny_ckpt, lib, serial, 3)
    job.setup()
    for i in range(3):
        job.run(i)
    assert _data_files(pool) == _data_files(serial)


def test_cluster_without_ray_is_one_error_line(tiny_ckpt, lib, tmp_path, capsys, monkeypatch):
    import builtins
    import embed_library
    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.setattr("molret.library.distribute.ray_available", lambda: False)
    for extra in (["--cluster", "auto"], ["--engine", "ray"]):
        with pytest.raises(SystemExit) as e:
            embed_library.main(["--model", str(tiny_ckpt), "--library", str(lib), "--out", str(tmp_path / "o"),
                                "--shards", "2", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: Ray is not installed: pip install")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, message", [
    (["--shards", "0"], "--shards must be"), (["--shards", "2", "--shard", "0/2"], "not both"),
    (["--shards", "2", "--workers", "-1"], "--workers must be"),
    (["--shards", "2", "--gpus-per-worker", "-0.5"], "--gpus-per-worker must be"),
    (["--shards", "2", "--max-retries", "101"], "--max-retries must be"),
    (["--shards", "2", "--engine", "processes", "--cluster", "auto"], "need Ray"),
    (["--shards", "2", "--cluster", " "], "--cluster needs")])
def test_distribute_flags_are_checked(flags, message, tiny_ckpt, lib, tmp_path, capsys):
    import embed_library
    with pytest.raises(SystemExit) as e:
        embed_library.main(["--model", str(tiny_ckpt), "--library", str(lib), "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and message in err[0], err


class FailingJob:
    def setup(self):
        pass

    def run(self, shard):
        raise MolretError(f"shard {shard} is bad")


def test_run_shards_passes_errors_as_one_message():
    with pytest.raises(MolretError, match="shard 0 is bad"):
        run_shards(FailingJob(), [0], DistributeOptions(engine="processes", workers=1))


def test_import_molret_does_not_import_ray():
    import subprocess
    code = "import sys, molret, molret.library.distribute, molret.cli.embed_library; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
