"""Multi-GPU training with torchrun (DistributedDataParallel).

    torchrun --nproc-per-node 4 main.py --data-dir data --run-name big --batch-size 1024

Every process builds the same list of batches (it depends only on the seed
and the epoch) and embeds its contiguous share of each batch; the shares are
gathered so that the contrastive loss sees the global batch (every other
pair of the global batch is a negative). Only rank 0 evaluates and writes.
Outside torchrun (WORLD_SIZE unset or 1) nothing here is active.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from molret.training.gradcache import even_sizes


@dataclass
class DistEnv:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistEnv, torch.device]:
    """Join the process group when torchrun started several processes
    (WORLD_SIZE > 1): nccl on CUDA (one GPU per process: cuda:LOCAL_RANK),
    gloo on CPU. Returns the environment and the device of this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(), device
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(dist.get_world_size(), dist.get_rank(), local_rank), device


def close_distributed(env: DistEnv) -> None:
    """Wait for every process (rank 0 finishes last), then leave the group."""
    if env.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# -------------------------------------------------------- batch shares

def share_sizes(n: int, world: int) -> list[int]:
    """Rows of an ``n``-row batch taken by each rank (contiguous, near-equal)."""
    return even_sizes(n, world)


def share_range(n: int, world: int, rank: int) -> tuple[int, int]:
    sizes = share_sizes(n, world)
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


# ------------------------------------------------------------- gathers

def all_gather_rows(x: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (rank order), without
    gradient. Ranks may hold different row counts (``sizes``; asked from the
    ranks when not given)."""
    world = dist.get_world_size()
    sizes = sizes if sizes is not None else _row_counts(x)
    most = max(sizes)
    padded = x.detach()
    if x.shape[0] < most:
        padded = torch.cat([padded, padded.new_zeros((most - x.shape[0],) + tuple(x.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def _row_counts(x: torch.Tensor) -> list[int]:
    n = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, n)
    return [int(c) for c in counts]


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def gather_with_grad(x: torch.Tensor, sizes: list[int] | None = None, grad_scale: float = 1.0) -> torch.Tensor:
    """All-gather along dim 0 keeping autograd through this rank's own rows
    (the other ranks' rows are constants here; their gradient is computed on
    their own rank). ``grad_scale`` multiplies the gradient of the local
    rows: pass the world size under DDP, which averages the ranks' gradients
    while each rank's gradient is only its rows' share of the global loss.
    Outside a process group this returns ``x``."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    sizes = sizes if sizes is not None else _row_counts(x)
    full = all_gather_rows(x, sizes)
    rank = dist.get_rank()
    start = sum(sizes[:rank])
    local = _ScaleGrad.apply(x, grad_scale) if grad_scale != 1.0 else x
    return torch.cat([full[:start], local, full[start + sizes[rank]:]])


# ---------------------------------------------------------------- DDP

class TrainForward(nn.Module):
    """What DDP wraps: the model's (text_emb, graph_emb) plus the temperature,
    which the loss uses outside the encoders; returning it lets DDP's search
    for unused parameters see it (else it is reduced twice or never)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        text_emb, graph_emb = self.model(batch)
        return text_emb, graph_emb, self.model.temperature_scale()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """DDP over ``TrainForward(model)``. find_unused_parameters: the Hugging
    Face pooler (and, with --freeze-text, nothing of the text side) gets no
    gradient. Parameters are broadcast from rank 0 here."""
    return nn.parallel.DistributedDataParallel(TrainForward(model), device_ids=None, find_unused_parameters=True)


# ------------------------------------------------------ small syncs

def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank."""
    if not env.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank."""
    if not env.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
