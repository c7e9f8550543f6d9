"""Layer 6, training: the contrastive losses, the training loop, its steps, state, report and hard negatives."""
