"""The resumable state of a training run: what last.pt saves beside the weights and --resume restores.

Free functions of a ``molret.training.trainer.Trainer``; the state is plain data and
tensors (see molret.models.checkpoint), so it loads with ``weights_only=True``.
"""
from __future__ import annotations

import logging

import torch

from molret.models.checkpoint import (numpy_rng_state, read_checkpoint, python_rng_state, set_numpy_rng_state,
                                      set_python_rng_state)
from molret.utils.errors import MolretError

log = logging.getLogger("molret")


def training_state(trainer) -> dict:
    """Optimiser, schedule, counters, history and RNG states, plus the subclass's ``extra_state()``."""
    return {
        "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler else None,
        "epoch": trainer.epoch, "step_in_epoch": trainer.step_in_epoch, "global_step": trainer.global_step,
        "planned_epochs": trainer.planned_epochs, "history": trainer.history, "best_score": trainer.best_score,
        "best_epoch": trainer.best_epoch, "train_seconds": trainer.train_seconds,
        "torch_rng": torch.get_rng_state(), "numpy_rng": numpy_rng_state(),   # plain data: see checkpoint.py
        "python_rng": python_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "extra": trainer.extra_state()}


def restore_training_state(trainer, state: dict) -> None:
    """The inverse of ``training_state`` (the optimiser's state is loaded by the caller, with the weights)."""
    t = trainer.cfg.train
    trainer.planned_epochs = max(state["planned_epochs"], t.epochs) if t.time_budget == 0 else state["planned_epochs"]
    trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.scaler and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.epoch, trainer.step_in_epoch = state["epoch"], state["step_in_epoch"]
    trainer.global_step = state["global_step"]
    trainer.history, trainer.best_epoch = state["history"], state["best_epoch"]
    trainer.best_score = state.get("best_score", state.get("best_lrap", -1.0))  # "best_lrap": format 1
    trainer.train_seconds = state["train_seconds"]
    torch.set_rng_state(state["torch_rng"])
    set_numpy_rng_state(state["numpy_rng"])
    set_python_rng_state(state["python_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    trainer.load_extra_state(state.get("extra", {}))


def load_weights(model, path) -> None:
    """--init-from: the weights of a checkpoint of the same model configuration."""
    ckpt = read_checkpoint(path)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise MolretError(f"{path}: its model does not match this configuration ({str(e).splitlines()[0][:200]})") from None
    log.info(f"initialised the model from {path}")


def resume_from_checkpoint(trainer, path) -> None:
    """--resume: the weights, optimiser and training state of a last.pt (after the schedule is set up)."""
    ckpt = read_checkpoint(path)
    state = ckpt.get("train_state")
    if state is None:
        raise MolretError(f"{path} has no training state to resume from")
    try:
        trainer.model.load_state_dict(ckpt["model_state"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError) as e:
        raise MolretError(f"{path}: does not match this run's configuration ({str(e).splitlines()[0][:200]})") from None
    restore_training_state(trainer, state)
    log.info(f"resumed from {path}: epoch {trainer.epoch + 1}, step {trainer.step_in_epoch}")
