"""Export the final (L2-normalised) text embeddings of a trained model for a
split, with their ids (CIDs for train/val, query line numbers for test);
--graphs also exports the molecules' embeddings.

    python get_text_embeddings.py --model runs/x/best.pt --split train
    python get_text_embeddings.py --model runs/x/best.pt --split val --graphs --out runs/x/embeddings/val

Writes PREFIX_text_emb.npy + PREFIX_text_ids.txt (and PREFIX_graph_emb.npy +
PREFIX_graph_ids.txt with --graphs); the default PREFIX is
<checkpoint folder>/embeddings/<split>, the layout of main.py --save-embeddings.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from molret.cli.common import add_inference_args, inference_device
from molret.utils.errors import user_errors


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="get_text_embeddings.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="checkpoint written by main.py (best.pt), or an ensemble's model file (recipe.py's model.pt)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="which split's texts")
    p.add_argument("--data-dir", help="challenge data folder (default: the checkpoint's)")
    p.add_argument("--cache-dir", help="cache folder for parsed graphs and tokens (default: the checkpoint's "
                                       "for its own data folder, else <data-dir>/cache)")
    p.add_argument("--out", metavar="PREFIX", help="output prefix (default: <checkpoint folder>/embeddings/<split>)")
    p.add_argument("--graphs", action="store_true", help="also export the graph embeddings of the split")
    add_inference_args(p, batch_size=256, batch_help="embedding batch size")
    return p


def export(model: str, split: str, out: str | None = None, graphs: bool = False, data_dir=None, cache_dir=None,
           device="auto", batch_size: int = 256, progress: bool = True) -> dict:
    """Write the embeddings and return {what: path}."""
    from molret.ranking.ensemble import checkpoint_embeddings
    from molret.utils.files import atomic_np_save, atomic_write_text
    from molret.models.encoding import save_embeddings

    e = checkpoint_embeddings(model, (split,), data_dir=data_dir, cache_dir=cache_dir, device=device,
                              batch_size=batch_size, progress=progress)[split]
    prefix = Path(out) if out else Path(model).parent / "embeddings" / split
    folder, name = prefix.parent, prefix.name
    if graphs:
        save_embeddings(folder, name, e.text_emb, e.text_ids, e.graph_emb, e.graph_ids)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_np_save(folder / f"{name}_text_emb.npy", np.asarray(e.text_emb, np.float32))
        atomic_write_text(folder / f"{name}_text_ids.txt", "".join(f"{i}\n" for i in e.text_ids))
    paths = {"text_emb": folder / f"{name}_text_emb.npy", "text_ids": folder / f"{name}_text_ids.txt"}
    if graphs:
        paths.update(graph_emb=folder / f"{name}_graph_emb.npy", graph_ids=folder / f"{name}_graph_ids.txt")
    return paths


@user_errors
def main(argv=None):
    args = parser().parse_args(argv)
    paths = export(args.model, args.split, args.out, args.graphs, args.data_dir, args.cache_dir, inference_device(args),
                   args.batch_size, progress=not args.no_progress)
    shape = np.load(paths["text_emb"], mmap_mode="r").shape
    print(f"{args.split}: {shape[0]} text embeddings of dimension {shape[1]}")
    for what, p in paths.items():
        print(f"  {what}: {p}")
    return paths


if __name__ == "__main__":
    main()
