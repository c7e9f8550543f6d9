"""One command, one table: graph parsing/caching, training throughput of the
three text paths against the organisers' baseline-style data path, and the
quality the recommended CPU recipe reaches in a fixed wall-clock budget.

    python bench/benchmark.py                      # everything (~35 min on 2 cores)
    python bench/benchmark.py --budget-minutes 5   # a shorter quality run
    python bench/benchmark.py --skip-quality       # parsing + throughput only (~5 min)
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "altegrad"

# The recommended CPU recipe (README): MiniLM with its top 2 layers fine-tuned
# on cached states of the 4 frozen lower layers, GATv2, bf16 autocast (float32
# on CPUs without native bf16: pass --amp none there), trained for the budget;
# the final val metrics are reported plain and with Sinkhorn re-ranking, which
# the submission uses.
CPU_RECIPE = ["--text-model", "minilm", "--text-pooling", "mean", "--train-text-layers", "2", "--conv", "gatv2",
              "--batch-size", "64", "--text-lr", "1e-4", "--rerank", "sinkhorn", "--epochs", "200"]  # + --amp (bf16 by default)


def rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_parse(data_dir: Path) -> list[tuple[str, str]]:
    from molret.data.graph_store import GraphSource, GraphStore, build_graph_store
    from molret.data.vocab import Vocab
    from molret.data.challenge import resolve_data_dir
    source = GraphSource(resolve_data_dir(data_dir).need("raw"))
    cids = sorted(source._members) if source._zip is not None else sorted(p.stem for p in (data_dir / "raw").glob("*.graph"))
    test_cids = (data_dir / "test_cids.txt").read_text().split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        test = build_graph_store(test_cids, source, progress=False)
        rows.append((f"parse {len(test_cids):,} test graphs (cold)", f"{time.perf_counter() - t:.2f} s"))
        test.save(Path(tmp) / "test.npz", "bench")
        t = time.perf_counter()
        GraphStore.load(Path(tmp) / "test.npz", "bench")
        rows.append(("load test graphs from cache", f"{time.perf_counter() - t:.3f} s"))
        t = time.perf_counter()
        store = build_graph_store(cids, source, progress=False)
        rows.append((f"parse all {len(cids):,} graphs (cold)", f"{time.perf_counter() - t:.1f} s"))
        t = time.perf_counter()
        store.save(Path(tmp) / "all.npz", "bench")
        rows.append(("write the cache (one file)", f"{time.perf_counter() - t:.2f} s, "
                     f"{(Path(tmp) / 'all.npz').stat().st_size / 1e6:.0f} MB on disk"))
        del store
        t = time.perf_counter()
        store = GraphStore.load(Path(tmp) / "all.npz", "bench")
        store.attach_vocab(Vocab.from_npy(data_dir / "token_embedding_dict.npy"))
        rows.append(("load all graphs from cache (+ vocab lookup)", f"{time.perf_counter() - t:.2f} s"))
        rows.append(("all graphs in memory", f"{store.nbytes() / 1e6:.0f} MB "
                     f"({len(store.identifiers):,} atoms, {store.edges.shape[1]:,} directed edges)"))
    return rows


def _trainer(data_dir: Path, cache_dir: Path, run_dir: Path, batch_size: int, **model_kw):
    from molret.config import RunConfig
    from molret.training.trainer import Trainer, setup_logging
    cfg = RunConfig()
    cfg.train.data_dir, cfg.train.cache_dir = str(data_dir), str(cache_dir)
    cfg.train.batch_size, cfg.train.write_submission = batch_size, False
    cfg.model.text_model, cfg.model.text_pooling, cfg.model.conv = "minilm", "mean", "gatv2"
    for k, v in model_kw.items():
        setattr(cfg.train if hasattr(cfg.train, k) else cfg.model, k, v)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(None)
    return Trainer(cfg, run_dir, progress=False)


def time_steps(step_fn, batches, warmup: int) -> float:
    for b in batches[:warmup]:
        step_fn(b)
    t = time.perf_counter()
    n = 0
    for b in batches[warmup:]:
        step_fn(b)
        n += len(b)
    return n / (time.perf_counter() - t)


def bench_throughput(data_dir: Path, work: Path, batch_size: int, steps: int, warmup: int = 2):
    """pairs/s of one training step (forward, backward, optimizer) on the same
    batches: our three text paths in float32 and with bf16 autocast, against
    the organisers' loading style with the same fine-tuned model."""
    from bench.baseline_reference import BaselineGraphTextDataset, baseline_loader, encode_baseline_batch
    from molret.data.graph_store import GraphSource
    from molret.data.vocab import read_embedding_dict
    from molret.data.challenge import resolve_data_dir
    from molret.training.losses import clip_loss
    from molret.models.encoding import autocast_context

    rows = []
    cache = work / "cache"
    results = {}
    for label, kw in [("fine-tuned text encoder", {}),
                      ("top 2 text layers fine-tuned (lower layers cached)", {"train_text_layers": 2}),
                      ("frozen text encoder (cached features)", {"freeze_text": True})]:
        trainer = _trainer(data_dir, cache, work / "tp", batch_size, **kw)
        trainer.start()  # the learning-rate schedule that train_step steps (fit calls start)
        batches = trainer.make_batches(0)[: steps + warmup]
        for amp in ("none", "bf16"):
            trainer.cfg.train.amp = amp  # read by every train_step
            results[(label, amp)] = time_steps(lambda b: trainer.train_step(trainer.train_set.collate(b)),
                                               batches, warmup)
        if label == "fine-tuned text encoder":
            model, tokenizer, data = trainer.model, trainer.tokenizer, trainer.data
        else:
            del trainer
    # The organisers' data path with the same model (fine-tuned) and batch size.
    emb = read_embedding_dict(data_dir / "token_embedding_dict.npy")   # restricted unpickler, as Vocab.from_npy
    t = time.perf_counter()
    ds = BaselineGraphTextDataset(work / "baseline_processed", data.train.cids[: batch_size * (steps + warmup)],
                                  data.train.texts, GraphSource(resolve_data_dir(data_dir).need("raw")), emb, tokenizer)
    prep = time.perf_counter() - t
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    device = next(model.parameters()).device

    def baseline_step(batch, amp):
        model.train()
        with autocast_context(device, amp):
            text_emb, graph_emb = encode_baseline_batch(model, batch)
            loss = clip_loss(text_emb, graph_emb, model.temperature_scale())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    base = {}
    it = [range(batch_size)] * (steps + warmup)  # placeholders: the loader supplies the batches
    for amp in ("none", "bf16"):
        loader_batches = iter(baseline_loader(ds, batch_size))  # loading is timed inside the loop, as the baseline does
        base[amp] = time_steps(lambda _: baseline_step(next(loader_batches), amp), it, warmup)
    rows.append((f"baseline-style data path, fine-tuned, float32 (batch {batch_size})",
                 f"{base['none']:.1f} pairs/s (+ {prep:.0f} s one-off preprocessing of {len(ds)} .pt files)"))
    rows.append((f"baseline-style data path, fine-tuned, bf16 autocast (batch {batch_size})",
                 f"{base['bf16']:.1f} pairs/s (for reference: the organisers' code ran float32)"))
    for (label, amp), rate in results.items():
        precision = "float32" if amp == "none" else "bf16 autocast"
        extra = ""
        if label == "fine-tuned text encoder":
            extra = f" = {rate / base['none']:.1f}x the baseline style (float32)"
            if amp == "bf16":
                extra += f", {rate / base['bf16']:.1f}x the baseline style in bf16"
        rows.append((f"{label}, {precision} (batch {batch_size})", f"{rate:.1f} pairs/s{extra}"))
    return rows


def bench_quality_members(data_dir: Path, runs: Path, minutes: float, amp: str, members: int):
    """The ensemble recipe: ``members`` runs of the CPU recipe trained at the
    same time (one process per core, --threads 1, seeds 0..N-1), each for the
    budget, then their mean similarity re-ranked with Sinkhorn
    (ensemble_method.py) for the val metrics and the test submission."""
    import subprocess
    import ensemble_method
    stamp = time.strftime('%H%M%S')
    recipe = CPU_RECIPE + ["--amp", amp]
    t = time.perf_counter()
    procs, names = [], []
    for i in range(members):
        name = f"cpu-ensemble-{int(minutes)}min-{stamp}-m{i}"
        cmd = [sys.executable, str(REPO / "main.py"), "--data-dir", str(data_dir), *recipe, "--seed", str(i),
               "--threads", "1", "--time-budget", str(minutes), "--save-embeddings", "--runs-dir", str(runs),
               "--run-name", name, "--no-progress"]
        runs.mkdir(parents=True, exist_ok=True)
        log = open(runs / f"{name}.out", "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        names.append(name)
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"member runs exited with {codes}; see {runs}/*.out")
    rows = []
    for name in names:
        result = json.loads((runs / name / "result.json").read_text())
        m = result["val"]
        rows.append((f"member {name} (seed {names.index(name)}, 1 thread)",
                     f"pool LRAP {result.get('pool_lrap', float('nan')):.4f}  "
                     f"val(500) LRAP {m['lrap']:.4f}  MRR {m['mrr']:.4f}  Hits@1 {m['hits@1']:.3f}  "
                     f"Hits@10 {m['hits@10']:.3f} (best epoch {result['best_epoch']} of {result['epochs']}; "
                     f"training {result['train_seconds']:.0f} s)"))
    out = runs / f"cpu-ensemble-{int(minutes)}min-{stamp}-submission.csv"
    emb = [str(runs / n / "embeddings") for n in names]
    plain = ensemble_method.main(["--members", *emb])["ensemble"]
    res = ensemble_method.main(["--members", *emb, "--rerank", "sinkhorn", "--out", str(out)])
    reranked = res["ensemble"]
    if "pool" in res:
        e = res["pool"]["ensemble"]
        rows.append((f"ensemble of {members} members, pool (val among val + test molecules)",
                     f"pool LRAP {e['pool_lrap']:.4f}, re-ranked {e.get('pool_lrap_reranked', float('nan')):.4f}"))
    wall = time.perf_counter() - t
    for label, m in (("mean similarity", plain), ("mean similarity re-ranked (sinkhorn, T=0.05)", reranked)):
        rows.append((f"ensemble of {members} members, {label}",
                     f"val LRAP {m['lrap']:.4f}  MRR {m['mrr']:.4f}  Hits@1 {m['hits@1']:.3f}  "
                     f"Hits@10 {m['hits@10']:.3f}"))
    rows.append((f"ensemble recipe: {members} x [{' '.join(recipe)} --threads 1 --seed i --time-budget {minutes:g}] "
                 f"in parallel, then ensemble_method.py --rerank sinkhorn", f"wall {wall:.0f} s in all"))
    rows.append(("test submission (ensemble, re-ranked)", str(out)))
    return rows


def bench_quality(data_dir: Path, runs: Path, minutes: float, amp: str = "bf16", members: int = 1):
    if members > 1:
        return bench_quality_members(data_dir, runs, minutes, amp, members)
    import main as main_script
    name = f"cpu-recipe-{int(minutes)}min-{time.strftime('%H%M%S')}"
    t = time.perf_counter()
    recipe = CPU_RECIPE + ["--amp", amp]
    result = main_script.main(["--data-dir", str(data_dir), *recipe, "--time-budget", str(minutes),
                               "--runs-dir", str(runs), "--run-name", name, "--no-progress"])
    wall = time.perf_counter() - t
    m = result["val"]
    pool = (f"; pool LRAP {result['pool_lrap']:.4f}" + (f", re-ranked {result['pool_lrap_reranked']:.4f}"
                                                         if "pool_lrap_reranked" in result else "")) \
        if "pool_lrap" in result else ""
    rows = [(f"CPU recipe, {minutes:g} min budget: {' '.join(recipe)}",
             f"val LRAP {m['lrap']:.4f}  MRR {m['mrr']:.4f}  Hits@1 {m['hits@1']:.3f}  Hits@10 {m['hits@10']:.3f} "
             f"(best epoch {result['best_epoch']} of {result['epochs']}; training {result['train_seconds']:.0f} s, "
             f"wall {wall:.0f} s incl. text states and submission){pool}")]
    if "val_reranked" in result:
        r, how = result["val_reranked"], result["rerank"]
        rows.append((f"same model, val similarity re-ranked ({how['method']}, T={how['temperature']:g})",
                     f"val LRAP {r['lrap']:.4f}  MRR {r['mrr']:.4f}  Hits@1 {r['hits@1']:.3f}  "
                     f"Hits@10 {r['hits@10']:.3f}"))
    rows.append(("test submission", result.get("submission", "-")))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DEFAULT_DATA), help="challenge data folder")
    p.add_argument("--work-dir", default=str(REPO / "runs" / "bench"), help="caches and runs of the benchmark")
    p.add_argument("--batch-size", type=int, default=32, help="batch of the throughput comparison")
    p.add_argument("--steps", type=int, default=8, help="timed training steps per path (after 2 warm-up steps)")
    p.add_argument("--budget-minutes", type=float, default=30.0, help="wall-clock budget of the quality run")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--amp", choices=["bf16", "none"], default="bf16",
                   help="precision of the quality run (bf16 autocast needs a CPU with AVX512-BF16/AMX to pay)")
    p.add_argument("--members", type=int, default=1,
                   help="quality run: train this many models of the recipe at the same time (one thread each, "
                        "seeds 0..N-1) and report their Sinkhorn re-ranked ensemble")
    p.add_argument("--skip-parse", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir, work = Path(args.data_dir), Path(args.work_dir)
    if not (data_dir / "train.tsv").exists():
        sys.exit(f"error: {data_dir} is not a challenge data folder (give --data-dir)")
    rows = [("machine", f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                        f"torch {torch.__version__}")]
    sections = [("parse", args.skip_parse, lambda: bench_parse(data_dir)),
                ("throughput", args.skip_throughput, lambda: bench_throughput(data_dir, work, args.batch_size, args.steps)),
                ("quality", args.skip_quality, lambda: bench_quality(data_dir, work / "runs", args.budget_minutes, args.amp,
                                                          args.members))]
    for name, skip, run in sections:
        if skip:
            continue
        t = time.perf_counter()
        try:
            rows += run()
        except Exception as e:  # one failing section must not lose the others' numbers
            import traceback
            traceback.print_exc()
            rows.append((f"{name} section FAILED", f"{type(e).__name__}: {e}"))
        print(f"[{name} section: {time.perf_counter() - t:.0f} s]", flush=True)
        for k, v in rows:
            print(f"  {k}: {v}", flush=True)
    rows.append(("peak memory of this process", f"{rss_mb():.0f} MB"))
    width = max(len(r[0]) for r in rows)
    print("\n| measure" + " " * (width - 7) + " | result |\n|" + "-" * (width + 2) + "|---|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")
    return rows


if __name__ == "__main__":
    main()
