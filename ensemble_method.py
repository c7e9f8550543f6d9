"""Ensemble several models into one submission and one model file (the ensemble engine,
molret.ranking.ensemble_engine; flags: molret/cli/ensemble.py, ``--help``).

    python ensemble_method.py --members runs/a/embeddings runs/b/embeddings --fit-weights --names opsin \\
        --rerank sinkhorn --data-dir data --out submission.csv --save-model ensemble.pt
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.ensemble import build_parser, options_from_args
    from molret.ranking.ensemble_engine import run_ensemble
    result = run_ensemble(options_from_args(build_parser().parse_args(argv)))
    return result.metrics


if __name__ == "__main__":
    main()
