"""Multi-process training on CPU (two gloo processes, as torchrun would start
them): the gathered loss and the DDP-averaged gradients equal those of one
process on the full batch, with and without the cached-gradient step; only
rank 0 writes."""
import copy
import datetime
import os
import socket
import sys
import time

import pytest
import torch
from torch import nn

from molret.config import RunConfig
from molret.training.losses import clip_loss

WORLD = 2
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_module):
    yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_config(demo_dir, text_model, cache_dir) -> RunConfig:
    cfg = RunConfig()
    t, m = cfg.train, cfg.model
    t.data_dir, t.cache_dir, t.device, t.write_submission = str(demo_dir), str(cache_dir), "cpu", False
    t.batch_size, t.grad_clip, t.seed, t.epochs, t.max_train, t.max_val = 11, 0.0, 2, 1, 44, 24
    m.text_model, m.hidden_dim, m.heads, m.embed_dim, m.proj_hidden, m.max_length = text_model, 32, 2, 16, 0, 48
    return cfg


def no_dropout(model):
    for mod in model.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def trainer_steps(tr):
    """Loss and gradients of the first batch: the plain step, then (from the
    same weights) the cached-gradient step with chunks of 3."""
    no_dropout(tr.model)
    tr.start()  # the schedule train_step advances
    batch = tr.train_set.collate(tr.make_batches(0)[0])
    start = copy.deepcopy(tr.model.state_dict())
    out = {"loss": tr.train_step(batch), "grads": grads(tr.model)}
    tr.model.load_state_dict(start)
    tr.cfg.train.grad_cache_chunk = 3
    out["gc_loss"], out["gc_grads"] = tr.train_step(batch), grads(tr.model)
    tr.cfg.train.grad_cache_chunk = 0
    tr.model.load_state_dict(start)
    return out


def assert_close_grads(a, b):
    a, b = ({k: v for k, v in d.items() if v is not None} for d in (a, b))
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-6, rtol=1e-5, msg=name)


def worker(rank, port, out_dir, demo_dir, text_model, cache_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    from molret.training.distributed import (all_gather_rows, gather_with_grad, init_distributed, share_range,
                                             share_sizes, wrap_ddp)
    from molret.training.gradcache import even_sizes, grad_cache_step, split_pair_batch
    from molret.training.trainer import Trainer
    from test_gradcache import plain_step, random_pairs, tiny_model

    env, device = init_distributed(torch.device("cpu"))
    assert (env.world_size, env.rank, device.type) == (WORLD, rank, "cpu")

    # 1. gather_with_grad + DDP on a tiny model: 11 pairs shared 6 / 5
    ds = random_pairs()
    batch = ds.collate(range(11))
    model = tiny_model()
    loss_ref, g_ref = plain_step(copy.deepcopy(model), batch)
    ddp = wrap_ddp(model, device)
    sizes = share_sizes(11, WORLD)
    start, stop = share_range(11, WORLD, rank)
    local = split_pair_batch(batch, sizes)[rank]
    text, graph, _ = ddp(local)
    full_text = gather_with_grad(text, sizes, float(WORLD))
    assert full_text.shape[0] == 11
    torch.testing.assert_close(full_text[start:stop], text)
    with torch.no_grad():
        torch.testing.assert_close(full_text, model.encode_text(batch.text), atol=1e-6, rtol=1e-5)
    loss = clip_loss(full_text, gather_with_grad(graph, sizes, float(WORLD)), model.temperature_scale())
    loss.backward()
    torch.testing.assert_close(loss.detach(), loss_ref, atol=1e-6, rtol=1e-6)
    assert_close_grads(grads(model), g_ref)

    # 2. the same through the cached-gradient step (chunks of 2 or 3, as many on each rank)
    model.zero_grad(set_to_none=True)
    chunks = split_pair_batch(local, even_sizes(len(local.index), 3))
    loss = grad_cache_step(ddp, lambda t, g: clip_loss(t, g, model.temperature_scale()), chunks,
                           gather=lambda x: (all_gather_rows(x, sizes), start, stop), embed_grad_scale=float(WORLD),
                           no_sync=ddp.no_sync, module=model)
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=1e-6)
    assert_close_grads(grads(model), g_ref)

    # 3. Trainer.train_step under two processes, then a short fit (rank 0 writes)
    from pathlib import Path
    run_dir = Path(out_dir) / ("run" if rank == 0 else "run-rank1")
    run_dir.mkdir()
    tr = Trainer(small_config(demo_dir, text_model, cache_dir), run_dir, progress=False)
    assert tr.ddp is not None and tr.dist.world_size == WORLD
    steps = trainer_steps(tr)
    if rank == 0:
        torch.save(steps, Path(out_dir) / "steps.pt")
    result = tr.fit()
    if rank == 0:
        torch.save(result, Path(out_dir) / "result.pt")
    else:
        assert result == {}


@pytest.fixture(scope="module")
def two_processes(demo_dir, tiny_text_model, tmp_path_factory):
    """Single-process reference, then the same under two gloo processes."""
    import torch.multiprocessing as mp
    from molret.training.trainer import Trainer

    out = tmp_path_factory.mktemp("dist")
    cache = out / "cache"
    torch.manual_seed(0)
    (out / "ref-run").mkdir()
    ref = trainer_steps(Trainer(small_config(demo_dir, tiny_text_model, cache), out / "ref-run", progress=False))
    # fork: the workers inherit the imports (torch, torch-geometric, transformers: ~15 s each to
    # import on a busy 2-core machine); spawn where CUDA was initialised here
    method = "spawn" if torch.cuda.is_initialized() or sys.platform != "linux" else "fork"
    ctx = mp.start_processes(worker, args=(free_port(), str(out), str(demo_dir), tiny_text_model, str(cache)),
                             nprocs=WORLD, join=False, start_method=method)
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
            pytest.fail("the two training processes did not finish in 240 s (deadlock?)")
    return ref, torch.load(out / "steps.pt"), out


def test_train_step_equals_single_process(two_processes):
    ref, dist_steps, _ = two_processes
    assert dist_steps["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert_close_grads(dist_steps["grads"], ref["grads"])


def test_grad_cache_step_equals_single_process(two_processes):
    ref, dist_steps, _ = two_processes
    assert dist_steps["gc_loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert_close_grads(dist_steps["gc_grads"], ref["grads"])


def test_only_rank0_writes(two_processes):
    _, _, out = two_processes
    result = torch.load(out / "result.pt")
    assert 0 < result["val"]["lrap"] <= 1 and result["epochs"] == 1
    for name in ["best.pt", "last.pt", "metrics.json", "result.json"]:
        assert (out / "run" / name).exists(), name
    assert list((out / "run-rank1").iterdir()) == []
