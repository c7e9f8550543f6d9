"""Layer 9, the command lines of the scripts: flags, parsing into typed parameters, error handling."""
