"""Layer 3, chemical names in queries: found, resolved to structures (OPSIN and dictionaries), cached."""
