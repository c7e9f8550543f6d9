import math

import numpy as np
import pytest
import torch

from molret.losses import clip_loss
from molret.metrics import lrap, ranks_of_targets, retrieval_metrics


def test_clip_loss_hand_computed_2x2():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    graph = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits = 2 * text @ graph.T = [[2, 1.2], [0, 1.6]]
    lt = [math.log(math.exp(2) + math.exp(1.2)) - 2, math.log(1 + math.exp(1.6)) - 1.6]
    # columns: [2, 0] for graph 0, [1.2, 1.6] for graph 1
    lg = [math.log(math.exp(2) + 1) - 2, math.log(math.exp(1.2) + math.exp(1.6)) - 1.6]
    expected = 0.5 * (sum(lt) / 2 + sum(lg) / 2)
    assert clip_loss(text, graph, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_clip_loss_is_symmetric_and_low_when_aligned():
    e = torch.eye(4)
    assert clip_loss(e, e, 100.0).item() < 1e-6
    a, b = torch.nn.functional.normalize(torch.randn(5, 3), dim=1), torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    assert clip_loss(a, b, 3.0).item() == pytest.approx(clip_loss(b, a, 3.0).item(), rel=1e-6)


def test_metrics_hand_computed():
    sim = np.array([[0.9, 0.1, 0.0],    # target 0 at rank 1
                    [0.8, 0.5, 0.1],    # target 1 at rank 2
                    [0.7, 0.6, 0.5]])   # target 2 at rank 3
    assert ranks_of_targets(sim).tolist() == [1, 2, 3]
    m = retrieval_metrics(sim)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert m["lrap"] == pytest.approx(m["mrr"])  # one positive per row: LRAP == MRR
    assert m["hits@1"] == pytest.approx(1 / 3)
    assert m["hits@10"] == pytest.approx(1.0)


def test_ties_count_against_the_target_like_sklearn():
    sim = np.array([[0.5, 0.5], [0.1, 0.9]])
    assert ranks_of_targets(sim).tolist() == [2, 1]
    assert lrap(sim) == pytest.approx(0.75)


def test_lrap_matches_mrr_on_random():
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((40, 40))
    m = retrieval_metrics(sim)
    assert m["lrap"] == pytest.approx(m["mrr"], abs=1e-12)
