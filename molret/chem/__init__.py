"""Layer 2, chemistry: the challenge graph format, SMILES to graphs and back (the decoder), molecule files, curated RDKit features."""
