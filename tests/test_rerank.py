"""Tests for molret.ranking.rerank (one-to-one re-ranking of similarity matrices)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from molret.utils.errors import MolretError  # noqa: E402
from molret.evaluation.metrics import lrap  # noqa: E402
from molret.ranking.rerank import rerank  # noqa: E402

# Query 1's best raw match is molecule 0, but molecule 0 is a much better
# match for query 0, and the one-to-one optimum is the identity.
CONFUSED = np.array([[0.9, 0.5, 0.1],
                     [0.8, 0.7, 0.2],
                     [0.1, 0.2, 0.6]])


def test_sinkhorn_rows_and_columns_sum_to_one():
    p = np.exp(rerank(CONFUSED, "sinkhorn", temperature=0.1, n_iter=500))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)
    assert (p > 0).all()


def test_sinkhorn_rectangular_column_marginals():
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, size=(4, 8))
    p = np.exp(rerank(s, "sinkhorn", temperature=0.5, n_iter=500))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=0), 0.5, atol=1e-5)


@pytest.mark.parametrize("method", ["sinkhorn", "dual-softmax"])
def test_one_to_one_structure_fixes_the_confused_query(method):
    assert CONFUSED.argmax(axis=1).tolist() == [0, 0, 2]      # raw ranking: query 1 is wrong
    assert lrap(CONFUSED) == pytest.approx((1 + 0.5 + 1) / 3)
    r = rerank(CONFUSED, method, temperature=0.05)
    assert r.argmax(axis=1).tolist() == [0, 1, 2]
    assert lrap(r) == 1.0


def test_dual_softmax_hand_computed():
    s = np.array([[1.0, 0.0], [0.0, 2.0]])
    r = rerank(s, "dual-softmax", temperature=1.0)
    e = np.e
    row = np.array([[e / (e + 1), 1 / (e + 1)], [1 / (1 + e ** 2), e ** 2 / (1 + e ** 2)]])
    col = np.array([[e / (e + 1), 1 / (1 + e ** 2)], [1 / (e + 1), e ** 2 / (1 + e ** 2)]])
    np.testing.assert_allclose(np.exp(r), row * col, rtol=1e-12)


def test_none_is_identity_and_values_stay_finite():
    np.testing.assert_array_equal(rerank(CONFUSED, "none", 1.0), CONFUSED)
    # A tiny temperature would underflow probabilities; the log domain keeps order and finiteness.
    s = np.array([[1.0, -1.0, 0.9], [-1.0, 1.0, 0.0], [0.95, 0.0, 1.0]])
    r = rerank(s, "sinkhorn", temperature=1e-3, n_iter=200)
    assert np.isfinite(r).all()
    assert r.argmax(axis=1).tolist() == [0, 1, 2]
    assert r[1, 0] != r[1, 2]                           # no underflow ties


def test_bad_inputs():
    with pytest.raises(MolretError, match="unknown re-ranking"):
        rerank(CONFUSED, "hungarian", 0.1)
    with pytest.raises(MolretError, match="temperature"):
        rerank(CONFUSED, "sinkhorn", 0.0)
    with pytest.raises(MolretError, match="non-finite"):
        rerank(np.array([[np.nan, 1.0], [0.0, 1.0]]), "dual-softmax", 0.1)
