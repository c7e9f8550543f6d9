"""Embeddings of a trained model for a split, and ensembles of similarity
matrices (used by get_text_embeddings.py, labels.py and ensemble_method.py).

A *member* of an ensemble is one model's query x molecule similarity matrix
per split ("val", "test"), with the ids of its rows (queries: CIDs for val,
line numbers for test) and columns (molecule CIDs). Members are combined by
the weighted mean of their (optionally row-normalised) matrices; members
whose shapes or id orders differ are refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molret.utils.errors import MolretError

SPLITS = ("train", "val", "test")
NORMALIZATIONS = ("none", "zscore", "minmax")


# ------------------------------------------------------- model embeddings

@dataclass
class SplitEmbeddings:
    text_emb: np.ndarray
    text_ids: list
    graph_emb: np.ndarray
    graph_ids: list


def checkpoint_embeddings(model_path, splits=("val", "test"), data_dir=None, cache_dir=None, device="cpu",
                          batch_size: int = 256, progress: bool = False) -> dict[str, SplitEmbeddings]:
    """The final (L2-normalised) text and graph embeddings of a checkpoint, or of an ensemble's model file
    (its members' joined, molret.models.embedder), for each of ``splits`` (train/val: rows and columns are
    the pairs' CIDs; test: rows are query line numbers, columns test CIDs). ``data_dir`` defaults to the
    (first member's) own. Full splits (--max-train/--max-val of the run are ignored)."""
    import torch
    from molret.models.embedder import load_embedder
    from molret.models.encoding import pick_device

    splits = tuple(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise MolretError(f"unknown split {bad[0] if bad else '(none)'} (train, val or test)")
    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
    embedder = load_embedder(model_path, dev)
    parts = [_member_embeddings(m, splits, data_dir, cache_dir, dev, batch_size, progress) for m in embedder.members]
    out = {}
    for name in splits:
        first = parts[0][name]
        out[name] = SplitEmbeddings(embedder.join([p[name].text_emb for p in parts]), first.text_ids,
                                    embedder.join([p[name].graph_emb for p in parts]), first.graph_ids)
    return out


def _member_embeddings(member, splits, data_dir, cache_dir, dev, batch_size, progress) -> dict:
    from molret.models.split_inputs import load_challenge_data, prepare_texts
    from molret.models.encoding import embed_graphs, embed_texts
    model, cfg, vocab, tokenizer = member.model, member.cfg, member.vocab, member.tokenizer
    t = cfg.train
    if data_dir is not None and str(data_dir) != t.data_dir:
        t.data_dir, t.cache_dir = str(data_dir), ""
    if cache_dir is not None:
        t.cache_dir = str(cache_dir)
    t.max_train = t.max_val = 0
    need_pairs = "train" in splits or "val" in splits
    data = load_challenge_data(cfg, need_train=need_pairs, need_test="test" in splits, progress=progress)
    if "val" in splits and data.val is None:
        raise MolretError(f"data folder {t.data_dir} has no val.tsv")
    if "test" in splits and data.test_graphs is None:
        raise MolretError(f"data folder {t.data_dir} has no test_cids.txt and test_text.txt")
    if "train" not in splits:
        data.train = None
    if "val" not in splits:
        data.val = None
    # Graphs index the checkpoint's own substructure table (its vocabulary).
    for split in (data.train, data.val, data.test_graphs):
        if split is not None:
            split.graphs.attach_vocab(vocab)
    prepare_texts(data, cfg, tokenizer, model, dev, progress)
    out = {}
    for name in splits:
        text_split = data.test_queries if name == "test" else getattr(data, name)
        graph_split = data.test_graphs if name == "test" else getattr(data, name)
        text_emb = embed_texts(model, text_split.text_data, dev, batch_size, progress=progress)
        graph_emb = embed_graphs(model, graph_split.graphs, dev, batch_size, progress=progress)
        out[name] = SplitEmbeddings(text_emb, list(text_split.cids), graph_emb, list(graph_split.cids))
    return out


# ------------------------------------------------------------- members

@dataclass
class Member:
    name: str
    splits: dict = field(default_factory=dict)   # split -> (similarity, row_ids, col_ids)
    n_val: int = 0                               # with a "pool" split: its first n_val rows are the val queries
    final_pool: tuple | None = None              # its final fit's "pool" split, with test_members (the model
                                                 # file's member: the submission's claims candidates come from it)


def add_pool_split(m: Member, embeddings: dict) -> None:
    """The "pool" split of a member with val and test embeddings ({split:
    (text_emb, text_ids, graph_emb, graph_ids)}): val + test queries x val +
    test molecules (molret.evaluation.pool), test ids prefixed with "test:"."""
    if "val" not in embeddings or "test" not in embeddings:
        return
    from molret.evaluation.pool import pool_similarity
    vt, vr, vg, vc = embeddings["val"]
    tt, tr, tg, tc = embeddings["test"]
    m.splits["pool"] = (pool_similarity(vt, vg, tt, tg), [str(i) for i in vr] + [f"test:{i}" for i in tr],
                        [str(i) for i in vc] + [f"test:{i}" for i in tc])
    m.n_val = len(vt)


def read_ids(path) -> list[str]:
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as e:
        raise MolretError(f"cannot read ids file {path}: {e.strerror or e}") from None


def _load_npy(path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise MolretError(f"cannot read {path}: {e}") from None


def member_from_embeddings(name: str, embeddings: dict[str, SplitEmbeddings]) -> Member:
    m = Member(name)
    for split, e in embeddings.items():
        m.splits[split] = (e.text_emb @ e.graph_emb.T, [str(i) for i in e.text_ids], [str(i) for i in e.graph_ids])
    add_pool_split(m, {k: (e.text_emb, e.text_ids, e.graph_emb, e.graph_ids) for k, e in embeddings.items()})
    return m


def member_from_path(path) -> Member:
    """A member saved on disk:

    * a folder with ``<split>_text_emb.npy`` + ``<split>_graph_emb.npy`` (and
      their ``_ids.txt``), as written by main.py --save-embeddings or
      get_text_embeddings.py --graphs; or with ``<split>_similarity.npy``
      (+ optional ``<split>_row_ids.txt`` / ``<split>_col_ids.txt``), as
      written by ensemble_method.py --save-similarity;
    * a ``.npy`` file holding a test similarity matrix (ids from
      ``<stem>_row_ids.txt`` / ``<stem>_col_ids.txt`` beside it, if present).
    """
    path = Path(path)
    m = Member(str(path))
    if path.is_dir():
        embeddings = {}
        for split in ("val", "test"):
            te, ge = path / f"{split}_text_emb.npy", path / f"{split}_graph_emb.npy"
            sim = path / f"{split}_similarity.npy"
            if te.exists() and ge.exists():
                t, g = _load_npy(te), _load_npy(ge)
                rows, cols = read_ids(path / f"{split}_text_ids.txt"), read_ids(path / f"{split}_graph_ids.txt")
                if t.ndim != 2 or g.ndim != 2 or t.shape[1] != g.shape[1]:
                    raise MolretError(f"{path}: {split} embeddings have incompatible shapes {t.shape} and {g.shape}")
                if len(rows) != len(t) or len(cols) != len(g):
                    raise MolretError(f"{path}: {split} ids files do not match the embeddings' row counts")
                t, g = t.astype(np.float32), g.astype(np.float32)
                m.splits[split] = (t @ g.T, rows, cols)
                embeddings[split] = (t, rows, g, cols)
            elif sim.exists():
                s = _load_npy(sim)
                rows = path / f"{split}_row_ids.txt"
                cols = path / f"{split}_col_ids.txt"
                m.splits[split] = (s, read_ids(rows) if rows.exists() else None,
                                   read_ids(cols) if cols.exists() else None)
        add_pool_split(m, embeddings)
        if not m.splits:
            raise MolretError(f"{path}: no val_/test_ embeddings (*_text_emb.npy + *_graph_emb.npy) "
                              f"or *_similarity.npy in this folder")
    elif path.suffix == ".npy" and path.is_file():
        s = _load_npy(path)
        rows, cols = path.with_name(path.stem + "_row_ids.txt"), path.with_name(path.stem + "_col_ids.txt")
        m.splits["test"] = (s, read_ids(rows) if rows.exists() else None, read_ids(cols) if cols.exists() else None)
    else:
        raise MolretError(f"ensemble member {path} is neither an embeddings folder nor a .npy similarity matrix")
    for split, (s, rows, cols) in m.splits.items():
        if s.ndim != 2:
            raise MolretError(f"{path}: {split} similarity must be a matrix, got shape {s.shape}")
        if rows is not None and len(rows) != s.shape[0] or cols is not None and len(cols) != s.shape[1]:
            raise MolretError(f"{path}: {split} ids do not match the similarity matrix's shape {s.shape}")
    return m


def check_aligned(members: list[Member], split: str) -> None:
    """All members' ``split`` matrices have one shape and one id order."""
    ref = members[0]
    s0, r0, c0 = ref.splits[split]
    for m in members[1:]:
        s, r, c = m.splits[split]
        if s.shape != s0.shape:
            raise MolretError(f"ensemble members disagree on the {split} matrix: {ref.name} is {s0.shape[0]}x"
                              f"{s0.shape[1]} but {m.name} is {s.shape[0]}x{s.shape[1]}")
        for what, a, b in (("query", r0, r), ("molecule", c0, c)):
            if a is not None and b is not None and a != b:
                k = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                raise MolretError(f"ensemble members disagree on the {split} {what} order: position {k} is "
                                  f"{a[k]} in {ref.name} but {b[k]} in {m.name}")


# ----------------------------------------------------------- combining

def normalize_rows(similarity: np.ndarray, how: str = "none") -> np.ndarray:
    """Per query row: ``zscore`` (minus the row mean, over the row std; a
    constant row becomes 0) or ``minmax`` (to [0, 1]; a constant row becomes
    0); ``none`` returns the matrix as float64."""
    s = np.asarray(similarity, dtype=np.float64)
    if how == "none":
        return s.copy()
    if how == "zscore":
        mean = s.mean(axis=1, keepdims=True)
        std = s.std(axis=1, keepdims=True)
        return (s - mean) / np.where(std > 0, std, 1.0)
    if how == "minmax":
        lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
        return (s - lo) / np.where(hi > lo, hi - lo, 1.0)
    raise MolretError(f"unknown normalisation {how!r} (one of {', '.join(NORMALIZATIONS)})")


def combine(matrices: list[np.ndarray], weights=None, normalize: str = "none") -> np.ndarray:
    """Weighted mean of the (row-normalised) matrices; weights default to
    equal and are rescaled to sum to 1."""
    if not matrices:
        raise MolretError("an ensemble needs at least one member")
    shapes = {np.shape(m) for m in matrices}
    if len(shapes) != 1:
        raise MolretError(f"ensemble members have different shapes: {sorted(shapes)}")
    w = np.ones(len(matrices)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(matrices),):
        raise MolretError(f"{len(w)} weights for {len(matrices)} ensemble members")
    if (w < 0).any() or not w.sum() > 0:
        raise MolretError("ensemble weights must be >= 0 with a positive sum")
    w = w / w.sum()
    out = np.zeros(matrices[0].shape, dtype=np.float64)
    for wi, m in zip(w, matrices):
        out += wi * normalize_rows(m, normalize)
    return out


def val_targets(row_ids: list | None, col_ids: list | None, n: int) -> np.ndarray:
    """Column of each row's true molecule: the column with the row's CID
    (the diagonal when ids are unknown)."""
    if row_ids is None or col_ids is None:
        return np.arange(n)
    where = {c: j for j, c in enumerate(col_ids)}
    missing = [r for r in row_ids if r not in where]
    if missing:
        raise MolretError(f"val query {missing[0]} has no molecule among the columns")
    return np.array([where[r] for r in row_ids])


def fit_member_weights(matrices: list[np.ndarray], targets: np.ndarray, normalize: str = "none",
                       grid=(0.0, 0.5, 1.0, 1.5, 2.0, 3.0), passes: int = 2) -> list[float]:
    """Member weights maximising the mean reciprocal rank (= LRAP) of the
    combined ``matrices`` (the val rows of the pool): coordinate ascent over
    ``grid``, starting from equal weights."""
    from molret.evaluation.metrics import ranks_of_targets
    normed = [normalize_rows(m, normalize) for m in matrices]
    w = np.ones(len(matrices))

    def score(w):
        if not w.sum() > 0:
            return -1.0
        s = sum(wi * m for wi, m in zip(w / w.sum(), normed))
        return float(np.mean(1.0 / ranks_of_targets(s, targets)))

    best = score(w)
    for _ in range(passes):
        for i in range(len(w)):
            for g in grid:
                trial = w.copy()
                trial[i] = g
                s = score(trial)
                if s > best + 1e-9:
                    w, best = trial, s
    return [round(float(x), 4) for x in w / w.sum()]


def fit_group_weights(matrices: list[np.ndarray], groups: list[str], targets: np.ndarray,
                      normalize: str = "none", **fit) -> list[float]:
    """Member weights fitted per group: the members of a group (e.g. the
    recipe's fast members, seeds and feature families of one model kind)
    share one weight, split equally among them, so that a dozen similar
    members cost one fitted weight on the val rows, not a dozen (fewer
    weights fitted on 500 queries: less of the fit is noise)."""
    if len(groups) != len(matrices):
        raise MolretError(f"{len(groups)} group labels for {len(matrices)} ensemble members")
    labels = list(dict.fromkeys(groups))
    means = [np.mean([normalize_rows(m, normalize) for m, g in zip(matrices, groups) if g == label], axis=0)
             for label in labels]
    group_w = dict(zip(labels, fit_member_weights(means, targets, "none", **fit)))
    size = {label: groups.count(label) for label in labels}
    return [round(group_w[g] / size[g], 4) for g in groups]


def cross_fitted_lrap(matrices: list[np.ndarray], groups: list[str], targets: np.ndarray,
                      normalize: str = "none", seed: int = 0) -> float:
    """LRAP (= MRR) of the combined val rows with weights fitted on the other
    half of the rows (2 folds, a seeded split): the honest figure beside the
    one of weights fitted and scored on the same rows, which overstates."""
    from molret.evaluation.metrics import ranks_of_targets
    n = len(targets)
    order = np.random.default_rng(seed).permutation(n)
    folds = [order[:n // 2], order[n // 2:]]
    reciprocal = np.zeros(n)
    for fit_rows, score_rows in (folds, folds[::-1]):
        w = fit_group_weights([m[fit_rows] for m in matrices], groups, targets[fit_rows], normalize)
        combined = combine([m[score_rows] for m in matrices], w, normalize)
        reciprocal[score_rows] = 1.0 / ranks_of_targets(combined, targets[score_rows])
    return float(reciprocal.mean())


def use_final_test_matrices(members: list[Member], paths: list) -> None:
    """test_members: each member's test matrix replaced by that of its final fit (same shape and ids)."""
    if len(paths) != len(members):
        raise MolretError(f"--test-members has {len(paths)} paths for {len(members)} members")
    for m, path in zip(members, paths):
        final = member_from_path(path)
        if "test" not in final.splits:
            raise MolretError(f"--test-members: {path} has no test matrix")
        s, rows, cols = final.splits["test"]
        if "test" in m.splits and (s.shape != m.splits["test"][0].shape or (rows, cols) != m.splits["test"][1:]):
            raise MolretError(f"--test-members: {path}'s test matrix is not over the same queries and molecules "
                              f"as {m.name}'s")
        m.splits["test"] = (s, rows, cols)
        m.final_pool = final.splits.get("pool")
