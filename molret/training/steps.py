"""The pieces of an optimiser step: optimiser, schedule, forward passes (torchrun, GradCache), clipped step.

Free functions of the trainer's parts (model, DDP wrapper, process group,
optimiser), used by ``molret.training.trainer.Trainer``.
"""
from __future__ import annotations

import math

import torch

from molret.utils.errors import MolretError
from molret.training.distributed import all_gather_rows, gather_with_grad, share_sizes
from molret.training.gradcache import even_sizes, grad_cache_step, split_pair_batch
from molret.models.encoding import autocast_context


def local_share(batch, dist):
    """This process's contiguous share of a batch (all of it on one process)."""
    if not dist.enabled:
        return batch
    return split_pair_batch(batch, share_sizes(len(batch.index), dist.world_size))[dist.rank]


def embed_global_batch(model, ddp, dist, batch):
    """(text_emb, graph_emb) of the whole batch. Under torchrun each process
    embeds its share and the shares are gathered, with autograd through the
    local rows: every process computes the loss of the global batch."""
    if ddp is None:
        return model(batch)
    text_emb, graph_emb, _ = ddp(local_share(batch, dist))
    sizes, world = share_sizes(len(batch.index), dist.world_size), float(dist.world_size)
    # x world: DDP averages the gradients of the processes, each of which holds only its rows' part
    return gather_with_grad(text_emb, sizes, world), gather_with_grad(graph_emb, sizes, world)


def grad_cache_backward(model, ddp, dist, batch, loss_fn, *, chunk: int, amp: str, device, scaler):
    """--grad-cache-chunk: the loss of the whole (global) batch, backpropagated
    chunk by chunk (molret.training.gradcache); returns (loss, text_emb, graph_emb), the
    embeddings detached (what ``loss_fn`` saw)."""
    world, rank = dist.world_size, dist.rank
    shares = share_sizes(len(batch.index), world)
    # as many chunks on every process (DDP forward passes are collective)
    chunks = split_pair_batch(local_share(batch, dist), even_sizes(shares[rank], -(-max(shares) // chunk)))
    gather = None
    if ddp is not None:
        start = sum(shares[:rank])
        gather = lambda x: (all_gather_rows(x, shares), start, start + shares[rank])  # noqa: E731
    seen = {}

    def loss_of(text_emb, graph_emb):
        seen["text"], seen["graph"] = text_emb.detach(), graph_emb.detach()
        return loss_fn(text_emb, graph_emb)

    loss = grad_cache_step(
        ddp if ddp is not None else model, loss_of, chunks,
        backward=(lambda loss: scaler.scale(loss).backward()) if scaler else None,
        autocast=lambda: autocast_context(device, amp), device=device, gather=gather,
        embed_grad_scale=float(world), no_sync=ddp.no_sync if ddp is not None else None, module=model)
    return loss, seen["text"], seen["graph"]


def make_optimizer(model, t) -> torch.optim.Optimizer:
    """AdamW: the text encoder at --text-lr (with --layer-lr-decay, less per
    layer down), everything else (graph encoder, heads, temperature) at --lr."""
    text_ids = {id(p) for p in model.text_encoder.parameters()}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    groups = [{"params": other, "lr": t.lr}]
    groups += text_param_groups(model.text_encoder.hf_model, t.text_lr, t.layer_lr_decay)
    # fused: one kernel per step instead of a loop over tensors (3x faster on a CPU for a 32768 x 512
    # --text-bow table: 96 against 281 ms per step, bench note in docs/experiments.md)
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, weight_decay=t.weight_decay, fused=fused)


def text_param_groups(hf_model, text_lr: float, decay: float) -> list[dict]:
    """The text encoder's trainable parameters as optimiser groups: one at
    ``text_lr``, or with ``decay`` < 1 one per depth, transformer layer i
    below the top at text_lr * decay^i and the embeddings one step below the
    lowest layer (anything else, such as a pooler, with the top layer)."""
    named = [(n, p) for n, p in hf_model.named_parameters() if p.requires_grad]
    if not named:
        return []
    if decay == 1.0:
        return [{"params": [p for _, p in named], "lr": text_lr}]
    from molret.models.encoders import transformer_layers
    layers = transformer_layers(hf_model)
    if layers is None:
        raise MolretError("--layer-lr-decay: cannot find the transformer layers of this text model")
    depth_of = {id(p): len(layers) - 1 - i for i, layer in enumerate(layers) for p in layer.parameters()}
    by_depth: dict[int, list] = {}
    for name, p in named:
        depth = depth_of.get(id(p), len(layers) if "embeddings" in name.split(".")[0] else 0)
        by_depth.setdefault(depth, []).append(p)
    return [{"params": by_depth[d], "lr": text_lr * decay ** d} for d in sorted(by_depth)]


def warmup_cosine(step: int, total_steps: int, warmup_ratio: float) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0 over ``total_steps``."""
    warmup = max(1, int(warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_and_step(optimizer, scaler, grad_clip: float) -> bool:
    """Clip the gradient norm (--grad-clip, 0: off) and step; False (no step) when
    the gradient is not finite (with fp16 the GradScaler skips such a step itself)."""
    if scaler:
        scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if scaler:
        scaler.step(optimizer)  # skips the step itself on inf/nan gradients
        scaler.update()
    elif not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return False
    else:
        optimizer.step()
    return True
