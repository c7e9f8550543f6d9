"""Layer 8, the Python API: ``MolRetriever`` (load a checkpoint, encode, search) and the submissions made with it."""
