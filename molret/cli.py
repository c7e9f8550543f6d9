"""Shared command-line plumbing: the training entry point used by main.py
and main_negativemining.py, and the error handling of every script."""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

from .config import RunConfig, add_model_args, add_train_args, apply_args
from .errors import MolretError

# What --demo changes unless the user set it: the bundled offline encoder,
# frozen (cached) text features and sizes that train in about a minute on 2 CPU cores.
DEMO_DEFAULTS = {"text_model": "minilm", "text_pooling": "mean", "freeze_text": True, "epochs": 30, "batch_size": 32,
                 "hidden_dim": 128, "embed_dim": 128, "proj_hidden": 256, "lr": 2e-3,
                 "data_dir": "data/demo"}


def user_errors(fn):
    """Run ``fn``; a MolretError becomes one line on stderr and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MolretError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return wrapper


def training_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint (its config.json is used; "
                             "--epochs may extend it)")
    parser.add_argument("--init-from", metavar="CKPT",
                        help="start from the weights of a checkpoint (same model configuration)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    add_model_args(parser)
    add_train_args(parser)
    return parser


def config_from_args(args) -> RunConfig:
    cfg = RunConfig()
    if args.demo:
        for k, v in DEMO_DEFAULTS.items():
            if getattr(args, k, None) is None:
                setattr(cfg.model if hasattr(cfg.model, k) else cfg.train, k, v)
    return apply_args(cfg, args)


def run_training(argv, trainer_cls, prog: str, description: str, extra_args=None, configure=None) -> dict:
    """Parse flags, set up (or resume) the run folder and train."""
    from .train import StopTraining, setup_logging

    parser = training_parser(prog, description)
    if extra_args:
        extra_args(parser)
    args = parser.parse_args(argv)
    try:
        if args.resume:
            run_dir = Path(args.resume)
            if not (run_dir / "config.json").exists() or not (run_dir / "last.pt").exists():
                raise MolretError(f"{run_dir} is not a run folder with a last.pt checkpoint to resume from")
            cfg = RunConfig.load(run_dir / "config.json")
            if args.epochs is not None:
                cfg.train.epochs = args.epochs
        else:
            cfg = config_from_args(args)
            if cfg.train.demo:
                from .demo import make_demo_data
                make_demo_data(cfg.train.data_dir)
            name = cfg.train.run_name or (("demo-" if cfg.train.demo else "") + time.strftime("%Y%m%d-%H%M%S"))
            cfg.train.run_name = name
            run_dir = Path(cfg.train.runs_dir) / name
            if (run_dir / "last.pt").exists():
                raise MolretError(f"run folder {run_dir} already holds a run: use --resume {run_dir} "
                                  f"or another --run-name")
        from .io_utils import check_writable_dir
        check_writable_dir(run_dir)
        setup_logging(run_dir)
        if configure:
            configure(cfg, args)
        trainer = trainer_cls(cfg, run_dir, progress=not args.no_progress and sys.stderr.isatty(), init_checkpoint=args.init_from,
                              **({"args": args} if getattr(trainer_cls, "wants_args", False) else {}))
        cfg.save(run_dir / "config.json")
        if args.resume:
            trainer.resume(run_dir / "last.pt")
        if cfg.train.demo:
            from .train import log
            log.info("DEMO data: synthetic molecules and descriptions; scores say nothing about the challenge")
        return trainer.fit()
    except MolretError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except StopTraining:
        raise SystemExit(130) from None
