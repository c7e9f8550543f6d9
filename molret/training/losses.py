"""Contrastive losses, pure functions of tensors, chosen by name (``--loss``).

Every loss takes ``text_emb`` [B, D] and ``graph_emb`` [B, D] (L2-normalised,
pair i is the positive of row/column i) and ``scale`` (the inverse
temperature) and returns a scalar. Adding one is one function plus one entry
in ``LOSSES`` with its help (and its test against a hand-computed value).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

HARD_NEGATIVE_BETA = 1.0   # hard-infonce: negatives weighted by exp(beta * scale * similarity)
TRIPLET_MARGIN = 0.2       # triplet: cosine margin between the positive and the hardest negative


def clip_loss(text_emb: torch.Tensor, graph_emb: torch.Tensor, scale) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): the mean of the text->graph and
    graph->text cross-entropies of ``scale * text_emb @ graph_emb.T``."""
    logits = scale * text_emb @ graph_emb.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def sigmoid_loss(text_emb: torch.Tensor, graph_emb: torch.Tensor, scale) -> torch.Tensor:
    """SigLIP-style: an independent binary decision per pair, ``-log sigmoid(
    label * (scale * sim + bias))`` with label +1 on the diagonal and -1 off
    it, summed over a row and averaged over rows; the bias ``-log(B - 1)``
    balances one positive against B - 1 negatives."""
    b = text_emb.shape[0]
    logits = scale * text_emb @ graph_emb.t() - math.log(max(b - 1, 1))
    labels = 2 * torch.eye(b, device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum(dim=1).mean()


def _weighted_infonce(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """Cross-entropy of each row's diagonal with the negatives re-weighted by
    ``exp(beta * logit)`` (normalised to mean 1 per row, weights not differentiated)."""
    b = logits.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=logits.device)
    with torch.no_grad():
        w = torch.exp(beta * (logits - logits.max(dim=1, keepdim=True).values)).masked_fill(eye, 0.0)
        w = w * (b - 1) / w.sum(dim=1, keepdim=True).clamp_min(1e-30)
    log_w = torch.log(w.clamp_min(1e-30)).masked_fill(eye, 0.0)  # the positive keeps weight 1
    return F.cross_entropy(logits + log_w, torch.arange(b, device=logits.device))


def hard_infonce_loss(text_emb: torch.Tensor, graph_emb: torch.Tensor, scale,
                      beta: float = HARD_NEGATIVE_BETA) -> torch.Tensor:
    """Hard-negative-weighted symmetric InfoNCE (Robinson et al. 2021): each
    negative counts ``exp(beta * logit)`` times (mean weight 1), so the
    similar ones dominate; ``beta = 0`` is exactly :func:`clip_loss`."""
    logits = scale * text_emb @ graph_emb.t()
    return 0.5 * (_weighted_infonce(logits, beta) + _weighted_infonce(logits.t(), beta))


def triplet_loss(text_emb: torch.Tensor, graph_emb: torch.Tensor, scale=None,
                 margin: float = TRIPLET_MARGIN) -> torch.Tensor:  # noqa: ARG001 - no temperature
    """Triplet with the hardest in-batch negative, both directions (VSE++):
    ``relu(margin - sim(i, i) + max_j!=i sim(i, j))`` averaged over rows and columns."""
    sim = text_emb @ graph_emb.t()
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    pos = sim.diagonal()
    neg = sim.masked_fill(eye, float("-inf"))
    row = F.relu(margin - pos + neg.max(dim=1).values)
    col = F.relu(margin - pos + neg.max(dim=0).values)
    return 0.5 * (row.mean() + col.mean())


@dataclass(frozen=True)
class Loss:
    """A --loss choice: the function (called through the entry) and its help."""
    fn: Callable
    doc: str

    def __call__(self, text_emb, graph_emb, scale):
        return self.fn(text_emb, graph_emb, scale)


# --loss name -> Loss (the flag's choices and help are made from it)
LOSSES = {
    "clip": Loss(clip_loss, "symmetric InfoNCE"),
    "siglip": Loss(sigmoid_loss, "sigmoid per pair"),
    "hard-infonce": Loss(hard_infonce_loss, "negatives weighted by their similarity"),
    "triplet": Loss(triplet_loss, f"hardest in-batch negative, margin {TRIPLET_MARGIN:g}"),
}
