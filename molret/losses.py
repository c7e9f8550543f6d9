"""Contrastive losses, pure functions of tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(text_emb: torch.Tensor, graph_emb: torch.Tensor, scale) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): pair i is the positive of row/column i.

    ``text_emb`` [B, D] and ``graph_emb`` [B, D] are L2-normalised; ``scale``
    is the inverse temperature. Returns the mean of the text->graph and
    graph->text cross-entropies.
    """
    logits = scale * text_emb @ graph_emb.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
