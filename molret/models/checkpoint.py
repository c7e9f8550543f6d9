"""Self-contained checkpoints: full config, weights, the substructure
vocabulary, the text model's architecture and the tokenizer's files. Loading
needs nothing but the checkpoint (no hub, no data folder).

A checkpoint may come from someone else, so it holds only tensors and plain
data (dicts, lists, tuples, strings, numbers, bytes, None) and is read with
``torch.load(weights_only=True)``: unpickling it cannot run code. Files
written before format 2 kept the numpy RNG state as a numpy array and are
refused by that loader; :func:`convert_checkpoint` (``python
convert_checkpoint.py OLD.pt NEW.pt``) rewrites one the user trusts."""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from molret.config import RunConfig
from molret.data.vocab import Vocab
from molret.utils.errors import MolretError
from molret.utils.files import atomic_torch_save

FORMAT = "molret-checkpoint"
VERSION = 2   # 2: only tensors and plain data (safe loader); 1: numpy arrays inside (needs conversion)

CONVERT_HINT = "python convert_checkpoint.py"
# Files a tokenizer may carry in a checkpoint: plain names, data formats only.
_TOKENIZER_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_TOKENIZER_SUFFIXES = {".json", ".txt", ".model", ".jinja", ".vocab", ".codes", ".tiktoken"}


# ------------------------------------------------------------ plain data

def to_plain(obj, where: str = "checkpoint"):
    """``obj`` with numpy arrays as tensors, numpy scalars as Python numbers
    and paths as strings: what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"{where}: object arrays cannot be stored in a checkpoint")
        if obj.dtype.kind == "u" and obj.dtype.itemsize >= 4:
            obj = obj.astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {k: to_plain(v, f"{where}/{k}") for k, v in obj.items()}
    if isinstance(obj, tuple) and type(obj) is tuple:
        return tuple(to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, list):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return obj
    raise TypeError(f"{where}: a {type(obj).__name__} cannot be stored in a checkpoint (plain data only)")


def numpy_rng_state() -> dict:
    """``np.random.get_state()`` as plain data."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {"bit_generator": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_numpy_rng_state(state) -> None:
    """Inverse of :func:`numpy_rng_state` (also takes the tuple of format 1,
    converted)."""
    if isinstance(state, dict):
        state = (state["bit_generator"], state["key"], state["pos"], state["has_gauss"], state["cached_gaussian"])
    name, key, pos, has_gauss, cached = state
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((str(name), key.astype(np.uint32), int(pos), int(has_gauss), float(cached)))


def python_rng_state() -> list:
    """``random.getstate()`` as plain data."""
    import random
    version, internal, gauss_next = random.getstate()
    return [version, list(internal), gauss_next]


def set_python_rng_state(state) -> None:
    import random
    version, internal, gauss_next = state
    random.setstate((int(version), tuple(int(x) for x in internal), gauss_next))


# ------------------------------------------------------------ write / read

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
    atomic_torch_save(to_plain(checkpoint), path)


def _unsafe_names(path: Path) -> list[str]:
    """The Python globals a checkpoint's pickle refers to beyond what the
    safe loader allows (read from its opcodes, nothing is executed)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy (non-zip) file or not a checkpoint at all
        return []


def read_checkpoint(path, formats: tuple = (FORMAT,)) -> dict:
    """A checkpoint's content, read with the safe loader only; its ``format`` must be one of ``formats``
    (an ensemble's model file, molret.models.embedder, is read through here too)."""
    path = Path(path)
    if not path.is_file():
        raise MolretError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # e.g. "Detected pickle protocol 4": the error below says it all
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        names = _unsafe_names(path) or re.findall(r"unsupported GLOBAL ([\w.]+)", msg)
        if not names and "GLOBAL" not in msg:
            reason = re.search(r"WeightsUnpickler error:\s*([^\n]+)", msg)
            raise MolretError(f"{path} is not a readable checkpoint ("
                              f"{reason.group(1)[:200] if reason else msg.splitlines()[0][:200]})") from None
        what = f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else ""
        raise MolretError(f"{path} holds Python objects beyond tensors and plain data{what}, which could run code "
                          f"when loaded, so it is refused; if it is a molret checkpoint written before format "
                          f"{VERSION} by someone you trust, convert it once with: {CONVERT_HINT} {path} "
                          f"NEW.pt") from None
    except Exception as e:  # torch raises many types for a non-checkpoint file
        raise MolretError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in formats:
        raise MolretError(f"{path} is not a molret checkpoint (was it written by main.py?)")
    version = ckpt.get("version", 0)
    if ckpt["format"] == FORMAT and (not isinstance(version, int) or version > VERSION):
        raise MolretError(f"{path} was written by a newer molret (format {version})")
    return ckpt


def convert_checkpoint(src, dst) -> dict:
    """Rewrite a checkpoint of an older format (read with the UNSAFE loader:
    only for files the user trusts) into the current one, which the safe
    loader reads. Returns the new checkpoint."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise MolretError(f"checkpoint {src} does not exist")
    if src.resolve() == dst.resolve():
        raise MolretError("give another path for the converted checkpoint (the original is kept)")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)  # the user vouched for this file
    except Exception as e:
        raise MolretError(f"{src} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise MolretError(f"{src} is not a molret checkpoint (was it written by main.py?)")
    if ckpt.get("version", 0) > VERSION:
        raise MolretError(f"{src} was written by a newer molret (format {ckpt['version']})")
    state = ckpt.get("train_state")
    if isinstance(state, dict):
        if isinstance(state.get("numpy_rng"), tuple):
            name, key, pos, has_gauss, cached = state["numpy_rng"]
            state["numpy_rng"] = {"bit_generator": str(name), "key": torch.from_numpy(np.asarray(key, np.int64)),
                                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
        if isinstance(state.get("python_rng"), tuple):
            version, internal, gauss_next = state["python_rng"]
            state["python_rng"] = [version, list(internal), gauss_next]
    ckpt["version"] = VERSION
    try:
        plain = to_plain(ckpt)
    except TypeError as e:
        raise MolretError(f"{src} cannot be converted: {e}") from None
    atomic_torch_save(plain, dst)
    return read_checkpoint(dst)


def _check_tokenizer_files(path, files) -> dict:
    if not isinstance(files, dict) or not files:
        raise MolretError(f"{path}: no tokenizer files in this checkpoint")
    for name, data in files.items():
        if (not isinstance(name, str) or not _TOKENIZER_FILE.fullmatch(name)
                or Path(name).suffix.lower() not in _TOKENIZER_SUFFIXES or not isinstance(data, bytes)):
            raise MolretError(f"{path}: refusing tokenizer file {name!r} (only plain .json/.txt/.model-like data "
                              f"files may come with a checkpoint)")
    return files


def load_model(path, device="cpu"):
    """(model, RunConfig, Vocab, tokenizer) from a checkpoint file."""
    return model_from_checkpoint(read_checkpoint(path), path, device)


def model_from_checkpoint(ckpt: dict, path, device="cpu", hf_model=None):
    """(model, RunConfig, Vocab, tokenizer) of a checkpoint's content (``read_checkpoint``; ``path`` names it
    in errors). ``hf_model``: a text encoder module to use (and load the weights into) instead of a new one,
    so that ensemble members with the same text encoder share one in memory."""
    from molret.models.encoders import build_model
    from molret.models.text_models import encoder_from_config, tokenizer_from_files

    try:
        cfg = RunConfig.from_dict(ckpt["config"])
        hf_model = hf_model if hf_model is not None else encoder_from_config(ckpt["text_model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise MolretError(f"{path}: unusable configuration in this checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    model = build_model(cfg.model, hf_model=hf_model)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise MolretError(f"{path}: weights do not match its configuration ({str(e).splitlines()[0][:300]})") from None
    ids = ckpt["vocab_ids"].numpy().astype(np.uint64)
    emb = ckpt["model_state"].get("graph_encoder.substructure_emb.weight")
    # --conv features: no substructure table (the ids still map graphs for the name fusion and the caches)
    vocab = Vocab(ids, emb.numpy() if emb is not None else np.zeros((len(ids) + 1, 0), np.float32))
    files = _check_tokenizer_files(path, ckpt.get("tokenizer_files"))
    try:
        tokenizer = tokenizer_from_files(files)
    except (OSError, ValueError, TypeError) as e:
        raise MolretError(f"{path}: cannot rebuild its tokenizer ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    model.to(device).eval()
    return model, cfg, vocab, tokenizer
