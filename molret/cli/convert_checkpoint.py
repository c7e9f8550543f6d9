"""convert_checkpoint.py's flags and run: a checkpoint of an older format to the current one
(the engine: ``molret.models.checkpoint.convert_checkpoint``)."""
from __future__ import annotations

import argparse

DESCRIPTION = """Convert a checkpoint written before format 2 (which held numpy objects and
so needs the unsafe pickle loader) into the current format, which molret
reads with the safe loader (tensors and plain data only).

Reading OLD.pt can run code hidden in it: convert only files you trust
(e.g. written by your own runs). The original is left untouched."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convert_checkpoint.py", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", metavar="OLD.pt", help="checkpoint of an older format, from a source you trust")
    p.add_argument("new", metavar="NEW.pt", help="where to write the converted checkpoint")
    return p


def run(args) -> str:
    from molret.models.checkpoint import convert_checkpoint
    ckpt = convert_checkpoint(args.old, args.new)
    print(f"wrote {args.new} (checkpoint format {ckpt['version']}, readable with the safe loader)")
    return args.new
