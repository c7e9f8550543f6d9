"""Layer 1, utilities every other layer uses: the project's error type, atomic file writes, the cache file format."""
