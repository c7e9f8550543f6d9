"""Layer 6, molecule libraries: reading them, their caches, and sharded embeddings of millions of molecules."""
