"""Shared command-line plumbing: the training entry point, the inference flags and the error handling of scripts.

``run_training`` is main.py's and main_negativemining.py's entry point.

``add_inference_args`` defines --device, --threads, --batch-size and
--no-progress once for every script that embeds with a checkpoint
(predictions.py, search.py, get_text_embeddings.py, labels.py,
ensemble_method.py); ``inference_device`` applies them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from molret.config import RunConfig
from molret.cli.flags import add_model_args, add_train_args, apply_args, check_kept_on_resume, ranged
from molret.utils.errors import MolretError
from molret.library.reading import ReaderOptions
from molret.search.opening import IndexOptions

# What --demo changes unless the user set it: the bundled offline encoder,
# frozen (cached) text features and sizes that train in about a minute on 2 CPU cores.
DEMO_DEFAULTS = {"text_model": "minilm", "text_pooling": "mean", "freeze_text": True, "epochs": 30, "batch_size": 32,
                 "hidden_dim": 128, "embed_dim": 128, "proj_hidden": 256, "lr": 2e-3,
                 "data_dir": "data/demo"}


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


def load_run_config(run_dir: Path) -> RunConfig:
    """The config.json of a run folder; runs written before hard-negative
    settings joined it kept them in mining.json."""
    cfg = RunConfig.load(run_dir / "config.json")
    legacy = run_dir / "mining.json"
    if legacy.is_file() and "mining" not in json.loads((run_dir / "config.json").read_text()):
        try:
            cfg.mining = RunConfig.from_dict({"mining": json.loads(legacy.read_text())}).mining
        except (OSError, ValueError) as e:
            raise MolretError(f"cannot read {legacy}, the run's hard-negative settings: {e}") from None
    return cfg


def run_training(argv, trainer_cls, prog: str, description: str, extra_args=None) -> dict:
    """Parse flags, set up (or resume) the run folder and train."""
    from molret.training.trainer import StopTraining, log, setup_logging

    parser = training_parser(prog, description)
    if extra_args:
        extra_args(parser)
    args = parser.parse_args(argv)
    try:
        if args.resume:
            run_dir = Path(args.resume)
            if not (run_dir / "config.json").exists() or not (run_dir / "last.pt").exists():
                raise MolretError(f"{run_dir} is not a run folder with a last.pt checkpoint to resume from")
            cfg = load_run_config(run_dir)
            check_kept_on_resume(cfg.mining, args, "hard-negative")
            if args.epochs is not None:
                cfg.train.epochs = args.epochs
        else:
            cfg = config_from_args(args)
            run_dir = new_run_dir(cfg)
        from molret.utils.files import check_writable_dir
        check_writable_dir(run_dir)
        setup_logging(run_dir)
        trainer = trainer_cls(cfg, run_dir, progress=not args.no_progress and sys.stderr.isatty(),
                              init_checkpoint=args.init_from)
        cfg.save(run_dir / "config.json")
        if cfg.train.demo:
            log.info("DEMO data: synthetic molecules and descriptions; scores say nothing about the challenge")
        return trainer.fit(resume_from=run_dir / "last.pt" if args.resume else None)
    except MolretError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except StopTraining:
        log.warning(f"continue with python {prog} --resume {run_dir}")
        raise SystemExit(130) from None


def new_run_dir(cfg: RunConfig) -> Path:
    """The folder of a new run (--run-name or a timestamp); --demo writes its data first."""
    if cfg.train.demo:
        from molret.data.demo import make_demo_data
        make_demo_data(cfg.train.data_dir)
    name = cfg.train.run_name or (("demo-" if cfg.train.demo else "") + time.strftime("%Y%m%d-%H%M%S"))
    cfg.train.run_name = name
    run_dir = Path(cfg.train.runs_dir) / name
    if (run_dir / "last.pt").exists():
        raise MolretError(f"run folder {run_dir} already holds a run: use --resume {run_dir} or another --run-name")
    return run_dir


# ---------------------------------------------------------- inference flags

INFERENCE_FLAGS = ("device", "threads", "batch_size", "progress")


def add_inference_args(parser: argparse.ArgumentParser, flags=INFERENCE_FLAGS, batch_size: int | None = None,
                       batch_help: str = "embedding batch size (default: the checkpoint's eval batch size)") -> None:
    """The inference flags in ``flags`` (of INFERENCE_FLAGS): --device, --threads, --batch-size, --no-progress."""
    unknown = set(flags) - set(INFERENCE_FLAGS)
    if unknown:
        raise AssertionError(f"unknown inference flags {sorted(unknown)}")
    if "device" in flags:
        parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    if "threads" in flags:
        parser.add_argument("--threads", type=ranged(int, "threads"), default=0,
                            help="torch CPU threads (0: torch's default)")
    if "batch_size" in flags:
        parser.add_argument("--batch-size", type=ranged(int, "eval_batch_size"), default=batch_size, help=batch_help)
    if "progress" in flags:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def inference_device(args):
    """The torch device of --device, after --threads (when the script has it) is applied."""
    from molret.models.encoding import pick_device
    if getattr(args, "threads", 0) > 0:
        import torch
        torch.set_num_threads(args.threads)
    return pick_device(args.device)


def add_library_args(p: argparse.ArgumentParser) -> None:
    """Flags of how a SMILES library is read (search.py, serve.py, predictions.py)."""
    from molret.chem.molecule_files import FORMATS
    from molret.chem.smiles_graph import STANDARDIZE_CHOICES
    g = p.add_argument_group("SMILES library reading")
    g.add_argument("--format", choices=FORMATS, help="library format; from the file extension when not given")
    g.add_argument("--smiles-column", help="CSV/TSV SMILES column (header name or 1-based number)")
    g.add_argument("--id-column", help="CSV/TSV id column (header name or 1-based number)")
    g.add_argument("--id-property", help="SDF data item holding the id; the title line when not given")
    g.add_argument("--standardize", default="none", choices=STANDARDIZE_CHOICES,
                   help="RDKit standardisation applied to each molecule")


def reader_options(args) -> ReaderOptions:
    return ReaderOptions(fmt=args.format, smiles_column=args.smiles_column, id_column=args.id_column,
                         id_property=args.id_property, standardize=args.standardize)


def add_index_args(p: argparse.ArgumentParser, rerank_flag: str = "--rerank") -> None:
    """--index and its tuning flags (for any script that searches a shard folder); ``rerank_flag`` names
    the IVF-PQ rerank flag where the script has its own --rerank (its value is ``args.index_rerank``)."""
    from molret.search.ann import AUTO_EXACT_BELOW, AUTO_HNSW_BELOW, CODECS, KINDS, IndexParams
    d = IndexParams()
    p.add_argument("--index", default="auto", choices=KINDS,
                   help=f"nearest-neighbour index; auto: exact below {AUTO_EXACT_BELOW:,} molecules, hnsw below "
                        f"{AUTO_HNSW_BELOW:,}, ivfpq above (built once, stored in the shard folder)")
    p.add_argument("--nlist", type=int, default=d.nlist, help="IVF lists (0: sqrt(n) rounded down to a power of two)")
    p.add_argument("--nprobe", type=int, default=d.nprobe, help="IVF lists scanned per query")
    p.add_argument("--pq-m", type=int, default=d.pq_m, help="IVF-PQ bytes per molecule (0: dim / 4)")
    p.add_argument("--codec", default=d.codec, choices=CODECS,
                   help="ivf/hnsw vector storage (auto: float32 up to 1 GiB, fp16 above)")
    p.add_argument("--hnsw-m", type=int, default=d.hnsw_m, help="HNSW links per molecule")
    p.add_argument("--ef-construction", type=int, default=d.ef_construction, help="HNSW build beam")
    p.add_argument("--ef-search", type=int, default=d.ef_search, help="HNSW search beam")
    p.add_argument(rerank_flag, type=int, default=d.rerank, dest="index_rerank", metavar="RERANK",
                   help="IVF-PQ: k x RERANK candidates rescored exactly")
    p.add_argument("--train-size", type=int, default=d.train_size, help="IVF training rows (0: automatic)")
    p.add_argument("--index-threads", type=int, default=0, help="FAISS threads (0: FAISS's default)")


# IndexParams field -> args attribute of add_index_args
INDEX_FLAGS = {"nlist": "nlist", "pq_m": "pq_m", "codec": "codec", "hnsw_m": "hnsw_m",
               "ef_construction": "ef_construction", "train_size": "train_size", "nprobe": "nprobe",
               "ef_search": "ef_search", "rerank": "index_rerank"}


def index_options(args) -> IndexOptions:
    """IndexOptions from the flags of ``add_index_args``, range-checked (before a model is loaded); a flag
    the parser lacks keeps its default."""
    from molret.search.ann import IndexParams
    d = IndexParams()
    params = IndexParams(**{f: getattr(args, a, getattr(d, f)) for f, a in INDEX_FLAGS.items()})
    return IndexOptions(getattr(args, "index", "auto"), params, getattr(args, "index_threads", 0)).check()


def add_distribute_args(p: argparse.ArgumentParser, workers: bool = True) -> None:
    """The flags of ``molret.library.distribute.DistributeOptions`` (where the shards run); ``workers=False``
    where the script has its own --workers (its value is then the workers' count)."""
    from molret.library.distribute import ENGINES, DistributeOptions
    d = DistributeOptions()
    p.add_argument("--cluster", metavar="auto|ADDRESS",
                   help="run on a Ray cluster: auto (the one `ray start` runs here) or its address, e.g. "
                        "ray://HOST:10001 (default: RAY_ADDRESS when set, else a local Ray for this run)")
    if workers:
        p.add_argument("--workers", type=int, default=d.workers, metavar="K",
                       help="workers (0: one per CPU of the machine or cluster, at most one per shard)")
    p.add_argument("--gpus-per-worker", type=float, default=d.gpus_per_worker, metavar="F",
                   help="Ray: fraction of a GPU per worker (0: CPU workers)")
    p.add_argument("--engine", default=d.engine, choices=ENGINES,
                   help="auto: Ray when installed, else local processes")
    p.add_argument("--max-retries", type=int, default=d.max_retries,
                   help="times a shard is redone after its worker died")


def distribute_options(args, threads: int = 1):
    """DistributeOptions from the flags of ``add_distribute_args``, range-checked."""
    from molret.library.distribute import DistributeOptions
    return DistributeOptions(args.engine, args.cluster, args.workers, threads, args.gpus_per_worker,
                             args.max_retries).check()
