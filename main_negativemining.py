"""Contrastive training with hard negatives: main.py's training, but batches
hold similar pairs or extra negatives come from a memory bank (the engine:
molret.training.hard_negatives; the flags: ``--help``).

    python main_negativemining.py --data-dir data --text-model minilm --freeze-text --negatives cluster
    python main_negativemining.py ... --negatives knn --knn-k 10
    python main_negativemining.py ... --negatives queue --queue-size 1024
    python main_negativemining.py ... --init-from runs/base/best.pt      # start from a main.py model
    python main_negativemining.py --resume runs/<name>
"""


def main(argv=None):
    from molret.cli.common import run_training
    from molret.cli.flags import add_mining_args
    from molret.training.hard_negatives import HardNegativeTrainer
    return run_training(argv, HardNegativeTrainer, prog="main_negativemining.py",
                        description="Contrastive training with hard negatives (cluster batches, mined "
                                    "nearest neighbours or a memory bank of graph embeddings).",
                        extra_args=add_mining_args)


if __name__ == "__main__":
    main()
