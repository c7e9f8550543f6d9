"""Layer 7, search: exact and approximate nearest-neighbour indexes, the library search engine, result rendering."""
