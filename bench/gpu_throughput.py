"""Training-step throughput of the full model on synthetic data: a BERT-base
size text encoder (transformers BertConfig defaults, randomly initialised,
128-token texts) and the default GATv2 graph encoder on ~25-atom molecules,
with the contrastive loss, gradient clipping and AdamW, as Trainer.train_step
runs them. Prints pairs/s and peak GPU memory for fp32, bf16 autocast, bf16 +
torch.compile (--compile) and bf16 + the cached-gradient step
(--grad-cache-chunk).

    python bench/gpu_throughput.py                                   # H100: ~3-5 min
    python bench/gpu_throughput.py --device cpu --batch-size 8 --steps 2   # smoke check

No download: the model is random and the data synthetic. A configuration that
fails (out of memory, a compile error) is reported as such and the others go
on; --max-seconds skips the configurations left once the time is spent.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from molret.config import ModelConfig  # noqa: E402
from molret.data.graph_store import GraphStore
from molret.data.challenge import GraphTextDataset, TokenizedTexts  # noqa: E402
from molret.training.gradcache import chunk_sizes, grad_cache_step, split_pair_batch  # noqa: E402
from molret.training.losses import clip_loss  # noqa: E402
from molret.models.encoders import build_model  # noqa: E402
from molret.models.encoding import autocast_context, compile_encoders, pick_device  # noqa: E402

CONFIGS = {  # name: (amp, compile, grad-cache)
    "fp32": ("none", False, False),
    "bf16": ("bf16", False, False),
    "bf16+compile": ("bf16", True, False),
    "bf16+gradcache": ("bf16", False, True),
    "fp32+gradcache": ("none", False, True),
}


def synthetic_pairs(n: int, atoms: int, seq_len: int, vocab: int, text_vocab: int, seed: int = 0) -> GraphTextDataset:
    """n molecules of atoms +- 5 nodes (a chain with a ring closure every ~6
    atoms, both directions) and n texts of exactly seq_len tokens."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(max(2, atoms - 5), atoms + 6, n)
    node_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    edge_lists, edge_ptr = [], [0]
    for s in sizes:
        src = list(range(s - 1)) + list(range(5, s, 6))
        dst = list(range(1, s)) + [i - 5 for i in range(5, s, 6)]
        e = np.array([src + dst, dst + src], dtype=np.int32)
        edge_lists.append(e)
        edge_ptr.append(edge_ptr[-1] + e.shape[1])
    ids = rng.integers(0, vocab, int(node_ptr[-1])).astype(np.uint64)
    store = GraphStore([str(i) for i in range(n)], ids, node_ptr, np.concatenate(edge_lists, axis=1),
                       np.array(edge_ptr, dtype=np.int64))
    store.x = ids.astype(np.int64)
    tok = rng.integers(1000, text_vocab, n * seq_len).astype(np.int32)
    tok[::seq_len] = 101  # [CLS]
    texts = TokenizedTexts(tok, np.arange(0, n * seq_len + 1, seq_len, dtype=np.int64), pad_id=0)
    return GraphTextDataset(store, texts)


def build(args, device):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    bert_cfg = BertConfig()  # BERT-base: 12 layers, 768 wide, 30522 tokens
    if args.text_layers:
        bert_cfg.num_hidden_layers = args.text_layers
    cfg = ModelConfig(vocab_size=args.substructures, substructure_dim=300, max_length=args.seq_len)
    model = build_model(cfg, torch.randn(args.substructures, 300), hf_model=BertModel(bert_cfg)).to(device)
    text_ids = {id(p) for p in model.text_encoder.parameters()}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    text = [p for p in model.text_encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": other, "lr": 1e-3}, {"params": text, "lr": 3e-5}], weight_decay=0.01)
    return model, opt, bert_cfg


def train_step(model, opt, batch, device, amp: str, gc_chunk: int) -> torch.Tensor:
    """Trainer.train_step without the bookkeeping (no host sync)."""
    model.train()
    batch = batch.to(device)
    opt.zero_grad(set_to_none=True)
    if gc_chunk:
        chunks = split_pair_batch(batch, chunk_sizes(len(batch.index), gc_chunk))
        loss = grad_cache_step(model, lambda t, g: clip_loss(t, g, model.temperature_scale()), chunks,
                               autocast=lambda: autocast_context(device, amp), device=device, module=model)
    else:
        with autocast_context(device, amp):
            text_emb, graph_emb = model(batch)
            loss = clip_loss(text_emb, graph_emb, model.temperature_scale())
        loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    return loss.detach()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_config(name, args, device, batches) -> dict:
    amp, use_compile, use_gc = CONFIGS[name]
    row = {"config": name, "batch": args.batch_size, "grad_cache_chunk": args.grad_cache_chunk if use_gc else 0}
    if device.type != "cuda" and (amp != "none" or use_compile):
        return {**row, "status": "skipped (CUDA only)"}
    model = opt = None
    try:
        model, opt, _ = build(args, device)
        if use_compile:
            compile_encoders(model, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        gc_chunk = args.grad_cache_chunk if use_gc else 0
        t0 = time.perf_counter()
        for i in range(args.warmup):
            train_step(model, opt, batches[i % len(batches)], device, amp, gc_chunk)
        sync(device)
        row["warmup_s"] = round(time.perf_counter() - t0, 2)
        losses = []
        t0 = time.perf_counter()
        for i in range(args.steps):
            losses.append(train_step(model, opt, batches[(args.warmup + i) % len(batches)], device, amp, gc_chunk))
        sync(device)
        seconds = time.perf_counter() - t0
        last = float(losses[-1])
        row.update(status="ok" if np.isfinite(last) else "non-finite loss", loss=round(last, 4),
                   step_ms=round(1000 * seconds / args.steps, 1), pairs_per_s=round(args.batch_size * args.steps / seconds, 1))
        if device.type == "cuda":
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    except Exception as e:  # noqa: BLE001 - report and go on with the other configurations
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        row["status"] = f"failed: {type(e).__name__}: {msg}"
        if args.verbose:
            traceback.print_exc()
    finally:
        del model, opt
        if use_compile:
            import torch._dynamo
            torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 on CUDA, 0 on CPU)")
    p.add_argument("--configs", default=None,
                   help=f"comma-separated, from {','.join(CONFIGS)} (default: fp32,bf16,bf16+compile,bf16+gradcache "
                        f"on CUDA; fp32,fp32+gradcache on CPU)")
    p.add_argument("--grad-cache-chunk", type=int, default=None,
                   help="chunk of the gradcache configurations (default: 64, at most a quarter of the batch)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--atoms", type=int, default=25, help="mean atoms per molecule")
    p.add_argument("--substructures", type=int, default=5000, help="substructure vocabulary size")
    p.add_argument("--text-layers", type=int, default=0, help="BERT layers (0: BertConfig's 12)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--max-seconds", type=float, default=420, help="skip the configurations left after this")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--verbose", action="store_true", help="tracebacks of failed configurations")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.warmup is None:
        args.warmup = 5 if device.type == "cuda" else 0
    if args.grad_cache_chunk is None:
        args.grad_cache_chunk = max(2, min(64, args.batch_size // 4))
    names = (args.configs.split(",") if args.configs else
             ["fp32", "bf16", "bf16+compile", "bf16+gradcache"] if device.type == "cuda" else ["fp32", "fp32+gradcache"])
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"unknown --configs {unknown}; choose from {list(CONFIGS)}")

    import torch_geometric
    import transformers
    from transformers import BertConfig
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({gpu}), torch {torch.__version__}, torch_geometric {torch_geometric.__version__}, "
          f"transformers {transformers.__version__}, threads {torch.get_num_threads()}")
    bert = BertConfig()
    print(f"text: BERT {args.text_layers or bert.num_hidden_layers} layers x {bert.hidden_size}, random init, "
          f"{args.seq_len} tokens; graph: GATv2 {ModelConfig.num_layers} layers x {ModelConfig.hidden_dim}, "
          f"~{args.atoms} atoms; batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps")

    start = time.perf_counter()
    n_batches = 4
    data = synthetic_pairs(n_batches * args.batch_size, args.atoms, args.seq_len, args.substructures, bert.vocab_size)
    batches = [data.collate(range(i * args.batch_size, (i + 1) * args.batch_size)) for i in range(n_batches)]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
    rows = []
    for name in names:
        if time.perf_counter() - start > args.max_seconds:
            rows.append({"config": name, "status": f"skipped (--max-seconds {args.max_seconds:.0f} spent)"})
            continue
        t0 = time.perf_counter()
        rows.append(run_config(name, args, device, batches))
        rows[-1]["config_s"] = round(time.perf_counter() - t0, 1)
        print(f"  {name}: {rows[-1]['status']} ({rows[-1]['config_s']} s)", flush=True)

    base = next((r["pairs_per_s"] for r in rows if r["config"] == "fp32" and "pairs_per_s" in r), None)
    print()
    print("| config | batch | chunk | pairs/s | ms/step | vs fp32 | peak GPU mem (GiB) | warm-up (s) | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pps = r.get("pairs_per_s")
        speed = f"{pps / base:.2f}x" if pps and base else "-"
        print(f"| {r['config']} | {r.get('batch', '-')} | {r.get('grad_cache_chunk') or '-'} | {pps if pps is not None else '-'} | {r.get('step_ms', '-')} | "
              f"{speed} | {r.get('peak_mem_gib', '-')} | {r.get('warmup_s', '-')} | {r['status']} |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "gpu": gpu, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
