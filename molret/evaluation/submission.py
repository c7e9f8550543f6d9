"""The Kaggle submission: header ``ID,0,...,N-1``; row i = query i of
test_text.txt scored against the molecules in test_cids.txt order."""
from __future__ import annotations

import numpy as np

from molret.utils.errors import MolretError
from molret.utils.files import atomic_path


def write_submission(similarity: np.ndarray, path) -> None:
    similarity = np.asarray(similarity, dtype=np.float32)
    if similarity.ndim != 2:
        raise MolretError(f"similarity must be a matrix, got shape {similarity.shape}")
    if not np.isfinite(similarity).all():
        raise MolretError("similarity matrix has non-finite values; not writing a submission")
    n_queries, n_mols = similarity.shape
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w") as f:
            f.write("ID," + ",".join(map(str, range(n_mols))) + "\n")
            fmt = "%d" + ",%.7g" * n_mols + "\n"
            for i in range(n_queries):
                f.write(fmt % (i, *similarity[i].tolist()))
    validate_submission(path, n_queries, n_mols)


def validate_submission(path, n_queries: int, n_mols: int) -> None:
    """Re-read the CSV and check header, row count, IDs and finite values."""
    import pandas as pd
    try:
        df = pd.read_csv(path)
    except Exception as e:
        raise MolretError(f"{path}: the written submission cannot be read back ({e})") from None
    expected = ["ID"] + [str(i) for i in range(n_mols)]
    if list(df.columns) != expected:
        raise MolretError(f"{path}: bad header (expected ID,0,...,{n_mols - 1})")
    if len(df) != n_queries:
        raise MolretError(f"{path}: {len(df)} rows, expected {n_queries}")
    if not (df["ID"].to_numpy() == np.arange(n_queries)).all():
        raise MolretError(f"{path}: IDs are not 0..{n_queries - 1} in order")
    values = df.iloc[:, 1:].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise MolretError(f"{path}: non-finite scores")


def read_submission(path) -> np.ndarray:
    import pandas as pd
    return pd.read_csv(path).iloc[:, 1:].to_numpy(dtype=np.float32)
