"""Embed a molecule library in shards (libraries of millions), index the shard folder, search it.

    python embed_library.py --model runs/<name>/best.pt --library big.smi --out big.shards --shard 0/4
    python embed_library.py index --out big.shards --index auto
    python embed_library.py search --out big.shards --model runs/<name>/best.pt -k 10 "a steroid ester ..."

See molret/library/shards.py (the folder format) and molret/search/ann.py (the indexes).
"""
from molret.utils.errors import user_errors


@user_errors
def main(argv=None):
    from molret.cli.embed_library import main as run
    return run(argv)


if __name__ == "__main__":
    main()
