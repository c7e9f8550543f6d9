"""Train the text + graph encoders contrastively, evaluate on val every epoch
and write the test submission.

    python main.py --demo                        # built-in DEMO data, offline, ~1-2 min on a CPU
    python main.py --data-dir data --text-model minilm --freeze-text
    python main.py --resume runs/<name>          # continue after a crash or Ctrl-C
"""


def main(argv=None):
    from molret.cli.common import run_training
    from molret.training.trainer import Trainer
    return run_training(argv, Trainer, prog="main.py",
                        description="Contrastive training of a text encoder and a graph encoder "
                                    "(ALTEGRAD-2023 molecule retrieval).")


if __name__ == "__main__":
    main()
