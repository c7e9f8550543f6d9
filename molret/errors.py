"""The project's own error type: every expected failure (bad data, bad flags,
bad checkpoints) raises MolretError with a message a user can act on; the
scripts print it in one line and exit non-zero instead of a traceback."""


class MolretError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


class GraphFormatError(MolretError):
    """A `.graph` file that does not follow the challenge format."""
