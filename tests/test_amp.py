"""--amp on a CPU: bf16 autocast reaches the training step, fp16 is refused,
and attention under bf16 runs in float32 (see text_models.install_cpu_bf16_attention)."""
import math

import pytest
import torch

from molret.utils.errors import MolretError
from molret.models.encoding import autocast_context, check_amp

CPU = torch.device("cpu")


def test_bf16_autocast_on_cpu():
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast_context(CPU, "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with autocast_context(CPU, "none"):
        assert lin(x).dtype == torch.float32
    # A checkpoint trained with fp16 on a GPU still embeds on a CPU, in float32.
    with autocast_context(CPU, "fp16"):
        assert lin(x).dtype == torch.float32


def test_fp16_training_on_cpu_is_refused():
    with pytest.raises(MolretError, match="--amp fp16 needs a CUDA GPU.*--amp bf16"):
        check_amp(CPU, "fp16")
    check_amp(CPU, "bf16")
    check_amp(CPU, "none")


def _qkv(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, 5, 8, generator=g).to(dtype) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # padding in the second sequence
    return q, k, v, mask


def test_bf16_attention_runs_in_float32_and_float32_is_unchanged():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from molret.models.text_models import install_cpu_bf16_attention
    install_cpu_bf16_attention()
    install_cpu_bf16_attention()  # idempotent: wraps once
    wrapped = ALL_ATTENTION_FUNCTIONS["sdpa"]
    module = torch.nn.Module()
    module.is_causal = False
    q, k, v, mask = _qkv(torch.float32)
    # float32: exactly transformers' own function
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=1 / math.sqrt(8))
    out, _ = wrapped(module, q, k, v, mask, scaling=1 / math.sqrt(8))
    assert torch.equal(out, ref)
    # bfloat16 under autocast: float32 math on the bf16 inputs, returned as bf16
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_b, _ = wrapped(module, qb, kb, vb, mask, scaling=1 / math.sqrt(8))
    ref_b, _ = sdpa_attention_forward(module, qb.float(), kb.float(), vb.float(), mask, scaling=1 / math.sqrt(8))
    assert out_b.dtype == torch.bfloat16
    assert torch.equal(out_b, ref_b.bfloat16())


def test_bf16_text_encoder_close_to_float32_with_gradients():
    from transformers import BertConfig, BertModel

    from molret.models.encoders import TextEncoder
    from molret.models.text_models import install_cpu_bf16_attention
    install_cpu_bf16_attention()
    torch.manual_seed(0)
    enc = TextEncoder(BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64, max_position_embeddings=32)), "mean").eval()
    ids = torch.randint(5, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 4:] = 0
    ref = enc(ids, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(ids, mask)
    out.float().sum().backward()
    assert torch.allclose(out.float(), ref, atol=0.1, rtol=0.05)
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_bf16_training_run_on_cpu(demo_dir, tiny_text_model, tmp_path):
    import main as main_script
    result = main_script.main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--amp", "bf16",
                               "--epochs", "1", "--batch-size", "16", "--hidden-dim", "32", "--heads", "2",
                               "--embed-dim", "16", "--max-length", "64", "--runs-dir", str(tmp_path),
                               "--run-name", "bf16", "--cache-dir", str(tmp_path / "cache"),
                               "--no-write-submission", "--no-progress"])
    assert result["val"]["lrap"] > 0
    config = (tmp_path / "bf16" / "config.json").read_text()
    assert '"amp": "bf16"' in config
    lines = (tmp_path / "bf16" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 2 and math.isfinite(float(lines[1].split(",")[1]))  # epoch 1's train loss


def test_fp16_training_on_cpu_stops_with_one_line(demo_dir, tiny_text_model, tmp_path, capsys):
    import main as main_script
    with pytest.raises(SystemExit) as e:
        main_script.main(["--data-dir", str(demo_dir), "--text-model", tiny_text_model, "--amp", "fp16",
                          "--device", "cpu", "--epochs", "1", "--runs-dir", str(tmp_path), "--no-progress"])
    assert e.value.code == 2
    assert "--amp fp16 needs a CUDA GPU" in capsys.readouterr().err
