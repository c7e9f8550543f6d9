"""Layer 4, models: the encoders, text models and views, checkpoints, and embedding with a model."""
