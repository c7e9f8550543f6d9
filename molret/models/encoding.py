"""Embedding with a model: device and precision choice, text and graph embeddings, their similarity.

Shared by training (evaluation), predictions.py, search, ensembles and the
exports; nothing here imports the trainer.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from molret.utils.errors import MolretError
from molret.data.graph_store import GraphStore, concat_ranges
from molret.utils.files import atomic_np_save, atomic_write_text

log = logging.getLogger("molret")

# Library and query embeddings of a search are both computed in float32 whatever the checkpoint
# trained with, so that they match each other and the library cache key needs no AMP setting.
SEARCH_AMP = "none"


# ------------------------------------------------------ device and precision

def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MolretError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(name)


def autocast_context(device: torch.device, amp: str):
    """--amp: bf16 autocast on CUDA or CPU (fast on CPUs with AVX512-BF16/AMX),
    fp16 on CUDA only; elsewhere float32 (so a checkpoint trained with fp16 on
    a GPU still predicts on a CPU)."""
    if amp == "none":
        return nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def check_amp(device: torch.device, amp: str) -> None:
    """Refuse --amp fp16 without CUDA; say when a CPU has no native bf16."""
    if amp == "fp16" and device.type != "cuda":
        raise MolretError("--amp fp16 needs a CUDA GPU; on a CPU use --amp bf16 (or --amp none)")
    if amp == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
        log.warning("--amp bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX): it may be slower than "
                    "--amp none")


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - an older/other build: do not guess
        return True


def compile_encoders(model, device: torch.device) -> None:
    """--compile: torch.compile the graph encoder and (unless frozen) the text
    encoder in place (state_dict keys unchanged); CUDA only."""
    if device.type != "cuda":
        log.info("--compile: skipped on CPU (torch.compile is used on CUDA only)")
        return
    model.graph_encoder.compile(dynamic=True)
    if model.cfg.train_text_layers != 0:
        model.text_encoder.compile(dynamic=True)
    log.info("--compile: encoders compiled (the first steps are slower while kernels are built)")


# ------------------------------------------------------------- text encoder

def length_sorted_batches(text_data, batch_size: int, device, desc: str, progress: bool):
    """(indices, TextBatch on device) over all texts, similar lengths together
    (less padding); results are written back at ``indices``."""
    from tqdm.auto import tqdm
    order = np.argsort(text_data.lengths, kind="stable")
    for i in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
        idx = order[i:i + batch_size]
        yield idx, text_data.collate(idx).to(device)


@torch.no_grad()
def run_text_encoder(model, tokens, device, batch_size: int, progress=True) -> np.ndarray:
    """Pooled outputs of the (frozen) text encoder, before the projection head."""
    model.eval()
    out = np.zeros((len(tokens), model.text_encoder.out_dim), dtype=np.float32)
    for idx, batch in length_sorted_batches(tokens, batch_size, device, "text encoder (frozen)", progress):
        out[idx] = model.text_encoder(batch.input_ids, batch.attention_mask).float().cpu().numpy()
    return out


@torch.no_grad()
def lower_token_states(model, tokens, n_top: int, device, batch_size: int, progress=True):
    """Token states entering the top ``n_top`` text layers, computed once (in
    memory: float32, so the cached path computes what the full model does)."""
    from molret.data.challenge import TokenStates
    model.eval()
    states = np.zeros((int(tokens.ptr[-1]), model.text_encoder.out_dim), dtype=np.float32)
    for idx, batch in length_sorted_batches(tokens, batch_size, device, "frozen lower text layers", progress):
        hidden = model.text_encoder.lower_states(batch.input_ids, batch.attention_mask, n_top).float().cpu().numpy()
        mask = batch.attention_mask.cpu().numpy().astype(bool)
        states[concat_ranges(tokens.ptr[idx], tokens.lengths[idx])] = hidden[mask]
    return TokenStates(states, tokens.ptr)


# --------------------------------------------------------------- embeddings

@torch.no_grad()
def embed_graphs(model, graphs: GraphStore, device, batch_size: int = 256, amp="none",
                 progress=False) -> np.ndarray:
    """Graph embeddings of every molecule of ``graphs``; a --mol-features
    model's features are attached first when missing (decoded and cached
    next to the store's graphs, molret.chem.mol_features)."""
    from tqdm.auto import tqdm
    from molret.chem.mol_features import ensure_model_features
    ensure_model_features(model.cfg, graphs, progress=progress)
    model.eval()
    out = []
    for i in tqdm(range(0, len(graphs), batch_size), desc="embedding molecules", disable=not progress,
                  unit="batch"):
        batch = graphs.collate(list(range(i, min(i + batch_size, len(graphs))))).to(device)
        with autocast_context(device, amp):
            out.append(model.encode_graph(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.embed_dim), np.float32)


@torch.no_grad()
def embed_texts(model, text_data, device, batch_size: int = 256, amp="none", progress=False) -> np.ndarray:
    model.eval()
    out = np.zeros((len(text_data), model.cfg.embed_dim), dtype=np.float32)
    for idx, batch in length_sorted_batches(text_data, batch_size, device, "embedding texts", progress):
        with autocast_context(device, amp):
            out[idx] = model.encode_text(batch).float().cpu().numpy()
    return out


def embed_test(model, tokens, graphs, device, batch_size: int, amp: str = "none", progress: bool = False):
    """(text_emb, graph_emb) of the test queries and molecules."""
    return (embed_texts(model, tokens, device, batch_size, amp, progress),
            embed_graphs(model, graphs, device, batch_size, amp, progress))


def similarity_matrix(text_emb: np.ndarray, graph_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity (embeddings are L2-normalised): rows queries, columns molecules."""
    return text_emb @ graph_emb.T


def save_embeddings(folder: Path, split: str, text_emb, text_ids, graph_emb, graph_ids) -> None:
    """<split>_text_emb.npy + <split>_text_ids.txt, and the same for graphs."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_np_save(folder / f"{split}_text_emb.npy", np.asarray(text_emb, np.float32))
    atomic_write_text(folder / f"{split}_text_ids.txt", "".join(f"{i}\n" for i in text_ids))
    atomic_np_save(folder / f"{split}_graph_emb.npy", np.asarray(graph_emb, np.float32))
    atomic_write_text(folder / f"{split}_graph_ids.txt", "".join(f"{i}\n" for i in graph_ids))
