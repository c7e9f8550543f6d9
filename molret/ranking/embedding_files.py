"""Embedding files of a model: a split's embeddings exported (get_text_embeddings.py) and text embeddings
read back with their ids (labels.py).

The layout is main.py's ``--save-embeddings``: ``PREFIX_text_emb.npy`` +
``PREFIX_text_ids.txt`` (and ``PREFIX_graph_emb.npy`` + ``PREFIX_graph_ids.txt``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from molret.utils.errors import MolretError


def export_embeddings(model: str, split: str, out: str | None = None, graphs: bool = False, data_dir=None,
                      cache_dir=None, device="auto", batch_size: int = 256, progress: bool = True) -> dict:
    """Write the final (L2-normalised) embeddings of ``model`` for ``split`` under the prefix ``out``
    (default: <model's folder>/embeddings/<split>) and return {what: path}."""
    from molret.models.encoding import save_embeddings
    from molret.ranking.ensemble import checkpoint_embeddings
    from molret.utils.files import atomic_np_save, atomic_write_text

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


def default_ids_path(emb_path: Path) -> Path:
    """The ids file beside a ``*_emb.npy`` (``train_text_emb.npy`` -> ``train_text_ids.txt``)."""
    name = emb_path.name
    if name.endswith("_emb.npy"):
        return emb_path.with_name(name[: -len("_emb.npy")] + "_ids.txt")
    raise MolretError(f"give --ids for {emb_path} (no *_emb.npy name to find its ids file from)")


def read_embeddings(emb_path, ids_path=None) -> tuple[np.ndarray, list[str]]:
    """(embeddings [N, D], ids) of an exported file; ``ids_path`` defaults to the ids file beside it."""
    from molret.ranking.ensemble import read_ids
    emb_path = Path(emb_path)
    try:
        emb = np.load(emb_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise MolretError(f"cannot read {emb_path}: {e}") from None
    ids = read_ids(ids_path or default_ids_path(emb_path))
    if len(ids) != len(emb):
        raise MolretError(f"{len(ids)} ids for {len(emb)} embeddings")
    return emb, ids
