"""Cached-gradient contrastive step (GradCache, Gao et al. 2021): a large
contrastive batch with the activation memory of a small one.

1. Embed the batch in chunks without autograd, saving each chunk's RNG state.
2. Compute the loss on the full embedding matrices (leaf tensors) and
   backpropagate it: this gives d loss / d embedding for every row, and the
   gradient of every parameter the loss uses directly (the temperature).
3. Re-run each chunk with autograd, replaying its RNG state so that dropout
   draws the same masks, and backpropagate the cached embedding gradients.

The loss and the gradients are those of the full batch embedded chunk by
chunk; with an encoder whose rows do not interact (no BatchNorm), they are
those of the plain full-batch step.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Sequence

import torch

from molret.data.graph_store import GraphBatch
from molret.data.challenge import PairBatch, TextBatch


# ------------------------------------------------------------ batch slicing

def even_sizes(n: int, parts: int) -> list[int]:
    """``n`` rows cut into ``parts`` contiguous pieces whose sizes differ by at most one."""
    base, extra = divmod(n, parts)
    return [base + (i < extra) for i in range(parts)]


def chunk_sizes(n: int, chunk: int) -> list[int]:
    """Sizes of the fewest near-equal chunks of at most ``chunk`` rows."""
    return even_sizes(n, max(1, -(-n // chunk)))


def split_pair_batch(batch: PairBatch, sizes: Sequence[int]) -> list[PairBatch]:
    """Contiguous row slices of a collated batch (on whatever device it is).
    Text padding is trimmed to each slice's longest row; node and edge
    indices are renumbered per slice. Graph nodes must be grouped by graph
    (as ``GraphStore.collate`` and torch-geometric produce them)."""
    g, text = batch.graph, batch.text
    node_ptr = [0] + torch.bincount(g.batch, minlength=g.num_graphs).cumsum(0).tolist()
    edge_graph = g.batch[g.edge_index[0]] if g.edge_index.numel() else g.edge_index[0]
    ends = None
    if text.attention_mask is not None and text.attention_mask.numel():
        # last attended position + 1 of each row (right padding trimmed per slice)
        positions = torch.arange(1, text.attention_mask.shape[1] + 1, device=text.attention_mask.device)
        ends = ((text.attention_mask != 0) * positions).amax(1).tolist()
    out, start = [], 0
    for size in sizes:
        stop = start + size
        n0, n1 = node_ptr[start], node_ptr[stop]
        emask = (edge_graph >= start) & (edge_graph < stop)
        graph = GraphBatch(g.x[n0:n1], g.edge_index[:, emask] - n0, g.batch[n0:n1] - start, size,
                           None if g.features is None else g.features[start:stop])
        if text.features is not None:
            tb = TextBatch(features=text.features[start:stop])
        else:
            full = text.input_ids if text.input_ids is not None else text.hidden_states
            width = max(ends[start:stop], default=0) if ends is not None else full.shape[1]
            width = max(width, 1)
            mask = None if text.attention_mask is None else text.attention_mask[start:stop, :width]
            if text.hidden_states is not None:
                tb = TextBatch(hidden_states=text.hidden_states[start:stop, :width], attention_mask=mask)
            else:
                tb = TextBatch(input_ids=text.input_ids[start:stop, :width], attention_mask=mask)
        for k, v in text.bow_rows(start, stop).items():
            setattr(tb, k, v)
        out.append(PairBatch(graph, tb, batch.index[start:stop]))
        start = stop
    return out


# ------------------------------------------------------------------- RNG

class RngState:
    """The CPU and CUDA generator states at one point, to replay dropout."""

    def __init__(self, device: torch.device | None = None):
        self.cpu = torch.get_rng_state()
        self.cuda_device = None
        if device is not None and device.type == "cuda":
            self.cuda_device = device.index if device.index is not None else torch.cuda.current_device()
            self.cuda = torch.cuda.get_rng_state(self.cuda_device)

    @contextmanager
    def replay(self):
        """Run the block from the saved state; the global generators are
        restored afterwards (as if the block had drawn nothing)."""
        devices = [self.cuda_device] if self.cuda_device is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda_device is not None:
                torch.cuda.set_rng_state(self.cuda, self.cuda_device)
            yield


# ------------------------------------------------------------------ step

def grad_cache_step(forward: Callable, loss_fn: Callable, chunks: Sequence, *,
                    backward: Callable | None = None, autocast: Callable = nullcontext,
                    device: torch.device | None = None, gather: Callable | None = None,
                    embed_grad_scale: float = 1.0, no_sync: Callable | None = None,
                    module: torch.nn.Module | None = None) -> torch.Tensor:
    """One cached-gradient forward/backward; returns the (detached) loss.

    forward(chunk) -> (text_emb, graph_emb, *extra): one chunk's embeddings.
        Extra outputs that require grad get a zero gradient in the replay (so
        that DistributedDataParallel sees every parameter it expects).
    loss_fn(text_emb, graph_emb) -> the scalar loss of the full batch.
    backward(loss): how to backpropagate the loss (default ``loss.backward()``;
        pass the GradScaler's ``scaler.scale(loss).backward()`` for fp16). Its
        scaling carries into the cached embedding gradients.
    autocast(): context for the forward passes and the loss (AMP).
    device: where the model runs (its CUDA RNG is replayed too).
    gather(local_emb) -> (global_emb, start, stop): multi-GPU; this process's
        rows of the global matrix are [start, stop).
    embed_grad_scale: factor on the cached embedding gradients (the world
        size under DDP, which averages gradients across processes).
    no_sync(): context under which a replay's backward does not all-reduce
        (``DistributedDataParallel.no_sync``): every chunk but the last.
    module: its buffers (BatchNorm running statistics) are put back after
        the no-grad pass, so that they are updated once per step, not twice.

    Gradients are accumulated into ``.grad`` (zero them before). If the loss
    is not finite nothing is backpropagated.
    """
    if not chunks:
        raise ValueError("grad_cache_step: no chunks")
    backward = backward or (lambda loss: loss.backward())
    # 1. embeddings without autograd, remembering each chunk's RNG state
    states, text, graph = _embed_without_grad(forward, chunks, autocast, device, module)
    start, stop = 0, text.shape[0]
    if gather is not None:
        text, start, stop = gather(text)
        graph, _, _ = gather(graph)

    # 2. the loss on the full matrices; d loss / d embeddings is cached
    text = text.detach().requires_grad_(True)
    graph = graph.detach().requires_grad_(True)
    with autocast():
        loss = loss_fn(text, graph)
    if not torch.isfinite(loss):
        return loss.detach()
    backward(loss)
    grad_text = _rows_grad(text, start, stop, embed_grad_scale)
    grad_graph = _rows_grad(graph, start, stop, embed_grad_scale)

    # 3. replay each chunk with autograd and push the cached gradients through
    _replay_with_grad(forward, chunks, states, grad_text, grad_graph, autocast, no_sync)
    return loss.detach()


def _embed_without_grad(forward: Callable, chunks: Sequence, autocast: Callable, device,
                        module: torch.nn.Module | None) -> tuple[list, torch.Tensor, torch.Tensor]:
    """(RNG state before each chunk, text and graph embeddings of all chunks), computed without
    autograd; ``module``'s buffers are put back after (updated once per step, by the replay)."""
    saved_buffers = [(b, b.detach().clone()) for b in module.buffers()] if module is not None else []
    states, texts, graphs = [], [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RngState(device))
            with autocast():
                out = forward(chunk)
            texts.append(out[0])
            graphs.append(out[1])
    with torch.no_grad():
        for buf, saved in saved_buffers:
            buf.copy_(saved)
    return states, torch.cat(texts), torch.cat(graphs)


def _replay_with_grad(forward: Callable, chunks: Sequence, states: list, grad_text: torch.Tensor,
                      grad_graph: torch.Tensor, autocast: Callable, no_sync: Callable | None) -> None:
    """Re-run each chunk with autograd (same RNG state) and backpropagate its rows of the cached
    embedding gradients (a zero gradient into extra outputs that require grad)."""
    offset = 0
    for i, (chunk, state) in enumerate(zip(chunks, states)):
        last = i == len(chunks) - 1
        with (no_sync() if no_sync is not None and not last else nullcontext()):
            with state.replay(), autocast():
                out = forward(chunk)
            n = out[0].shape[0]
            tensors = [out[0], out[1]]
            grads = [grad_text[offset:offset + n], grad_graph[offset:offset + n]]
            for extra in out[2:]:
                if isinstance(extra, torch.Tensor) and extra.requires_grad:
                    tensors.append(extra)
                    grads.append(torch.zeros_like(extra))
            torch.autograd.backward(tensors, grads)
        offset += n


def _rows_grad(leaf: torch.Tensor, start: int, stop: int, scale: float) -> torch.Tensor:
    grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    grad = grad[start:stop]
    return grad * scale if scale != 1.0 else grad
