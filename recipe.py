"""The best CPU recipe found, in one command: diverse members trained within a
wall-clock budget, their pool-weighted ensemble, chemical names fused in,
Sinkhorn re-ranking, and the test submission.

    python recipe.py --data-dir data --minutes 30 --out submission.csv
    python recipe.py --data-dir data --minutes 30 --out submission.csv --resume   # after Ctrl-C or a crash
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    import logging
    import sys
    from molret.cli.recipe import run
    log = logging.getLogger("molret")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return run(argv)


if __name__ == "__main__":
    main()
