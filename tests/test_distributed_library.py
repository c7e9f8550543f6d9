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

from molret.library import shard_jobs as SJ, shards as SH  # noqa: E402
from molret.library.distribute import DistributeOptions  # noqa: E402
from molret.library.shard_folder import open_shard_folder  # noqa: E402
from tests.test_shards import QUERIES, SMI, loaded, tiny_ckpt  # noqa: E402,F401  (module fixtures)

NEEDS_RAY = pytest.mark.skipif(not __import__("importlib").util.find_spec("ray"),
                               reason="Ray is not installed (pip install -r requirements-optional.txt)")
# a longer library than test_shards' (its 14 rows and 28 other molecules, all distinct: 40 valid, 2 invalid at
# record numbers 4 and 9), so that every shard has several chunks
MORE = ("CCCO CCCCO CCCCCO CCN CCCN CCCCN CCC(=O)O CCCC(=O)O CCCCC(=O)O Cc1ccccc1 CCc1ccccc1 Oc1ccccc1 Nc1ccccc1 "
        "Clc1ccccc1 CC(C)C CC(C)(C)C C1CCCCC1 C1CCCC1 C1CCOC1 C1CCNCC1 CC=C CC#C C=CC=C CS CCS CSC O=C1CCCCC1 "
        "CC(=O)C").split()
LONG_SMI = SMI + "".join(f"{smi} extra{k}\n" for k, smi in enumerate(MORE))


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (2 CPUs, no dashboard); shut down after it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-optional.txt)")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture
def lib(tmp_path):
    p = tmp_path / "long.smi"
    p.write_text(LONG_SMI)
    return p


def _job(tiny_ckpt, lib, out, n, **kw):
    return SJ.EmbedShardsJob(str(tiny_ckpt), str(lib), str(out), n, "float32", chunk_size=4, device="cpu", **kw)


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
    run = SJ.embed_all_shards(_job(tiny_ckpt, lib, on_ray, 4), DistributeOptions(engine="ray", workers=2))
    assert run.engine == "ray" and run.workers == 2 and not run.retries
    assert sorted(run.results) == [0, 1, 2, 3] and not any(r.skipped for r in run.results.values())
    assert _data_files(on_ray) == _data_files(by_hand)
    assert list(on_ray.glob("*.offsets.npy"))
    # exact top-10 over the folder = the library embedded whole
    folder = open_shard_folder(on_ray)
    whole = library_embeddings(lib, Embedder.single(*loaded), cache_dir=tmp_path / "cache")
    q = Embedder.single(*loaded).encode_texts(QUERIES)
    _, ref = SearchIndex(whole.embeddings, "numpy").search(q, 10)
    _, got = AnnIndex(folder.embeddings, "exact", order=folder.rows).search(q, 10)
    assert [[folder.ids[int(j)] for j in row] for row in got] == [[whole.library.ids[j] for j in row] for row in ref]


@NEEDS_RAY
def test_killed_worker_redoes_its_shard_once(ray_local, tiny_ckpt, lib, tmp_path):
    out, marker = tmp_path / "k", tmp_path / "died"
    run = SJ.embed_all_shards(_job(tiny_ckpt, lib, out, 2, die_once=str(marker)),
                              DistributeOptions(engine="ray", workers=2))
    assert marker.exists() and run.retries == 1          # one worker died in mid-shard, after its first chunk
    folder = open_shard_folder(out)
    ids = [folder.ids[i] for i in range(len(folder))]
    assert len(ids) == len(set(ids)) == 40 and folder.meta["invalid"] == 2
    assert sorted(np.asarray(folder.rows).tolist()) == [r for r in range(42) if r not in (4, 9)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # the dead worker's temporaries removed
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = SJ.embed_all_shards(_job(tiny_ckpt, lib, out, 2), DistributeOptions(engine="ray", workers=1))
    assert all(r.skipped for r in again.results.values()) and again.workers == 0   # no worker even started
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp   # a second run writes nothing


def test_process_pool_writes_the_same_files_and_survives_a_dead_worker(tiny_ckpt, lib, tmp_path):
    pool, marker = tmp_path / "pool", tmp_path / "died"
    run = SJ.embed_all_shards(_job(tiny_ckpt, lib, pool, 3, die_once=str(marker)),
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


def test_import_molret_does_not_import_ray():
    import subprocess
    code = "import sys, molret, molret.library.distribute, molret.cli.embed_library; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------- index in parts

def _synthetic_folder(folder: Path, n: int = 6000, shards: int = 3, dim: int = 32) -> np.ndarray:
    """A shard folder of clustered random float16 embeddings, as embed_shard writes it; returns its rows."""
    from molret.library.shard_folder import FOLDER_FILE, shard_name
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((60, dim))
    x = centres[rng.integers(0, 60, n)] + 0.5 * rng.standard_normal((n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    folder.mkdir()
    common = {"model_key": "m", "fingerprint": "f", "num_shards": shards, "dtype": "float16", "dim": dim}
    (folder / FOLDER_FILE).write_text(json.dumps({"format": "molret-shard-folder", **common, "library": "x"}))
    for i in range(shards):
        name, rows = shard_name(i, shards), np.arange(i, n, shards)
        np.save(folder / f"{name}.npy", x[rows])
        np.save(folder / f"{name}.rows.npy", rows.astype(np.int64))
        for ext in (".ids.txt", ".smiles.txt"):
            (folder / f"{name}{ext}").write_text("".join(f"{r}\n" for r in rows))
        (folder / f"{name}.json").write_text(json.dumps({"format": "molret-shard", **common, "shard": i,
                                                         "count": len(rows), "invalid": 0, "written": "t"}))
    return x


@NEEDS_RAY
def test_index_in_parts_equals_the_single_process_build(ray_local, tmp_path):
    import shutil
    from molret.search.ann import IndexParams, open_index
    from molret.search.index_parts import FillPartJob, build_in_parts
    one = tmp_path / "one"
    x = _synthetic_folder(one)
    parted = tmp_path / "parted"
    shutil.copytree(one, parted)
    params = IndexParams(nlist=32, pq_m=8, nprobe=8, rerank=8)
    lib = open_shard_folder(one)
    single = open_index(one, lib.embeddings, "ivfpq", params, signature=lib.meta["signature"], order=lib.rows)
    # a part left by an earlier, interrupted build is kept (not refilled)
    plib = open_shard_folder(parted)
    dist = DistributeOptions(engine="ray", workers=2)
    ann, run = build_in_parts(plib, "ivfpq", params, dist)
    assert run.engine == "ray" and sorted(run.results) == [0, 1, 2]
    assert ann.stored_path.name == single.stored_path.name
    assert ann.stored_path.read_bytes() == single.stored_path.read_bytes()    # the same index, byte for byte
    rng = np.random.default_rng(1)
    q = x[rng.integers(0, len(x), 50)].astype(np.float32) + 0.1 * rng.standard_normal((50, x.shape[1]))
    np.testing.assert_array_equal(ann.search(q, 10)[1], single.search(q, 10)[1])
    assert not list(parted.glob("*.parts")) and not list(parted.glob("*.trained.faiss"))
    assert build_in_parts(open_shard_folder(parted), "ivfpq", params, dist)[1] is None   # stored: nothing redone
    # resumable: a part already present is skipped
    again = tmp_path / "again"
    shutil.copytree(one, again)
    for p in again.glob("index-*"):
        p.unlink()
    alib = open_shard_folder(again)
    stem = ann.stored_path.with_suffix("").name
    from molret.search.ann import train_faiss_index, write_faiss_index
    index = train_faiss_index(alib.embeddings, "ivfpq", params)
    write_faiss_index(index, again / f"{stem}.trained.faiss")
    (again / f"{stem}.parts").mkdir()
    job = FillPartJob(str(again), str(again / f"{stem}.trained.faiss"), str(again / f"{stem}.parts"), 3,
                      [int(s) for s in alib.embeddings.offsets[:-1]])
    assert job.run(1) and not job.run(1)
    ann2, run2 = build_in_parts(alib, "ivfpq", params, DistributeOptions(engine="processes", workers=1))
    assert run2.results == {0: True, 1: False, 2: True}
    assert ann2.stored_path.read_bytes() == single.stored_path.read_bytes()


# ------------------------------------------------------------ graph decoder

@NEEDS_RAY
def test_graph_decoder_on_ray_gives_the_rows_of_one_process(ray_local, tmp_path, capsys):
    from conftest import run_script, write_graph
    from molret.chem.smiles_graph import graph_to_text, smiles_to_graph
    raw = tmp_path / "lib" / "raw"
    raw.mkdir(parents=True)
    for ident, smi in {"1": "CCO", "2": "CC(=O)[O-]", "3": "Oc1ccccc1", "4": "[Na+]", "5": "N#N",
                       "9": "CCCCN", "10": "c1ccncc1", "11": "OC(=O)CCC(=O)O"}.items():
        (raw / f"{ident}.graph").write_text(graph_to_text(*smiles_to_graph(smi)))
    (raw / "6.graph").write_text("edgelist:\n0 x\n")                       # damaged
    edges, ids = smiles_to_graph("CCO")
    write_graph(raw, 8, edges.T.tolist(), [ids[0], ids[1], 12345])          # a corrupted identifier
    one, sharded = tmp_path / "one.tsv", tmp_path / "sharded.tsv"
    code, _, cap = run_script("graphs_to_smiles", capsys, tmp_path / "lib", "--out", one, "--no-cache",
                              "--no-progress", "--workers", 1)
    assert code == 0, cap.err
    code, _, cap = run_script("graphs_to_smiles", capsys, tmp_path / "lib", "--out", sharded, "--no-progress",
                              "--shards", 3, "--workers", 2, "--engine", "ray")
    assert code == 0, cap.err
    assert sharded.read_text() == one.read_text()
    assert "damaged graph file" in one.read_text() and one.read_text().count("\texact") == 8


@NEEDS_RAY
def test_gpus_the_cluster_lacks_are_one_error(ray_local):
    from molret.library.distribute import RayDistributor
    from molret.utils.errors import MolretError
    with pytest.raises(MolretError, match="--gpus-per-worker 0.5: the Ray cluster has 0 GPU"):
        RayDistributor(DistributeOptions(engine="ray", gpus_per_worker=0.5)).workers_for(ray_local, 4)
    assert RayDistributor(DistributeOptions(engine="ray")).workers_for(ray_local, 8) == 2   # one per CPU
    assert RayDistributor(DistributeOptions(engine="ray", workers=5)).workers_for(ray_local, 3) == 3
