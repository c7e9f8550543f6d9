"""Convert a checkpoint written before format 2 (which held numpy objects and
so needs the unsafe pickle loader) into the current format, which molret
reads with the safe loader (tensors and plain data only).

    python convert_checkpoint.py runs/<name>/last.pt runs/<name>/last-v2.pt

Reading OLD.pt can run code hidden in it: convert only files you trust
(e.g. written by your own runs). The original is left untouched.
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.convert_checkpoint import build_parser, run
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
