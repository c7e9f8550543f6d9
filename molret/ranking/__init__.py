"""Layer 5, ranking: re-ranking, name fusion, pseudo-labels and ensembles of similarity matrices."""
