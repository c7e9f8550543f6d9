"""Contrastive training of the text and graph encoders (main.py's engine).

``Trainer`` holds everything a run needs; subclasses change the batches
(``make_batches``) or the loss (``compute_loss``) and nothing else, which is
how main_negativemining.py reuses it.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import random
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import (make_checkpoint, numpy_rng_state, python_rng_state, read_checkpoint, save_checkpoint,
                         set_numpy_rng_state, set_python_rng_state)
from .config import RunConfig
from .data import (GraphDataset, GraphSource, GraphStore, GraphTextDataset, TextFeatures, Vocab,
                   default_cache_dir, length_bucketed_batches, load_graphs, load_keyed_npz, random_batches,
                   read_pairs_tsv, read_test_inputs, resolve_data_dir, save_keyed_npz, tokenize)
from .distributed import (all_gather_rows, any_rank, broadcast_object, close_distributed, gather_with_grad,
                          init_distributed, share_sizes, wrap_ddp)
from .errors import MolretError
from .gradcache import even_sizes, grad_cache_step, split_pair_batch
from .io_utils import atomic_np_save, atomic_path, atomic_write_text, check_writable_dir
from .losses import LOSSES
from .evaluation import format_pool
from .metrics import retrieval_metrics
from .model import MolRetModel, build_model
from . import text_models

log = logging.getLogger("molret")


# ----------------------------------------------------------------- setup

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def compile_encoders(model: MolRetModel, device: torch.device) -> None:
    """--compile: torch.compile the graph encoder and (unless frozen) the text
    encoder in place (state_dict keys unchanged); CUDA only."""
    if device.type != "cuda":
        log.info("--compile: skipped on CPU (torch.compile is used on CUDA only)")
        return
    model.graph_encoder.compile(dynamic=True)
    if model.cfg.train_text_layers != 0:
        model.text_encoder.compile(dynamic=True)
    log.info("--compile: encoders compiled (the first steps are slower while kernels are built)")


def setup_logging(run_dir: Path | None) -> None:
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if run_dir is not None:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(fh)
    log.propagate = False


# ------------------------------------------------------------------ data

@dataclass
class Split:
    cids: list
    texts: list | None
    graphs: GraphStore | None
    text_data: object | None = None   # what training sees: TokenizedTexts or TextFeatures
    tokens: object | None = None      # TokenizedTexts (what a checkpoint alone can recompute)


@dataclass
class ChallengeData:
    vocab: Vocab
    train: Split | None
    val: Split | None
    test_graphs: Split | None
    test_queries: Split | None
    cache_dir: Path


def load_challenge_data(cfg: RunConfig, need_train: bool = True, need_test: bool = True,
                        progress: bool = True) -> ChallengeData:
    t = cfg.train
    paths = resolve_data_dir(t.data_dir)
    cache_dir = Path(t.cache_dir) if t.cache_dir else default_cache_dir(t.data_dir)
    try:
        check_writable_dir(cache_dir)
    except MolretError:
        log.warning(f"cache folder {cache_dir} is not writable: nothing will be cached")
    vocab = Vocab.from_npy(paths.need("embeddings"))
    source = GraphSource(paths.need("raw"))

    def pairs(name, limit):
        cids, texts = read_pairs_tsv(paths.need(name))
        if limit:
            cids, texts = cids[:limit], texts[:limit]
        return Split(cids, texts, load_graphs(name if not limit else f"{name}-first{limit}", cids, source,
                                              cache_dir, vocab, progress))

    train = pairs("train", t.max_train) if need_train else None
    val = pairs("val", t.max_val) if need_train and paths.val is not None else None
    if t.train_on_val and train is not None and val is not None:
        # the final fit: val pairs join the training pairs (val metrics are then optimistic)
        train = Split(train.cids + val.cids, train.texts + val.texts,
                      load_graphs(f"train{t.max_train or ''}+val{t.max_val or ''}", train.cids + val.cids, source,
                                  cache_dir, vocab, progress))
    test_graphs = test_queries = None
    if need_test and paths.test_cids is not None and paths.test_text is not None:
        cids, queries = read_test_inputs(paths)
        test_graphs = Split(cids, None, load_graphs("test", cids, source, cache_dir, vocab, progress))
        test_queries = Split(list(range(len(queries))), queries, None)
    for split in (train, val, test_graphs):
        if split is not None and split.graphs.num_unknown:
            log.info(f"{split.graphs.num_unknown} of {len(split.graphs.identifiers)} atoms have a substructure "
                     f"missing from the embedding dict (mapped to UNK)")
            break
    return ChallengeData(vocab, train, val, test_graphs, test_queries, cache_dir)


def prepare_texts(data: ChallengeData, cfg: RunConfig, tokenizer, model: MolRetModel, device, progress=True):
    """Tokenise each split once (cached); with --freeze-text also run the
    frozen encoder once per split and keep only its pooled outputs (cached,
    keyed by model, pooling and max length)."""
    m = cfg.model
    model_id = text_models.identity(m.text_model)
    for name, split in (("train", data.train), ("val", data.val), ("test", data.test_queries)):
        if split is None:
            continue
        key = f"{model_id}-len{m.max_length}"
        tokens = tokenize(split.texts, tokenizer, m.max_length, data.cache_dir / f"tokens-{name}-{key}.npz")
        split.tokens = tokens
        # test queries are embedded for the submission from what predictions.py recomputes: the cached
        # frozen features, else the tokens; the lower-layer states only to select epochs by the re-ranked pool
        cheap = name != "test" or cfg.train.select_metric == "pool_lrap_reranked"
        if cfg.train.freeze_text:
            split.text_data = TextFeatures(text_features_cached(
                model, tokens, data.cache_dir / f"textfeat-{name}-{key}-{m.text_pooling}.npz", device,
                cfg.train.eval_batch_size, progress))
        elif m.train_text_layers > 0 and cfg.train.cache_frozen_layers and cheap:
            split.text_data = lower_token_states(model, tokens, m.train_text_layers, device,
                                                 cfg.train.eval_batch_size, progress)
        else:
            split.text_data = tokens


@torch.no_grad()
def text_features_cached(model: MolRetModel, tokens, path: Path, device, batch_size: int, progress=True) -> np.ndarray:
    import hashlib
    key = hashlib.sha1(tokens.ptr.tobytes() + tokens.ids.tobytes()).hexdigest()  # the exact inputs
    cached = load_keyed_npz(path, key)
    if cached is not None:
        return cached["features"]
    features = run_text_encoder(model, tokens, device, batch_size, progress)
    save_keyed_npz(path, key, features=features)
    return features


@torch.no_grad()
def lower_token_states(model: MolRetModel, tokens, n_top: int, device, batch_size: int, progress=True):
    """Token states entering the top ``n_top`` text layers, computed once (in
    memory: float32, so the cached path computes what the full model does)."""
    from .data import TokenStates, _ranges
    model.eval()
    states = np.zeros((int(tokens.ptr[-1]), model.text_encoder.out_dim), dtype=np.float32)
    for idx, batch in length_sorted_batches(tokens, batch_size, device, "frozen lower text layers", progress):
        hidden = model.text_encoder.lower_states(batch.input_ids, batch.attention_mask, n_top).float().cpu().numpy()
        mask = batch.attention_mask.cpu().numpy().astype(bool)
        states[_ranges(tokens.ptr[idx], tokens.lengths[idx])] = hidden[mask]
    return TokenStates(states, tokens.ptr)


@torch.no_grad()
def run_text_encoder(model: MolRetModel, tokens, device, batch_size: int, progress=True) -> np.ndarray:
    model.eval()
    out = np.zeros((len(tokens), model.text_encoder.out_dim), dtype=np.float32)
    for idx, batch in length_sorted_batches(tokens, batch_size, device, "text encoder (frozen)", progress):
        out[idx] = model.text_encoder(batch.input_ids, batch.attention_mask).float().cpu().numpy()
    return out


def length_sorted_batches(text_data, batch_size: int, device, desc: str, progress: bool):
    """(indices, TextBatch on device) over all texts, similar lengths together
    (less padding); results are written back at ``indices``."""
    from tqdm.auto import tqdm
    order = np.argsort(text_data.lengths, kind="stable")
    for i in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
        idx = order[i:i + batch_size]
        yield idx, text_data.collate(idx).to(device)


@torch.no_grad()
def embed_graphs(model: MolRetModel, graphs: GraphStore, device, batch_size: int = 256, amp="none",
                 progress=False) -> np.ndarray:
    from tqdm.auto import tqdm
    model.eval()
    ds = GraphDataset(graphs)
    out = []
    for i in tqdm(range(0, len(ds), batch_size), desc="embedding molecules", disable=not progress, unit="batch"):
        batch = ds.collate(range(i, min(i + batch_size, len(ds)))).to(device)
        with autocast_context(device, amp):
            out.append(model.encode_graph(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.embed_dim), np.float32)


@torch.no_grad()
def embed_texts(model: MolRetModel, text_data, device, batch_size: int = 256, amp="none", progress=False) -> np.ndarray:
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


# --------------------------------------------------------------- trainer

class StopTraining(Exception):
    pass


class Trainer:
    """One training run: model, optimiser, schedule, loop, evaluation,
    checkpoints and the run folder."""

    def __init__(self, cfg: RunConfig, run_dir: Path, progress: bool = True, init_checkpoint: str | None = None):
        self.cfg, self.run_dir, self.progress = cfg, run_dir, progress
        t = cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.device = pick_device(t.device)
        self.dist, self.device = init_distributed(self.device)  # several processes under torchrun
        check_amp(self.device, t.amp)
        if not self.dist.is_main:  # rank 0 logs, shows progress and writes
            self.progress = progress = False
            log.setLevel(logging.WARNING)
            for h in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
                log.removeHandler(h)
                h.close()
        if t.train_on_val:
            log.warning("--train-on-val: the val pairs are trained on; val and pool metrics are optimistic and "
                        "the last epoch is kept (choose --epochs on a run without it)")
        if t.select_metric == "pool_lrap_reranked" and t.rerank == "none":
            raise MolretError("--select-metric pool_lrap_reranked needs --rerank sinkhorn or dual-softmax")
        if t.grad_cache_chunk < 0 or t.grad_cache_chunk == 1:
            raise MolretError(f"--grad-cache-chunk must be 0 (off) or at least 2, got {t.grad_cache_chunk}")
        seed_everything(t.seed)
        # the test molecules are always loaded: they are the distractors of the pool metrics
        self.data = load_challenge_data(cfg, need_train=True, need_test=True, progress=progress)
        cfg.model.vocab_size, cfg.model.substructure_dim = len(self.data.vocab), self.data.vocab.dim
        if t.freeze_text:
            cfg.model.train_text_layers = 0
        self.tokenizer = text_models.load_tokenizer(cfg.model.text_model)
        self.tokenizer_files = text_models.tokenizer_to_files(self.tokenizer)
        self.model = build_model(cfg.model, self.data.vocab.vectors).to(self.device)
        if init_checkpoint:
            self._init_from(init_checkpoint)
        if t.compile:
            compile_encoders(self.model, self.device)
        if t.grad_cache_chunk and cfg.model.norm == "batch":
            log.warning("--grad-cache-chunk with --norm batch: BatchNorm statistics are per chunk, so the "
                        "gradients are not those of the full batch")
        self.ddp = wrap_ddp(self.model, self.device) if self.dist.enabled else None
        if self.dist.rank > 0:  # other dropout masks than rank 0's (the weights come from rank 0)
            torch.manual_seed(t.seed + 1_000_003 * self.dist.rank)
        prepare_texts(self.data, cfg, self.tokenizer, self.model, self.device, progress)
        if self.data.train is None or self.data.val is None:
            raise MolretError("training needs train.tsv and val.tsv in the data folder")
        self.train_set = GraphTextDataset(self.data.train.graphs, self.data.train.text_data, self.data.train.cids)
        self.steps_per_epoch = len(self.make_batches(0))
        self.planned_epochs = t.epochs
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda") if (t.amp == "fp16" and self.device.type == "cuda") else None
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.best_score, self.best_epoch = -1.0, -1
        self.train_seconds = 0.0
        self.nonfinite_batches = 0
        self._stop_signal = None

    # -- pieces a subclass may change
    def make_batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch``; a pure function of (seed, epoch) so that a
        resumed run replays them exactly."""
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        t = self.cfg.train
        if t.bucket_by_length and not t.freeze_text:
            return length_bucketed_batches(self.train_set.texts.lengths, t.batch_size, rng)
        return random_batches(len(self.train_set), t.batch_size, rng)

    def compute_loss(self, text_emb, graph_emb, batch) -> torch.Tensor:
        return LOSSES[self.cfg.train.loss](text_emb, graph_emb, self.model.temperature_scale())

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # -- optimiser and schedule
    def _make_optimizer(self):
        t = self.cfg.train
        text_params = [p for p in self.model.text_encoder.parameters() if p.requires_grad]
        text_ids = {id(p) for p in self.model.text_encoder.parameters()}
        other = [p for p in self.model.parameters() if p.requires_grad and id(p) not in text_ids]
        groups = [{"params": other, "lr": t.lr}]
        if text_params:
            groups.append({"params": text_params, "lr": t.text_lr})
        return torch.optim.AdamW(groups, weight_decay=t.weight_decay)

    @property
    def total_steps(self) -> int:
        return max(1, self.planned_epochs * self.steps_per_epoch)

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 0 over the planned steps."""
        warmup = max(1, int(self.cfg.train.warmup_ratio * self.total_steps))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    # -- checkpoints
    def _init_from(self, path: str) -> None:
        ckpt = read_checkpoint(path)
        try:
            self.model.load_state_dict(ckpt["model_state"])
        except RuntimeError as e:
            raise MolretError(f"{path}: its model does not match this configuration ({str(e).splitlines()[0][:200]})") from None
        log.info(f"initialised the model from {path}")

    def checkpoint(self, with_state: bool, metrics: dict | None = None) -> dict:
        extra = {"epoch": self.epoch, "metrics": metrics or {}}
        if with_state:
            extra["train_state"] = {
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                "planned_epochs": self.planned_epochs, "history": self.history, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "train_seconds": self.train_seconds,
                "torch_rng": torch.get_rng_state(), "numpy_rng": numpy_rng_state(),   # plain data: see checkpoint.py
                "python_rng": python_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "extra": self.extra_state()}
        return make_checkpoint(self.model, self.cfg, self.data.vocab, self.tokenizer_files, **extra)

    def save_last(self) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.run_dir / "last.pt", self.checkpoint(with_state=True))

    def resume(self, path: Path) -> None:
        ckpt = read_checkpoint(path)
        state = ckpt.get("train_state")
        if state is None:
            raise MolretError(f"{path} has no training state to resume from")
        try:
            self.model.load_state_dict(ckpt["model_state"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as e:
            raise MolretError(f"{path}: does not match this run's configuration ({str(e).splitlines()[0][:200]})") from None
        self.planned_epochs = max(state["planned_epochs"], self.cfg.train.epochs) if self.cfg.train.time_budget == 0 \
            else state["planned_epochs"]
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.history, self.best_epoch = state["history"], state["best_epoch"]
        self.best_score = state.get("best_score", state.get("best_lrap", -1.0))  # "best_lrap": format 1
        self.train_seconds = state["train_seconds"]
        torch.set_rng_state(state["torch_rng"])
        set_numpy_rng_state(state["numpy_rng"])
        set_python_rng_state(state["python_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.load_extra_state(state.get("extra", {}))
        log.info(f"resumed from {path}: epoch {self.epoch + 1}, step {self.step_in_epoch}")

    # -- evaluation
    def evaluate(self, split) -> tuple[dict, np.ndarray, np.ndarray]:
        """(metrics, text_emb, graph_emb) of a val split: the split's own
        metrics (lrap, mrr, hits@1, hits@10, mean_rank: the val-sized pool) and,
        when test molecules are present, the pool metrics (molret.evaluation);
        the re-ranked pool metric (a Sinkhorn over val + test) only when it
        selects the best epoch (the final report has it anyway)."""
        t = self.cfg.train
        rerank = t.rerank if t.select_metric == "pool_lrap_reranked" else "none"
        text_emb = embed_texts(self.model, split.text_data, self.device, t.eval_batch_size, t.amp)
        graph_emb = embed_graphs(self.model, split.graphs, self.device, t.eval_batch_size, t.amp)
        metrics = retrieval_metrics(similarity_matrix(text_emb, graph_emb))
        if self.data.test_graphs is not None:
            from .evaluation import pool_metrics
            test_graph = embed_graphs(self.model, self.data.test_graphs.graphs, self.device, t.eval_batch_size, t.amp)
            test_text = None
            if rerank != "none":
                test_text = embed_texts(self.model, self.data.test_queries.text_data, self.device,
                                        t.eval_batch_size, t.amp)
            metrics.update(pool_metrics(text_emb, graph_emb, test_graph, test_text, rerank, t.rerank_temperature))
        return metrics, text_emb, graph_emb

    def selection_score(self, metrics: dict) -> float:
        """The score that picks the best epoch (--select-metric; the val-sized
        LRAP when there are no test molecules for the pool; with --train-on-val
        the epoch number: the last epoch is kept)."""
        if self.cfg.train.train_on_val:
            return float(self.epoch + 1)
        return metrics.get(self.cfg.train.select_metric, metrics["lrap"])

    # -- the loop
    def _handle_signal(self, signum, frame):
        if self._stop_signal is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum
        log.warning(f"\n{signal.Signals(signum).name} received: saving a checkpoint after this step "
                    f"(press Ctrl-C again to abort without saving)")

    def train_step(self, batch) -> float | None:
        t = self.cfg.train
        self.model.train()
        batch = batch.to(self.device)
        if self.dist.enabled and len(batch.index) < self.dist.world_size:
            log.warning(f"a batch of {len(batch.index)} pairs cannot be shared by {self.dist.world_size} "
                        f"processes: skipped")
            self.scheduler.step()
            return None
        self.optimizer.zero_grad(set_to_none=True)
        if t.grad_cache_chunk > 0:
            loss = self._grad_cache_backward(batch)  # forward and backward, in chunks
            if not torch.isfinite(loss):
                return self._skip_nonfinite(batch, "loss")
        else:
            with autocast_context(self.device, t.amp):
                text_emb, graph_emb = self._embed_batch(batch)
                loss = self.compute_loss(text_emb, graph_emb, batch)
            if not torch.isfinite(loss):
                return self._skip_nonfinite(batch, "loss")
            if self.scaler:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
        if self.scaler:
            self.scaler.step(self.optimizer)  # skips the step itself on inf/nan gradients
            self.scaler.update()
        elif not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return self._skip_nonfinite(batch, "gradient")
        else:
            self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def _skip_nonfinite(self, batch, what: str):
        self.nonfinite_batches += 1
        cids = [self.train_set.cids[i] for i in batch.index.tolist()]
        log.warning(f"non-finite {what} at epoch {self.epoch + 1} step {self.step_in_epoch + 1}: step skipped; "
                    f"batch CIDs: {' '.join(cids[:20])}{' ...' if len(cids) > 20 else ''}")
        if self.nonfinite_batches >= 10:
            raise MolretError("10 batches with a non-finite loss: stopping (try a lower --lr or --amp none); "
                              "no checkpoint of this state was saved")
        import warnings
        with warnings.catch_warnings():  # the schedule advances over the skipped step, on purpose
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        return None

    # -- multi-GPU (torchrun) and cached-gradient steps
    def _local_share(self, batch):
        """This process's contiguous share of a batch (all of it on one process)."""
        if not self.dist.enabled:
            return batch
        return split_pair_batch(batch, share_sizes(len(batch.index), self.dist.world_size))[self.dist.rank]

    def _forward(self, batch):
        return self.ddp(batch) if self.ddp is not None else self.model(batch)

    def _embed_batch(self, batch):
        """(text_emb, graph_emb) of the whole batch. Under torchrun each process
        embeds its share and the shares are gathered, with autograd through the
        local rows: every process computes the loss of the global batch."""
        if self.ddp is None:
            return self.model(batch)
        text_emb, graph_emb, _ = self.ddp(self._local_share(batch))
        sizes, world = share_sizes(len(batch.index), self.dist.world_size), float(self.dist.world_size)
        # x world: DDP averages the gradients of the processes, each of which holds only its rows' part
        return gather_with_grad(text_emb, sizes, world), gather_with_grad(graph_emb, sizes, world)

    def _grad_cache_backward(self, batch) -> torch.Tensor:
        """--grad-cache-chunk: the loss of the whole (global) batch, backpropagated
        chunk by chunk (molret.gradcache); returns the loss."""
        t = self.cfg.train
        world, rank = self.dist.world_size, self.dist.rank
        shares = share_sizes(len(batch.index), world)
        # as many chunks on every process (DDP forward passes are collective)
        chunks = split_pair_batch(self._local_share(batch),
                                  even_sizes(shares[rank], -(-max(shares) // t.grad_cache_chunk)))
        gather = None
        if self.ddp is not None:
            start = sum(shares[:rank])
            gather = lambda x: (all_gather_rows(x, shares), start, start + shares[rank])  # noqa: E731
        return grad_cache_step(
            self._forward, lambda text_emb, graph_emb: self.compute_loss(text_emb, graph_emb, batch), chunks,
            backward=(lambda loss: self.scaler.scale(loss).backward()) if self.scaler else None,
            autocast=lambda: autocast_context(self.device, t.amp), device=self.device, gather=gather,
            embed_grad_scale=float(world), no_sync=self.ddp.no_sync if self.ddp is not None else None,
            module=self.model)

    def _should_stop(self) -> bool:
        """A signal was received (by any process, under torchrun)."""
        return any_rank(self._stop_signal is not None, self.dist, self.device)

    def _sync_schedule(self) -> None:
        """Rank 0's decisions (fitted epoch count, time spent, best epoch) on every process."""
        if self.dist.enabled:
            self.planned_epochs, self.train_seconds, self.best_score, self.best_epoch = broadcast_object(
                (self.planned_epochs, self.train_seconds, self.best_score, self.best_epoch), self.dist)

    def fit(self) -> dict:
        from tqdm.auto import tqdm
        t = self.cfg.train
        old_handlers = {s: signal.signal(s, self._handle_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.epoch < self.planned_epochs:
                if t.time_budget and self.train_seconds >= t.time_budget * 60:
                    log.info(f"time budget of {t.time_budget} min reached")
                    break
                self.on_epoch_start(self.epoch)
                # under torchrun every process takes its share of rank 0's batches (mined ones may differ)
                batches = broadcast_object(self.make_batches(self.epoch), self.dist)
                start = time.perf_counter()
                losses, pairs = [], 0
                bar = tqdm(batches[self.step_in_epoch:], desc=f"epoch {self.epoch + 1}/{self.planned_epochs}",
                           disable=not self.progress, unit="batch", leave=False)
                for batch_idx in bar:
                    loss = self.train_step(self.train_set.collate(batch_idx))
                    self.step_in_epoch += 1
                    self.global_step += 1
                    if loss is not None:
                        losses.append(loss)
                        pairs += len(batch_idx)
                    rate = pairs / max(1e-9, time.perf_counter() - start)
                    bar.set_postfix(loss=f"{loss if loss is not None else float('nan'):.3f}", pairs_s=f"{rate:.0f}")
                    if self._should_stop():
                        self.train_seconds += time.perf_counter() - start
                        self.save_last()
                        raise StopTraining
                epoch_seconds = time.perf_counter() - start
                self.train_seconds += epoch_seconds
                self.end_epoch(np.mean(losses) if losses else float("nan"), epoch_seconds, pairs)
        except StopTraining:
            log.warning(f"interrupted: checkpoint saved to {self.run_dir / 'last.pt'}; continue with "
                        f"python main.py --resume {self.run_dir}")
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return self.finish()

    def end_epoch(self, train_loss: float, epoch_seconds: float, pairs: int) -> None:
        t = self.cfg.train
        if not self.dist.is_main:  # rank 0 evaluates and writes; the others follow its schedule
            self.epoch += 1
            self.step_in_epoch = 0
            self._sync_schedule()
            return
        eval_start = time.perf_counter()
        metrics, _, _ = self.evaluate(self.data.val)
        row = {"epoch": self.epoch + 1, "train_loss": float(train_loss), "epoch_seconds": round(epoch_seconds, 3),
               "pairs_per_s": round(pairs / max(epoch_seconds, 1e-9), 2),
               "eval_seconds": round(time.perf_counter() - eval_start, 3),
               "temperature": float(1.0 / self.model.temperature_scale().detach()),
               **{f"val_{k}": v for k, v in metrics.items() if not k.startswith("pool_")},
               **{k: v for k, v in metrics.items() if k.startswith("pool_")}}
        self.history.append(row)
        pool = f"  |  {format_pool(metrics)}" if "pool_lrap" in metrics else ""
        log.info(f"epoch {row['epoch']}: loss {train_loss:.4f}  val({len(self.data.val.cids)}) LRAP {metrics['lrap']:.4f}  "
                 f"MRR {metrics['mrr']:.4f}  H@1 {metrics['hits@1']:.3f}  H@10 {metrics['hits@10']:.3f}{pool}  "
                 f"({epoch_seconds:.1f}s, {row['pairs_per_s']:.0f} pairs/s)")
        self.epoch += 1
        self.step_in_epoch = 0
        if t.time_budget and self.epoch < self.planned_epochs:
            # Fit the schedule to the budget after every epoch, from the cost of the epochs so far (the
            # first one, slower with its warm-up, only until there are others): the cosine decay follows.
            costs = [h["epoch_seconds"] + h["eval_seconds"] for h in self.history]
            per_epoch = float(np.mean(costs[1:] if len(costs) > 1 else costs))
            left = t.time_budget * 60 - self.train_seconds - sum(h["eval_seconds"] for h in self.history)
            fit = min(t.epochs, self.epoch + max(0, int(left // max(per_epoch, 1e-6))))
            if fit != self.planned_epochs:
                self.planned_epochs = max(fit, self.epoch)
                log.info(f"time budget {t.time_budget} min: planning {self.planned_epochs} epochs")
        score = self.selection_score(metrics)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, self.epoch
            save_checkpoint(self.run_dir / "best.pt", self.checkpoint(with_state=False, metrics=metrics))
        self.save_last()
        self.write_history()
        self._sync_schedule()

    def write_history(self) -> None:
        atomic_write_text(self.run_dir / "metrics.json", json.dumps(self.history, indent=2) + "\n")
        if self.history:
            from io import StringIO
            buf = StringIO()
            fields = list(dict.fromkeys(k for row in self.history for k in row))  # rows of older runs lack some
            w = csv.DictWriter(buf, fieldnames=fields)
            w.writeheader()
            w.writerows(self.history)
            atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())
            plot_curves(self.history, self.run_dir / "curves.png")

    def finish(self) -> dict:
        """Reload the best checkpoint, report val metrics, write the submission."""
        t = self.cfg.train
        if not self.dist.is_main:  # rank 0 evaluates and writes the submission
            close_distributed(self.dist)
            return {}
        best_path = self.run_dir / "best.pt"
        if best_path.exists():
            self.model.load_state_dict(read_checkpoint(best_path)["model_state"])
        metrics, val_text, val_graph = self.evaluate(self.data.val)
        metrics = {k: v for k, v in metrics.items() if not k.startswith("pool_")}  # the final report has them
        result = {"best_epoch": self.best_epoch, "select_metric": t.select_metric, "val": metrics,
                  "train_seconds": round(self.train_seconds, 2), "epochs": self.epoch}
        from .rerank import rerank
        if t.rerank != "none":
            result["val_reranked"] = retrieval_metrics(
                rerank(similarity_matrix(val_text, val_graph), t.rerank, t.rerank_temperature))
            result["rerank"] = {"method": t.rerank, "temperature": t.rerank_temperature}
        if t.save_embeddings:
            save_embeddings(self.run_dir / "embeddings", "val", val_text, self.data.val.cids, val_graph,
                            self.data.val.cids)
        report_lines = []
        if self.data.test_graphs is not None:
            # The same computation as predictions.py (from tokens, not cached
            # features), so that a checkpoint reproduces the submission exactly.
            queries = self.data.test_queries
            text_emb, graph_emb = embed_test(self.model, queries.text_data if t.freeze_text else queries.tokens,
                                             self.data.test_graphs.graphs,
                                             self.device, t.eval_batch_size, t.amp)
            if t.save_embeddings:
                save_embeddings(self.run_dir / "embeddings", "test", text_emb, self.data.test_queries.cids,
                                graph_emb, self.data.test_graphs.cids)
            from .evaluation import final_report, format_report, pool_name_features, pool_similarity, test_matrix
            names = None
            if t.names == "opsin":
                names, result["names_stats"] = pool_name_features(
                    self.data.val.texts, self.data.test_queries.texts, self.data.val.graphs, self.data.test_graphs.graphs)
            report, weights = final_report(pool_similarity(val_text, val_graph, text_emb, graph_emb),
                                           len(val_text), t.rerank, t.rerank_temperature, names)
            result.update(report)
            report_lines = format_report(report)
            if t.write_submission:
                from .submission import write_submission
                similarity = similarity_matrix(text_emb, graph_emb)
                if t.rerank != "none" or weights:  # else the float32 matrix as it is
                    similarity = test_matrix(similarity, t.rerank, t.rerank_temperature, names, weights,
                                             len(val_text))
                write_submission(similarity, self.run_dir / "submission.csv")
                result["submission"] = str(self.run_dir / "submission.csv")
        atomic_write_text(self.run_dir / "result.json", json.dumps(result, indent=2) + "\n")
        log.info(f"best epoch {self.best_epoch} (by {t.select_metric if report_lines else 'lrap'}): "
                 f"val({len(self.data.val.cids)}) LRAP {metrics['lrap']:.4f}  MRR {metrics['mrr']:.4f}  "
                 f"Hits@1 {metrics['hits@1']:.3f}  Hits@10 {metrics['hits@10']:.3f}  (training {self.train_seconds:.0f}s)")
        if report_lines:
            log.info(f"pool: val queries among {len(self.data.val.cids) + len(self.data.test_graphs.cids)} "
                     f"val + test molecules")
            for line in report_lines:
                log.info("  " + line)
        if "val_reranked" in result:
            r = result["val_reranked"]
            log.info(f"with --rerank {t.rerank} (T={t.rerank_temperature:g}): val LRAP {r['lrap']:.4f}  "
                     f"MRR {r['mrr']:.4f}  Hits@1 {r['hits@1']:.3f}  Hits@10 {r['hits@10']:.3f}")
        if "submission" in result:
            log.info(f"submission written to {result['submission']}")
        close_distributed(self.dist)
        return result


def save_embeddings(folder: Path, split: str, text_emb, text_ids, graph_emb, graph_ids) -> None:
    """<split>_text_emb.npy + <split>_text_ids.txt, and the same for graphs."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_np_save(folder / f"{split}_text_emb.npy", np.asarray(text_emb, np.float32))
    atomic_write_text(folder / f"{split}_text_ids.txt", "".join(f"{i}\n" for i in text_ids))
    atomic_np_save(folder / f"{split}_graph_emb.npy", np.asarray(graph_emb, np.float32))
    atomic_write_text(folder / f"{split}_graph_ids.txt", "".join(f"{i}\n" for i in graph_ids))


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_lrap"] for h in history], "s-", color="tab:red", label="val LRAP")
    ax2.set_ylabel("val LRAP", color="tab:red")
    ax2.set_ylim(0, 1)
    fig.suptitle("training curves")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
