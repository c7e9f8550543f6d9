"""The opt-in reduction of a model file's joined embeddings (``ensemble_method.py --reduce-dim``): a PCA projection
fitted on the challenge pool's texts and molecules as the file embeds them, its pool LRAP measured beside the exact."""
from __future__ import annotations

import numpy as np


def fit_reduction(embedder, dim: int, data_dir, cache_dir=None) -> tuple:
    """--reduce-dim ``dim``: (the PCA projection of the file's joined embeddings, fitted on the pool's val + test texts
    and molecules as it embeds them; its pool LRAP, learned and plain, exact and reduced)."""
    from molret.evaluation.pool import challenge_pool_inputs, pool_metrics_of, pool_similarity
    from molret.models.embedder import fit_projection
    _, val_texts, val_graphs, _, test_texts, test_graphs = challenge_pool_inputs(data_dir, cache_dir)
    parts = [embedder.encode_texts(val_texts), embedder.encode_store(val_graphs),
             embedder.encode_texts(test_texts), embedder.encode_store(test_graphs)]
    projection = fit_projection(np.concatenate(parts), dim)

    def reduced(x):
        y = x @ projection
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    exact = pool_metrics_of(pool_similarity(*parts), len(val_texts))["pool_lrap"]
    small = pool_metrics_of(pool_similarity(*map(reduced, parts)), len(val_texts))["pool_lrap"]
    print(f"reduced from {projection.shape[0]} to {projection.shape[1]} dimensions: pool LRAP (learned, plain) "
          f"{exact:.4f} exact, {small:.4f} reduced")
    return projection, {"reduced_from": int(projection.shape[0]), "dim": int(projection.shape[1]),
                        "pool_lrap_exact": exact, "pool_lrap_reduced": small}
