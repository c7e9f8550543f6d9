"""One place for every setting: dataclasses for the model, the training run and its hard negatives.

Their flags are made from the fields by ``molret.cli.flags`` (help, choices and
the range of every numeric one live there)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from molret.utils.errors import MolretError

DEFAULT_TEXT_MODEL = "allenai/scibert_scivocab_uncased"


@dataclass
class ModelConfig:
    # Graph encoder.
    conv: str = "gatv2"                 # gcn | gat | gatv2 | mlp | features (molret.models.encoders.GRAPH_LAYERS)
    mol_features: str = ""              # curated RDKit feature families (molret.chem.mol_features), comma-separated
    mol_features_dim: int = 0           # filled from the features (their columns)
    num_layers: int = 3
    hidden_dim: int = 300
    heads: int = 4                      # attention heads (gat/gatv2)
    dropout: float = 0.1
    residual: bool = True
    norm: str = "layer"                 # batch | layer | graph | none
    pooling: str = "mean"               # mean | max | attention
    train_substructure_emb: bool = False  # fine-tune the mol2vec table
    vocab_size: int = 0                 # filled from the embedding dict
    substructure_dim: int = 300         # filled from the embedding dict
    # Text encoder.
    text_model: str = DEFAULT_TEXT_MODEL  # hub name, local folder, or alias "minilm"
    text_pooling: str = "cls"           # cls | mean
    max_length: int = 256
    train_text_layers: int = -1         # -1: all; 0: none; N: the top N layers
    text_bow: int = 0                   # hashed TF-IDF word buckets of the bag-of-words text view (0: none)
    text_bow_rank: int = 0              # width of its table (0: the projection's hidden width)
    text_bow_dropout: float = 0.0       # training: probability of dropping each word of a row
    text_bow_chars: int = 0             # character 3..N-grams of the words in the view too (0: none)
    # Shared space.
    embed_dim: int = 256
    proj_hidden: int = 512              # hidden width of the projection heads (0: linear)
    init_temperature: float = 0.07
    learn_temperature: bool = True


@dataclass
class TrainConfig:
    data_dir: str = "data"
    demo: bool = False
    run_name: str = ""
    runs_dir: str = "runs"
    cache_dir: str = ""                 # default: <data_dir>/cache, or ~/.cache/molret if read-only
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3                    # graph encoder, projections, temperature
    text_lr: float = 3e-5               # text encoder
    layer_lr_decay: float = 1.0         # text layer i below the top trains at text_lr * decay^i
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    amp: str = "none"                   # none | bf16 (CUDA or CPU) | fp16 (CUDA) autocast
    threads: int = 0                    # torch CPU threads (0: torch's default)
    freeze_text: bool = False           # cache frozen text features, train the rest
    cache_frozen_layers: bool = True    # with train_text_layers N > 0: cache the lower layers' token states
    bucket_by_length: bool = True       # length-bucketed batches (less padding)
    max_train: int = 0                  # use only the first N training pairs (0: all)
    train_on_val: bool = False          # the final fit: train on train + val pairs (keeps the last epoch)
    extra_pairs: str = ""               # TSV of more training pairs (cid<TAB>text), e.g. pseudo-labels
    max_val: int = 0
    time_budget: float = 0.0            # minutes of training; 0: no limit
    write_submission: bool = True
    save_embeddings: bool = False
    grad_cache_chunk: int = 0           # cached-gradient loss: embed in chunks of N (0: off)
    compile: bool = False               # torch.compile the encoders (CUDA only)
    rerank: str = "none"                # none | sinkhorn | dual-softmax: final val report + submission
    rerank_temperature: float = 0.05
    loss: str = "clip"                  # molret.training.losses.LOSSES: clip | siglip | hard-infonce | triplet
    names: str = "none"                 # none | opsin: fuse the structures named in the queries (final report, submission)
    select_metric: str = "pool_lrap"    # pool_lrap | lrap | pool_lrap_reranked: which val score picks the best epoch


@dataclass
class MiningConfig:
    """Hard negatives of main_negativemining.py (its flags only; main.py runs keep the defaults)."""
    negatives: str = "cluster"          # cluster | knn | queue
    n_clusters: int = 25
    groups_per_batch: int = 2
    relabel_every: int = 1              # 0: mine once
    mining_start: int = 0               # plain batches (no queue) before this epoch
    labels: str = ""                    # cluster: initial labels file (labels.py) instead of clustering
    knn_k: int = 10
    knn_per_seed: int = 7
    queue_size: int = 1024


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return cls(model=_dc_from_dict(ModelConfig, d.get("model", {})),
                   train=_dc_from_dict(TrainConfig, d.get("train", {})),
                   mining=_dc_from_dict(MiningConfig, d.get("mining") or {}))

    def save(self, path: Path) -> None:
        from molret.utils.files import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise MolretError(f"cannot read config {path}: {e}") from None


def _dc_from_dict(dc, d: dict):
    known = {f.name for f in fields(dc)}
    return dc(**{k: v for k, v in d.items() if k in known})
