"""Layer 5, evaluation: retrieval metrics, validation at the test's pool size, the Kaggle submission."""
