"""The hard-negative trainer (main_negativemining.py's engine): main.py's training, but batches
hold similar pairs (in-batch negatives are hard) or extra negatives come from a memory bank.

--negatives cluster: K-means labels of the current model's train text
embeddings (recomputed every --relabel-every epochs); each batch is drawn from
at most --groups-per-batch clusters. knn: each text's --knn-k hardest train
molecules under the current model are mined (same schedule) and batches are
grown from random seeds plus their neighbours. queue: random batches, and the
last --queue-size graph embeddings are extra negatives of every text.
--mining-start E warms up with plain main.py training for E epochs first.
The settings are the "mining" section of the run's config.json (older runs:
mining.json) and are kept on --resume; the mined state (labels / neighbours /
queue) is saved with the checkpoint, so --resume replays the same batches.
The samplers, the clustering and the losses are ``molret.training.mining``.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from molret.models.encoding import embed_graphs, embed_texts
from molret.training.mining import (GraphQueue, clip_loss_with_negatives, cluster_labels, group_batches, knn_batches,
                                    mine_neighbours, read_labels)
from molret.training.trainer import Trainer, log
from molret.utils.errors import MolretError

# the settings each source uses (logged at the start)
RELEVANT = {"cluster": ("n_clusters", "groups_per_batch", "relabel_every", "mining_start", "labels"),
            "knn": ("knn_k", "knn_per_seed", "relabel_every", "mining_start"),
            "queue": ("queue_size", "mining_start")}


class HardNegativeTrainer(Trainer):
    """Trainer whose batches come from mined groups (cluster, knn) or whose
    loss adds a memory bank of graph negatives (queue); its settings are
    ``cfg.mining`` (molret.config.MiningConfig)."""

    def __init__(self, cfg, run_dir, progress=True, init_checkpoint=None):
        m = cfg.mining
        if m.labels and m.negatives != "cluster":
            raise MolretError("--labels needs --negatives cluster")
        super().__init__(cfg, run_dir, progress, init_checkpoint)
        self.mined = None          # cluster: labels [N]; knn: neighbours [N, k]
        self.mined_epoch = -1      # epoch at whose start `mined` was computed
        self.file_labels = read_labels(m.labels, self.train_set.cids) if m.labels else None
        self.queue = GraphQueue(m.queue_size, cfg.model.embed_dim) if m.negatives == "queue" else None
        self.mined_steps_per_epoch = None
        if m.negatives == "cluster":
            # The schedule needs the batch count before any clustering: estimate it
            # with equal-sized clusters (the real count differs by a few batches).
            k = min(m.n_clusters, len(self.train_set))
            est = np.arange(len(self.train_set)) % k
            self.mined_steps_per_epoch = len(group_batches(est, cfg.train.batch_size, m.groups_per_batch,
                                                           np.random.default_rng(0)))
        log.info(f"hard negatives: {m.negatives} (" + ", ".join(
            f"{k}={getattr(m, k)}" for k in RELEVANT[m.negatives] if getattr(m, k) not in (None, "")) + ")")

    @property
    def total_steps(self) -> int:
        """Random-batch epochs before --mining-start, cluster batches after."""
        if self.mined_steps_per_epoch is None:
            return super().total_steps
        warm = min(self.cfg.mining.mining_start, self.planned_epochs)
        return max(1, warm * self.steps_per_epoch + (self.planned_epochs - warm) * self.mined_steps_per_epoch)

    # -- mining
    def _mine(self, epoch: int) -> None:
        m, t = self.cfg.mining, self.cfg.train
        start = time.perf_counter()
        text_emb = embed_texts(self.model, self.train_set.texts, self.device, t.eval_batch_size, t.amp)
        if m.negatives == "cluster":
            self.mined = cluster_labels(text_emb, min(m.n_clusters, len(text_emb)), seed=t.seed + epoch)
            sizes = np.bincount(self.mined)
            what = f"{len(sizes)} clusters (sizes {sizes.min()}-{sizes.max()})"
        else:
            graph_emb = embed_graphs(self.model, self.train_set.graphs, self.device, t.eval_batch_size, t.amp)
            self.mined = mine_neighbours(text_emb, graph_emb, m.knn_k)
            what = f"{self.mined.shape[1]} hardest molecules per text"
        self.mined_epoch = epoch
        log.info(f"epoch {epoch + 1}: mined {what} from the current model ({time.perf_counter() - start:.1f}s)")

    def on_epoch_start(self, epoch: int) -> None:
        m = self.cfg.mining
        if m.negatives == "queue" or epoch < m.mining_start or self.mined_epoch == epoch:
            return
        if self.mined is None and self.file_labels is not None:
            self.mined, self.mined_epoch = self.file_labels, epoch
            return
        due = self.mined is None or (m.relabel_every > 0 and (epoch - m.mining_start) % m.relabel_every == 0)
        if due:
            self._mine(epoch)

    def make_batches(self, epoch: int) -> list[list[int]]:
        m = self.cfg.mining
        if m.negatives == "queue" or self.mined is None or epoch < m.mining_start:
            return self.plain_batches(epoch)
        rng = np.random.default_rng([self.cfg.train.seed, epoch, 1])
        if m.negatives == "cluster":
            return group_batches(self.mined, self.cfg.train.batch_size, m.groups_per_batch, rng)
        return knn_batches(self.mined, self.cfg.train.batch_size, rng, m.knn_per_seed)

    # -- loss and memory bank
    def _queue_in_use(self) -> bool:
        return self.queue is not None and self.epoch >= self.cfg.mining.mining_start

    def compute_loss(self, text_emb, graph_emb, batch) -> torch.Tensor:
        if not self._queue_in_use():
            return super().compute_loss(text_emb, graph_emb, batch)
        extra, mask = self.queue.negatives(batch.index, text_emb.device)
        return clip_loss_with_negatives(text_emb, graph_emb, self.model.temperature_scale(), extra, mask)

    def on_step_taken(self, text_emb, graph_emb, batch) -> None:
        # after the step only: a skipped (non-finite) batch never enters the memory bank
        if self._queue_in_use():
            self.queue.push(graph_emb, batch.index)

    # -- resume
    def extra_state(self) -> dict:
        return {"mining": dataclasses.asdict(self.cfg.mining), "mined_epoch": self.mined_epoch,
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

