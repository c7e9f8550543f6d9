"""The project's own error type: every expected failure (bad data, bad flags,
bad checkpoints) raises MolretError with a message a user can act on; the
scripts print it in one line and exit non-zero instead of a traceback
(``user_errors``, light enough for scripts that must start fast)."""
import functools
import sys


class MolretError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


class GraphFormatError(MolretError):
    """A `.graph` file that does not follow the challenge format."""


def user_errors(fn):
    """Run ``fn``; a MolretError becomes one line on stderr and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MolretError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return wrapper
