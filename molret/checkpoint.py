"""Self-contained checkpoints: full config, weights, the substructure
vocabulary, the text model's architecture and the tokenizer's files. Loading
needs nothing but the checkpoint (no hub, no data folder)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import RunConfig
from .data import Vocab
from .errors import MolretError
from .io_utils import atomic_torch_save

FORMAT = "molret-checkpoint"
VERSION = 1


def make_checkpoint(model, cfg: RunConfig, vocab: Vocab, tokenizer_files: dict, **extra) -> dict:
    hf_config = model.text_encoder.hf_model.config.to_dict()
    return {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "vocab_ids": torch.from_numpy(vocab.ids.astype(np.int64)),
            "text_model_config": hf_config, "tokenizer_files": tokenizer_files, **extra}


def save_checkpoint(path, checkpoint: dict) -> None:
    bad = [k for k, v in checkpoint["model_state"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise MolretError(f"refusing to save {path}: non-finite weights in {bad[0]} (and {len(bad) - 1} more)")
    atomic_torch_save(checkpoint, path)


def read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MolretError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a non-checkpoint file
        raise MolretError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise MolretError(f"{path} is not a molret checkpoint (was it written by main.py?)")
    if ckpt.get("version", 0) > VERSION:
        raise MolretError(f"{path} was written by a newer molret (format {ckpt['version']})")
    return ckpt


def load_model(path, device="cpu"):
    """(model, RunConfig, Vocab, tokenizer) from a checkpoint file."""
    from .model import build_model
    from .text_models import encoder_from_config, tokenizer_from_files

    ckpt = read_checkpoint(path)
    cfg = RunConfig.from_dict(ckpt["config"])
    hf_model = encoder_from_config(ckpt["text_model_config"])
    model = build_model(cfg.model, hf_model=hf_model)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise MolretError(f"{path}: weights do not match its configuration ({str(e).splitlines()[0][:300]})") from None
    emb = ckpt["model_state"]["graph_encoder.substructure_emb.weight"].numpy()
    vocab = Vocab(ckpt["vocab_ids"].numpy().astype(np.uint64), emb)
    tokenizer = tokenizer_from_files(ckpt["tokenizer_files"])
    model.to(device).eval()
    return model, cfg, vocab, tokenizer
