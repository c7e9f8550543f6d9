"""Convert a checkpoint written before format 2 (which held numpy objects and
so needs the unsafe pickle loader) into the current format, which molret
reads with the safe loader (tensors and plain data only).

    python convert_checkpoint.py runs/<name>/last.pt runs/<name>/last-v2.pt

Reading OLD.pt can run code hidden in it: convert only files you trust
(e.g. written by your own runs). The original is left untouched.
"""
import argparse

from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    p = argparse.ArgumentParser(prog="convert_checkpoint.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", metavar="OLD.pt", help="checkpoint of an older format, from a source you trust")
    p.add_argument("new", metavar="NEW.pt", help="where to write the converted checkpoint")
    args = p.parse_args(argv)
    from molret.models.checkpoint import convert_checkpoint
    ckpt = convert_checkpoint(args.old, args.new)
    print(f"wrote {args.new} (checkpoint format {ckpt['version']}, readable with the safe loader)")
    return args.new


if __name__ == "__main__":
    main()
