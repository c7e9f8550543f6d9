"""The training loop of contrastive text/graph training (main.py's engine): ``Trainer``.

``Trainer.__init__`` only builds objects (data, model, optimiser); the batch
plan and the learning-rate schedule are set up by ``start`` when training
begins (``fit``). A subclass changes the run through these hooks, and
nothing else (molret.training.hard_negatives does, for main_negativemining.py):

* ``make_batches(epoch)``: the batches of an epoch (default ``plain_batches``);
* ``total_steps``: the steps the schedule spans, when the batches change their count;
* ``compute_loss(text_emb, graph_emb, batch)``: the loss of a batch;
* ``on_epoch_start(epoch)``: before an epoch's batches are made;
* ``on_step_taken(text_emb, graph_emb, batch)``: after an optimiser step (never after a skipped batch);
* ``extra_state()`` / ``load_extra_state(state)``: what a checkpoint saves for resuming.

Evaluation and the run folder's files are ``molret.training.report``, the
resumable state ``molret.training.state``, multi-process and cached-gradient
forward passes ``molret.training.steps``.
"""
from __future__ import annotations

import logging
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from molret.models import text_models
from molret.models.split_inputs import load_challenge_data, prepare_texts
from molret.models.checkpoint import make_checkpoint, read_checkpoint, save_checkpoint
from molret.config import RunConfig, TrainConfig
from molret.data.challenge import GraphTextDataset, length_bucketed_batches, random_batches
from molret.training.distributed import any_rank, broadcast_object, close_distributed, init_distributed, wrap_ddp
from molret.utils.errors import MolretError
from molret.models.encoding import autocast_context, check_amp, compile_encoders, pick_device
from molret.training.losses import LOSSES
from molret.models.encoders import build_model
from molret.chem.mol_features import prepare_model_config
from molret.training.report import (epoch_row, epochs_within_budget, evaluate_split, final_result, selection_score,
                                    write_history)
from molret.training.state import load_weights, resume_from_checkpoint, training_state
from molret.training.steps import (clip_and_step, embed_global_batch, grad_cache_backward, make_optimizer,
                                   warmup_cosine)

log = logging.getLogger("molret")


# ----------------------------------------------------------------- setup

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def setup_process(t: TrainConfig):
    """(device, process group) of this process: threads, device, torchrun; only rank 0 logs to the file."""
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    dist, device = init_distributed(pick_device(t.device))  # several processes under torchrun
    check_amp(device, t.amp)
    if not dist.is_main:  # rank 0 logs, shows progress and writes
        log.setLevel(logging.WARNING)
        for h in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
            log.removeHandler(h)
            h.close()
    return device, dist


def check_training_settings(cfg: RunConfig) -> None:
    """Settings that are refused together (one error line) or worth a warning."""
    t = cfg.train
    if t.train_on_val:
        log.warning("--train-on-val: the val pairs are trained on; val and pool metrics are optimistic and "
                    "the last epoch is kept (choose --epochs on a run without it)")
    if t.select_metric == "pool_lrap_reranked" and t.rerank == "none":
        raise MolretError("--select-metric pool_lrap_reranked needs --rerank sinkhorn or dual-softmax")
    if t.grad_cache_chunk < 0 or t.grad_cache_chunk == 1:
        raise MolretError(f"--grad-cache-chunk must be 0 (off) or at least 2, got {t.grad_cache_chunk}")
    if t.grad_cache_chunk and cfg.model.norm == "batch":
        log.warning("--grad-cache-chunk with --norm batch: BatchNorm statistics are per chunk, so the "
                    "gradients are not those of the full batch")


class StopTraining(Exception):
    pass


# --------------------------------------------------------------- trainer

def _prepare_run(cfg: RunConfig) -> None:
    """Checks, seeds, and the molecule-feature families and width written into the config."""
    check_training_settings(cfg)
    seed_everything(cfg.train.seed)
    prepare_model_config(cfg.model)  # --mol-features / --conv features


def _build_run_model(cfg: RunConfig, data, device):
    model = build_model(cfg.model, data.vocab.vectors).to(device)
    if model.graph_encoder.features is not None:  # standardised by the training molecules' statistics
        model.graph_encoder.features.set_standardisation(data.train.graphs.features)
    return model


class Trainer:
    """One training run: model, optimiser, schedule, loop, evaluation,
    checkpoints and the run folder (hooks: see the module docstring)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, progress: bool = True, init_checkpoint: str | None = None):
        self.cfg, self.run_dir = cfg, run_dir
        t = cfg.train
        self.device, self.dist = setup_process(t)
        self.progress = progress = progress and self.dist.is_main
        _prepare_run(cfg)
        # the test molecules are always loaded: they are the distractors of the pool metrics
        self.data = load_challenge_data(cfg, need_train=True, need_test=True, progress=progress)
        cfg.model.vocab_size, cfg.model.substructure_dim = len(self.data.vocab), self.data.vocab.dim
        if t.freeze_text:
            cfg.model.train_text_layers = 0
        self.tokenizer = text_models.load_tokenizer(cfg.model.text_model)
        self.tokenizer_files = text_models.tokenizer_to_files(self.tokenizer)
        self.model = _build_run_model(cfg, self.data, self.device)
        if init_checkpoint:
            load_weights(self.model, init_checkpoint)
        if t.compile:
            compile_encoders(self.model, self.device)
        self.ddp = wrap_ddp(self.model, self.device) if self.dist.enabled else None
        if self.dist.rank > 0:  # other dropout masks than rank 0's (the weights come from rank 0)
            torch.manual_seed(t.seed + 1_000_003 * self.dist.rank)
        prepare_texts(self.data, cfg, self.tokenizer, self.model, self.device, progress)
        if self.data.train is None or self.data.val is None:
            raise MolretError("training needs train.tsv and val.tsv in the data folder")
        self.train_set = GraphTextDataset(self.data.train.graphs, self.data.train.text_data, self.data.train.cids)
        self.optimizer = make_optimizer(self.model, t)
        self.scaler = torch.amp.GradScaler("cuda") if (t.amp == "fp16" and self.device.type == "cuda") else None
        self.scheduler = None          # set up by start()
        self.steps_per_epoch = 0       # set up by start()
        self.planned_epochs = t.epochs
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.best_score, self.best_epoch = -1.0, -1
        self.train_seconds, self.nonfinite_batches = 0.0, 0
        self._stop_signal = None

    # -- hooks a subclass may override
    def plain_batches(self, epoch: int) -> list[list[int]]:
        """main.py's batches of ``epoch`` (shuffled, length-bucketed unless
        frozen); a pure function of (seed, epoch) so that a resumed run replays them."""
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        t = self.cfg.train
        if t.bucket_by_length and not t.freeze_text:
            return length_bucketed_batches(self.train_set.texts.lengths, t.batch_size, rng)
        return random_batches(len(self.train_set), t.batch_size, rng)

    def make_batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch`` (a pure function of the run's state at the epoch's start)."""
        return self.plain_batches(epoch)

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the planned epochs: what the schedule spans."""
        return max(1, self.planned_epochs * self.steps_per_epoch)

    def compute_loss(self, text_emb, graph_emb, batch) -> torch.Tensor:
        return LOSSES[self.cfg.train.loss](text_emb, graph_emb, self.model.temperature_scale())

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def on_step_taken(self, text_emb, graph_emb, batch) -> None:
        pass

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        if state:   # resuming a hard-negative run without its state would silently train another way
            raise MolretError("this checkpoint holds a hard-negative run's state (mined batches, memory bank): "
                              "resume it with python main_negativemining.py --resume RUN_DIR")

    # -- optimiser and schedule
    def start(self, resume_from: Path | None = None) -> None:
        """Where training starts: the batch plan (main.py's batch count per
        epoch), the schedule over it, and with ``resume_from`` the saved state."""
        self.steps_per_epoch = len(self.plain_batches(0))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, self.total_steps, self.cfg.train.warmup_ratio))
        if resume_from is not None:
            self.resume(resume_from)

    # -- checkpoints
    def checkpoint(self, with_state: bool, metrics: dict | None = None) -> dict:
        extra = {"epoch": self.epoch, "metrics": metrics or {}}
        if with_state:
            extra["train_state"] = training_state(self)
        return make_checkpoint(self.model, self.cfg, self.data.vocab, self.tokenizer_files, **extra)

    def save_last(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir / "last.pt", self.checkpoint(with_state=True))

    def resume(self, path: Path) -> None:
        """The weights and training state of ``path`` (a last.pt); called by ``start``."""
        resume_from_checkpoint(self, path)

    # -- one step
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
        cached = t.grad_cache_chunk > 0
        if cached:  # forward and backward, in chunks
            loss, text_emb, graph_emb = grad_cache_backward(
                self.model, self.ddp, self.dist, batch, lambda te, ge: self.compute_loss(te, ge, batch),
                chunk=t.grad_cache_chunk, amp=t.amp, device=self.device, scaler=self.scaler)
        else:
            with autocast_context(self.device, t.amp):
                text_emb, graph_emb = embed_global_batch(self.model, self.ddp, self.dist, batch)
                loss = self.compute_loss(text_emb, graph_emb, batch)
        if not torch.isfinite(loss):
            return self._skip_nonfinite(batch, "loss")
        if not cached:
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        if not clip_and_step(self.optimizer, self.scaler, t.grad_clip):
            return self._skip_nonfinite(batch, "gradient")
        self.scheduler.step()
        self.on_step_taken(text_emb, graph_emb, batch)
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

    # -- the loop
    def _handle_signal(self, signum, frame):
        if self._stop_signal is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum
        log.warning(f"\n{signal.Signals(signum).name} received: saving a checkpoint after this step "
                    f"(press Ctrl-C again to abort without saving)")

    def _should_stop(self) -> bool:
        """A signal was received (by any process, under torchrun)."""
        return any_rank(self._stop_signal is not None, self.dist, self.device)

    def _sync_schedule(self) -> None:
        """Rank 0's decisions (fitted epoch count, time spent, best epoch) on every process."""
        if self.dist.enabled:
            self.planned_epochs, self.train_seconds, self.best_score, self.best_epoch = broadcast_object(
                (self.planned_epochs, self.train_seconds, self.best_score, self.best_epoch), self.dist)

    def fit(self, resume_from: Path | None = None) -> dict:
        """Train (``start`` first, resuming from ``resume_from`` when given) and return the final result."""
        t = self.cfg.train
        self.start(resume_from)
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
                losses, pairs = self._run_epoch(batches, start)
                epoch_seconds = time.perf_counter() - start
                self.train_seconds += epoch_seconds
                self.end_epoch(np.mean(losses) if losses else float("nan"), epoch_seconds, pairs)
        except StopTraining:
            log.warning(f"interrupted: checkpoint saved to {self.run_dir / 'last.pt'}")  # + how to continue: the CLI's
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return self.finish()

    def _run_epoch(self, batches, start: float) -> tuple[list, int]:
        """The epoch's remaining steps: (losses, pairs trained); a signal saves last.pt and stops."""
        from tqdm.auto import tqdm
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
        return losses, pairs

    def end_epoch(self, train_loss: float, epoch_seconds: float, pairs: int) -> None:
        t = self.cfg.train
        if not self.dist.is_main:  # rank 0 evaluates and writes; the others follow its schedule
            self.epoch += 1
            self.step_in_epoch = 0
            self._sync_schedule()
            return
        eval_start = time.perf_counter()
        metrics, _, _ = evaluate_split(self, self.data.val)
        self.history.append(epoch_row(self.epoch + 1, train_loss, epoch_seconds, pairs,
                                      time.perf_counter() - eval_start,
                                      float(1.0 / self.model.temperature_scale().detach()), metrics,
                                      len(self.data.val.cids)))
        self.epoch += 1
        self.step_in_epoch = 0
        if t.time_budget and self.epoch < self.planned_epochs:
            # the schedule is fitted to the budget after every epoch: the cosine decay follows
            fit = epochs_within_budget(self.history, self.epoch, t.epochs, self.train_seconds, t.time_budget)
            if fit != self.planned_epochs:
                self.planned_epochs = max(fit, self.epoch)
                log.info(f"time budget {t.time_budget} min: planning {self.planned_epochs} epochs")
        score = selection_score(t, metrics, self.epoch)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, self.epoch
            save_checkpoint(self.run_dir / "best.pt", self.checkpoint(with_state=False, metrics=metrics))
        self.save_last()
        write_history(self.history, self.run_dir)
        self._sync_schedule()

    def finish(self) -> dict:
        """Reload the best checkpoint, report val metrics, write the submission."""
        if not self.dist.is_main:  # rank 0 evaluates and writes the submission
            close_distributed(self.dist)
            return {}
        best_path = self.run_dir / "best.pt"
        if best_path.exists():
            self.model.load_state_dict(read_checkpoint(best_path)["model_state"])
        result = final_result(self)
        close_distributed(self.dist)
        return result
