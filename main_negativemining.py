"""Contrastive training with hard negatives: main.py's training, but batches
hold similar pairs (in-batch negatives are hard) or extra negatives come from
a memory bank.

    python main_negativemining.py --data-dir data --text-model minilm --freeze-text --negatives cluster
    python main_negativemining.py ... --negatives knn --knn-k 10
    python main_negativemining.py ... --negatives queue --queue-size 1024
    python main_negativemining.py ... --init-from runs/base/best.pt      # start from a main.py model
    python main_negativemining.py --resume runs/<name>

--negatives cluster: K-means labels of the current model's train text
embeddings (recomputed every --relabel-every epochs); each batch is drawn from
at most --groups-per-batch clusters. knn: each text's --knn-k hardest train
molecules under the current model are mined (same schedule) and batches are
grown from random seeds plus their neighbours. queue: random batches, and the
last --queue-size graph embeddings are extra negatives of every text.
--mining-start E warms up with plain main.py training for E epochs first.
The mined state (labels / neighbours / queue) is saved with the checkpoint,
so --resume replays the same batches.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from molret.cli import run_training
from molret.errors import MolretError
from molret.mining import (GraphQueue, clip_loss_with_negatives, cluster_labels, group_batches, knn_batches,
                           mine_neighbours, read_labels)
from molret.train import Trainer, embed_graphs, embed_texts, log

DEFAULTS = {"negatives": "cluster", "n_clusters": 25, "groups_per_batch": 2, "relabel_every": 1,
            "mining_start": 0, "labels": None, "knn_k": 10, "knn_per_seed": 7, "queue_size": 1024}


def add_mining_args(parser) -> None:
    g = parser.add_argument_group("hard negatives")
    g.argument_default = argparse.SUPPRESS   # absent unless given: a resumed run keeps its own settings
    g.add_argument("--negatives", choices=["cluster", "knn", "queue"],
                   help=f"source of hard negatives (default: {DEFAULTS['negatives']})")
    g.add_argument("--n-clusters", type=int, help=f"cluster: K-means clusters of the train texts "
                                                  f"(default: {DEFAULTS['n_clusters']})")
    g.add_argument("--groups-per-batch", type=int, help=f"cluster: clusters per batch "
                                                        f"(default: {DEFAULTS['groups_per_batch']})")
    g.add_argument("--relabel-every", type=int, help="cluster/knn: recompute the clusters or neighbours from the "
                                                     "current model every N epochs (0: only once) "
                                                     f"(default: {DEFAULTS['relabel_every']})")
    g.add_argument("--mining-start", type=int, help="plain random batches (cluster/knn) or no queue (queue) before "
                                                    f"this epoch: a warm-up (0-based; default: "
                                                    f"{DEFAULTS['mining_start']})")
    g.add_argument("--labels", metavar="TSV", help="cluster: initial labels (cid<TAB>label, from labels.py) "
                                                   "instead of clustering at --mining-start")
    g.add_argument("--knn-k", type=int, help=f"knn: neighbours mined per text (default: {DEFAULTS['knn_k']})")
    g.add_argument("--knn-per-seed", type=int, help="knn: neighbours added with each seed "
                                                    f"(default: {DEFAULTS['knn_per_seed']})")
    g.add_argument("--queue-size", type=int, help=f"queue: graph embeddings kept as extra negatives "
                                                  f"(default: {DEFAULTS['queue_size']})")


def mining_settings(args, run_dir) -> dict:
    """The flags' values over the defaults; on --resume, the run's saved ones."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    saved_path = run_dir / "mining.json"
    if getattr(args, "resume", None):
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, ValueError) as e:
            raise MolretError(f"cannot read {saved_path}, the run's hard-negative settings (was the run started "
                              f"by main.py? then use --init-from its best.pt): {e}") from None
        changed = [k for k, v in given.items() if saved.get(k) != v]
        if changed:
            raise MolretError(f"--{changed[0].replace('_', '-')} differs from the resumed run's setting "
                              f"({saved.get(changed[0])!r}); resume keeps the run's hard-negative settings")
        return {**DEFAULTS, **saved}
    s = {**DEFAULTS, **given}
    for k in ("n_clusters", "groups_per_batch", "knn_k", "knn_per_seed"):
        if s[k] < 1:
            raise MolretError(f"--{k.replace('_', '-')} must be >= 1, got {s[k]}")
    for k in ("relabel_every", "mining_start", "queue_size"):
        if s[k] < 0:
            raise MolretError(f"--{k.replace('_', '-')} must be >= 0, got {s[k]}")
    if s["labels"] and s["negatives"] != "cluster":
        raise MolretError("--labels needs --negatives cluster")
    return s


class HardNegativeTrainer(Trainer):
    """Trainer whose batches come from mined groups (cluster, knn) or whose
    loss adds a memory bank of graph negatives (queue)."""

    wants_args = True

    def __init__(self, cfg, run_dir, progress=True, init_checkpoint=None, args=None):
        self.mining = mining_settings(args, run_dir)
        self.mined = None          # cluster: labels [N]; knn: neighbours [N, k]
        self.mined_epoch = -1      # epoch at whose start `mined` was computed
        self.queue = None
        self.mined_steps_per_epoch = None
        super().__init__(cfg, run_dir, progress, init_checkpoint)
        m = self.mining
        self.file_labels = read_labels(m["labels"], self.train_set.cids) if m["labels"] else None
        if m["negatives"] == "queue":
            self.queue = GraphQueue(m["queue_size"], cfg.model.embed_dim)
        elif m["negatives"] == "cluster":
            # The schedule needs the batch count before any clustering: estimate it
            # with equal-sized clusters (the real count differs by a few batches).
            k = min(m["n_clusters"], len(self.train_set))
            est = np.arange(len(self.train_set)) % k
            self.mined_steps_per_epoch = len(group_batches(est, cfg.train.batch_size, m["groups_per_batch"],
                                                           np.random.default_rng(0)))
        from molret.io_utils import atomic_write_text
        atomic_write_text(run_dir / "mining.json", json.dumps(m, indent=2) + "\n")
        relevant = {"cluster": ("n_clusters", "groups_per_batch", "relabel_every", "mining_start", "labels"),
                    "knn": ("knn_k", "knn_per_seed", "relabel_every", "mining_start"),
                    "queue": ("queue_size", "mining_start")}[m["negatives"]]
        log.info(f"hard negatives: {m['negatives']} (" + ", ".join(f"{k}={m[k]}" for k in relevant
                                                               if m[k] is not None) + ")")

    @property
    def total_steps(self) -> int:
        """Random-batch epochs before --mining-start, cluster batches after."""
        mined = getattr(self, "mined_steps_per_epoch", None)
        if mined is None:
            return super().total_steps
        warm = min(self.mining["mining_start"], self.planned_epochs)
        return max(1, warm * self.steps_per_epoch + (self.planned_epochs - warm) * mined)

    # -- mining
    def _mine(self, epoch: int) -> None:
        m, t = self.mining, self.cfg.train
        start = time.perf_counter()
        text_emb = embed_texts(self.model, self.train_set.texts, self.device, t.eval_batch_size, t.amp)
        if m["negatives"] == "cluster":
            self.mined = cluster_labels(text_emb, min(m["n_clusters"], len(text_emb)), seed=t.seed + epoch)
            sizes = np.bincount(self.mined)
            what = f"{len(sizes)} clusters (sizes {sizes.min()}-{sizes.max()})"
        else:
            graph_emb = embed_graphs(self.model, self.train_set.graphs, self.device, t.eval_batch_size, t.amp)
            self.mined = mine_neighbours(text_emb, graph_emb, m["knn_k"])
            what = f"{self.mined.shape[1]} hardest molecules per text"
        self.mined_epoch = epoch
        log.info(f"epoch {epoch + 1}: mined {what} from the current model ({time.perf_counter() - start:.1f}s)")

    def on_epoch_start(self, epoch: int) -> None:
        m = self.mining
        if m["negatives"] == "queue" or epoch < m["mining_start"] or self.mined_epoch == epoch:
            return
        if self.mined is None and self.file_labels is not None:
            self.mined, self.mined_epoch = self.file_labels, epoch
            return
        due = self.mined is None or (m["relabel_every"] > 0 and (epoch - m["mining_start"]) % m["relabel_every"] == 0)
        if due:
            self._mine(epoch)

    def make_batches(self, epoch: int) -> list[list[int]]:
        m = getattr(self, "mining", None)
        if m is None or m["negatives"] == "queue" or self.mined is None or epoch < m["mining_start"]:
            return super().make_batches(epoch)
        rng = np.random.default_rng([self.cfg.train.seed, epoch, 1])
        if m["negatives"] == "cluster":
            return group_batches(self.mined, self.cfg.train.batch_size, m["groups_per_batch"], rng)
        return knn_batches(self.mined, self.cfg.train.batch_size, rng, m["knn_per_seed"])

    # -- loss
    def compute_loss(self, text_emb, graph_emb, batch) -> torch.Tensor:
        if self.queue is None or self.epoch < self.mining["mining_start"]:
            return super().compute_loss(text_emb, graph_emb, batch)
        extra, mask = self.queue.negatives(batch.index, text_emb.device)
        loss = clip_loss_with_negatives(text_emb, graph_emb, self.model.temperature_scale(), extra, mask)
        self.queue.push(graph_emb, batch.index)
        return loss

    # -- resume
    def extra_state(self) -> dict:
        return {"mining": dict(self.mining), "mined_epoch": self.mined_epoch,
                "mined": None if self.mined is None else torch.from_numpy(np.asarray(self.mined)),
                "queue": self.queue.state() if self.queue is not None else None}

    def load_extra_state(self, state: dict) -> None:
        if not state:
            raise MolretError("this checkpoint has no hard-negative state (was it written by main.py? "
                              "use --init-from to start from it)")
        self.mined_epoch = state["mined_epoch"]
        self.mined = None if state["mined"] is None else state["mined"].numpy()
        if self.queue is not None and state.get("queue") is not None:
            self.queue.load_state(state["queue"])


def main(argv=None):
    return run_training(argv, HardNegativeTrainer, prog="main_negativemining.py",
                        description="Contrastive training with hard negatives (cluster batches, mined "
                                    "nearest neighbours or a memory bank of graph embeddings).",
                        extra_args=add_mining_args)


if __name__ == "__main__":
    main()
