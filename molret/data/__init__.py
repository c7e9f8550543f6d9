"""Layer 3, the challenge data: the data folder and its files, graphs as flat arrays, the substructure vocabulary, the DEMO dataset."""
