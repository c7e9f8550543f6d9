import math

import numpy as np
import pytest
import torch

from molret.training.losses import clip_loss
from molret.evaluation.metrics import lrap, ranks_of_targets, retrieval_metrics


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


# ------------------------------------------------------------------ the other losses (--loss)

def _pair():
    import torch
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.tensor([[0.6, 0.8], [0.0, 1.0]])   # sim = [[0.6, 0.0], [0.8, 1.0]]
    return t, g


def test_sigmoid_loss_by_hand():
    import math
    from molret.training.losses import sigmoid_loss
    t, g = _pair()
    s = 2.0  # scale; bias -log(B - 1) = 0 for B = 2
    logsig = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    rows = [-(logsig(s * 0.6) + logsig(-s * 0.0)), -(logsig(-s * 0.8) + logsig(s * 1.0))]
    assert float(sigmoid_loss(t, g, s)) == pytest.approx(sum(rows) / 2, rel=1e-6)


def test_triplet_loss_by_hand():
    from molret.training.losses import triplet_loss
    t, g = _pair()
    # rows: relu(0.2 - 0.6 + 0.0) = 0, relu(0.2 - 1.0 + 0.8) = 0; columns: relu(0.2 - 0.6 + 0.8) = 0.4, relu(0.2 - 1 + 0) = 0
    assert float(triplet_loss(t, g)) == pytest.approx(0.5 * (0.0 + 0.4 / 2), rel=1e-6)


def test_hard_infonce_is_clip_at_beta_zero_and_weights_hard_negatives():
    import torch
    from molret.training.losses import clip_loss, hard_infonce_loss
    gen = torch.Generator().manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(6, 5, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(6, 5, generator=gen), dim=1)
    assert float(hard_infonce_loss(t, g, 7.0, beta=0.0)) == pytest.approx(float(clip_loss(t, g, 7.0)), rel=1e-6)
    # with B = 2 there is one negative per row: its weight is 1 whatever beta, so it is clip again
    t2, g2 = _pair()
    assert float(hard_infonce_loss(t2, g2, 3.0, beta=2.0)) == pytest.approx(float(clip_loss(t2, g2, 3.0)), rel=1e-6)
    # beta > 0 puts more weight on the hardest negatives: the loss grows
    assert float(hard_infonce_loss(t, g, 7.0, beta=1.0)) > float(clip_loss(t, g, 7.0))


@pytest.mark.parametrize("name", ["clip", "siglip", "hard-infonce", "triplet"])
def test_every_loss_trains_towards_the_diagonal(name):
    import torch
    from molret.training.losses import LOSSES
    gen = torch.Generator().manual_seed(1)
    t = torch.randn(8, 6, generator=gen, requires_grad=True)
    g = torch.randn(8, 6, generator=gen)
    norm = torch.nn.functional.normalize
    before = float(LOSSES[name](norm(t, dim=1), norm(g, dim=1), 10.0).detach())
    opt = torch.optim.SGD([t], lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        LOSSES[name](norm(t, dim=1), norm(g, dim=1), 10.0).backward()
        opt.step()
    assert float(LOSSES[name](norm(t, dim=1), norm(g, dim=1), 10.0).detach()) < before
