"""Precision resolution (`auto` -> bf16 only where the hardware has native bf16) and the autocast context."""

import logging

import pytest
import torch

from passk_exp import precision
from passk_exp.precision import autocast, cpuinfo_has_bf16, resolve_precision

CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 avx512f {extra}\nbogomips\t: 5192.28\n"


@pytest.mark.parametrize("extra, expected", [("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512_vnni", False)])
def test_cpuinfo_flags_decide_bf16_support(extra, expected):
    assert cpuinfo_has_bf16(CPUINFO.format(extra=extra)) is expected


def test_cpuinfo_without_flags_line_is_unsupported():
    assert cpuinfo_has_bf16("processor\t: 0\n") is False
    # A flag name that merely contains the substring must not count.
    assert cpuinfo_has_bf16(CPUINFO.format(extra="xavx512_bf16x")) is False


@pytest.mark.parametrize("choice", ["bf16", "fp32"])
def test_explicit_choice_is_kept_on_any_device(choice, monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: choice == "fp32")
    assert resolve_precision(choice, "cpu") == choice
    assert resolve_precision(choice, torch.device("cuda")) == choice


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", "float32"])
def test_unknown_precision_is_a_one_line_value_error(bad):
    with pytest.raises(ValueError, match=r"precision=.* is not one of \['auto', 'bf16', 'fp32'\]"):
        resolve_precision(bad, "cpu")


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_follows_the_cpu_flags_and_logs_the_choice(supported, expected, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: supported)
    with caplog.at_level(logging.INFO, logger="passk_exp.precision"):
        assert resolve_precision("auto", "cpu") == expected
    assert f"precision auto -> {expected}" in caplog.text


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_asks_torch(supported, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_precision("auto", "cuda:0") == expected


def test_auto_on_an_unprobed_device_is_fp32():
    assert resolve_precision("auto", "meta") == "fp32"


def test_bf16_autocast_runs_matmuls_in_bfloat16_and_fp32_does_not():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32", torch.device("cpu")):
        assert (a @ b).dtype == torch.float32
    assert (a @ b).dtype == torch.float32  # the context does not leak


def test_autocast_resolves_auto_and_rejects_bad_values(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    with autocast("auto", "cpu"):
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision='half'"):
        autocast("half", "cpu")


def test_frozen_linears_in_bf16_compute_the_same_numbers_under_autocast():
    from transformers import LlamaConfig, LlamaForCausalLM

    from passk_exp.models import apply_trainable_layers
    from passk_exp.precision import store_frozen_linears_in_bf16

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    apply_trainable_layers(model, 1)
    ids = torch.randint(0, 97, (3, 11))
    with torch.no_grad(), autocast("bf16", "cpu"):
        before = model(input_ids=ids).logits.float()

    changed = store_frozen_linears_in_bf16(model)

    assert changed == 2 * 7  # q, k, v, o, gate, up, down of the two frozen decoder layers
    for name, param in model.named_parameters():
        frozen_linear = not param.requires_grad and param.dim() == 2 and "embed" not in name
        assert param.dtype == (torch.bfloat16 if frozen_linear else torch.float32), name
    assert model.get_input_embeddings().weight.dtype == torch.float32  # tied to the LM head: left alone
    with torch.no_grad(), autocast("bf16", "cpu"):
        after = model(input_ids=ids).logits.float()
    assert torch.equal(before, after)
    assert store_frozen_linears_in_bf16(model) == 0  # idempotent
