"""The vLLM backend's glue, against `StandInEngine`: a small in-test stand-in for `vllm.LLM`, NOT vLLM.

vLLM itself cannot be installed on this project's machines; these tests check what passk-exp does around it: the
request layout (token-id prompts, one request per prompt with n samples, the run's sampling parameters), the
completion masks and truncation flags, the alignment of the sampler's log-probs with the tokens, the merged LoRA
weights that get pushed, and the order wake weights -> push -> wake KV cache -> reset prefix cache -> generate -> sleep.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from passk_exp.finetune import apply_finetune, merged_state_dict
from passk_exp.rollout import make_backend
from passk_exp.rollout.base import SamplingParams
from passk_exp.rollout.vllm import VLLMRollout, engine_kwargs

EOS, PAD = 1, 0


class CharTokenizer:
    """One token per character (ids 10 + ord % 50), EOS 1, PAD 0: enough for the backend's encode/decode."""

    eos_token_id, pad_token_id, chat_template = EOS, PAD, None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [10 + ord(c) % 50 for c in text]}

    def batch_decode(self, rows, skip_special_tokens=True):
        return ["".join(chr(ord("a") + (t - 10) % 26) for t in row.tolist() if t >= 10) for row in rows]


class StandInEngine:
    """Stand-in for `vllm.LLM` (not vLLM): records every call; sample j of a request is a scripted token list."""

    def __init__(self, scripts: list[list[int]]) -> None:
        self.scripts = scripts  # sample j's tokens (EOS included where it ends); the same for every request
        self.calls: list[tuple] = []
        self.pushed: dict[str, torch.Tensor] = {}
        engine = self

        class EngineModel:
            def load_weights(self, weights):
                engine.pushed = {name: tensor.clone() for name, tensor in weights}
                engine.calls.append(("load_weights",))

        self.engine_model = EngineModel()

    def apply_model(self, fn):
        return fn(self.engine_model)

    def wake_up(self, tags):
        self.calls.append(("wake_up", tuple(tags)))

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))

    def generate(self, prompts, params, use_tqdm):
        self.calls.append(("generate",))
        self.requests, self.params = prompts, params
        outputs = []
        for request, prompt in enumerate(prompts):
            samples = []
            for j, tokens in enumerate(self.scripts[: params["n"]]):
                # log-prob -(request + 1) * 0.1 * (position + 1): distinct per request and position
                logprobs = [{t: SimpleNamespace(logprob=-(request + 1) * 0.1 * (i + 1))} for i, t in enumerate(tokens)]
                samples.append(SimpleNamespace(index=j, token_ids=list(tokens), logprobs=logprobs))
            outputs.append(SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"], outputs=samples[::-1]))
        return outputs


def _policy():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3))
    model.generation_config = SimpleNamespace(eos_token_id=EOS)
    return model


def _backend(engine, sleep=True, **kwargs):
    return VLLMRollout(_policy(), CharTokenizer(), precision="bf16", sleep=sleep, engine=engine, **kwargs)


SCRIPTS = [[11, 12, EOS], [13, 14, 15, 16], [17, EOS, 18, 19], [20, 21]]


def test_request_layout_masks_truncation_and_sampler_logprobs():
    engine = StandInEngine(SCRIPTS)
    backend = _backend(engine)
    sampling = SamplingParams(max_new_tokens=4, temperature=0.7, top_p=1.0)
    batch = backend.generate(["ab", "c"], 3, sampling)

    assert engine.requests == [{"prompt_token_ids": [10 + ord("a") % 50, 10 + ord("b") % 50]},
                               {"prompt_token_ids": [10 + ord("c") % 50]}]  # fmt: skip
    params = engine.params
    assert (params["n"], params["temperature"], params["top_p"], params["top_k"], params["max_tokens"]) == (3, 0.7, 1.0, -1, 4)
    assert params["stop_token_ids"] == [EOS] and params["logprobs"] == 0 and params["min_p"] == 0.0
    assert batch.prompt_ids.tolist() == [[57, 58], [PAD, 59]] and batch.prompt_mask.tolist() == [[1, 1], [0, 1]]

    # samples re-ordered by index (the stand-in returns them reversed); width = the longest sample
    assert batch.completion_ids.shape == (2, 3, 4)
    assert batch.completion_ids[0].tolist() == [[11, 12, EOS, PAD], [13, 14, 15, 16], [17, EOS, PAD, PAD]]
    assert batch.completion_mask[0].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.truncated.tolist() == [[False, True, False]] * 2
    expected = torch.tensor([[-0.1, -0.2, -0.3, 0.0], [-0.1, -0.2, -0.3, -0.4], [-0.1, -0.2, 0.0, 0.0]])
    torch.testing.assert_close(batch.sampler_logprobs[0], expected)
    torch.testing.assert_close(batch.sampler_logprobs[1], 2 * expected)  # request 2's log-probs, not request 1's
    assert batch.select([1]).sampler_logprobs.shape == (1, 3, 4)


def test_an_early_stop_without_eos_is_neither_masked_wrong_nor_truncated():
    batch = _backend(StandInEngine(SCRIPTS)).generate(["a"], 4, SamplingParams(max_new_tokens=4))
    assert batch.completion_mask[0, 3].tolist() == [1, 1, 0, 0] and not bool(batch.truncated[0, 3])


def test_wake_push_reset_generate_sleep_order_and_lazy_weight_sync():
    engine = StandInEngine(SCRIPTS[:1])
    backend = _backend(engine)
    assert engine.calls == [("sleep", 2)]  # the constructor frees the GPU for the trainer
    sampling = SamplingParams(max_new_tokens=4)
    cycle = [("wake_up", ("weights",)), ("load_weights",), ("wake_up", ("kv_cache",)), ("reset_prefix_cache",),
             ("generate",), ("sleep", 2)]  # fmt: skip
    backend.generate(["a"], 1, sampling)
    assert engine.calls[1:] == cycle
    updated = _policy()
    backend.sync_weights(updated)
    assert engine.calls[1:] == cycle  # nothing is pushed until the next generate
    with torch.no_grad():
        updated[0].weight.fill_(0.5)  # an update after the sync still reaches the sampler
    backend.generate(["a"], 1, sampling)
    assert engine.calls[7:] == cycle  # level-2 sleep dropped the weights: every generate pushes the current policy
    torch.testing.assert_close(engine.pushed["0.weight"], torch.full((3, 3), 0.5))


def test_without_sleep_weights_are_pushed_once_per_sync_and_the_prefix_cache_reset_with_them():
    engine = StandInEngine(SCRIPTS[:1])
    backend = _backend(engine, sleep=False)
    sampling = SamplingParams(max_new_tokens=4)
    backend.generate(["a"], 1, sampling)
    backend.generate(["a"], 1, sampling)  # e.g. evaluation right after: same weights, cache still valid
    backend.sync_weights(_policy())
    backend.generate(["a"], 1, sampling)
    assert engine.calls == [("load_weights",), ("reset_prefix_cache",), ("generate",), ("generate",),
                            ("load_weights",), ("reset_prefix_cache",), ("generate",)]  # fmt: skip


def test_a_lora_policy_is_pushed_as_merged_base_weights():
    pytest.importorskip("peft")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=EOS, pad_token_id=PAD)  # fmt: skip
    base = LlamaForCausalLM(config)
    lora = {"name": "lora", "r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    policy = apply_finetune(base, lora).model
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # a trained adapter (B starts at zero)
    engine = StandInEngine(SCRIPTS[:1])
    backend = VLLMRollout(policy, CharTokenizer(), precision="fp32", sleep=False, engine=engine)
    backend.generate(["a"], 1, SamplingParams(max_new_tokens=4))
    expected = merged_state_dict(policy)
    assert set(engine.pushed) == set(expected) and not any("lora" in name for name in engine.pushed)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(engine.pushed[name], base.get_submodule("model.layers.0.self_attn.q_proj").base_layer.weight)
    torch.testing.assert_close(engine.pushed[name], expected[name])


def test_a_prompt_longer_than_max_model_len_fails_in_one_line_before_sampling():
    engine = StandInEngine(SCRIPTS)
    backend = _backend(engine, max_model_len=6)
    with pytest.raises(ValueError, match=r"a prompt of 3 tokens \+ rollout.max_new_tokens=4 exceeds rollout.max_model_len=6"):
        backend.generate(["abc"], 2, SamplingParams(max_new_tokens=4))
    assert ("generate",) not in engine.calls


def test_engine_arguments_carry_the_runs_settings():
    kwargs = engine_kwargs("dir", precision="bf16", seed=7, gpu_memory_utilization=0.3, max_model_len=1024, sleep=True)
    assert kwargs["seed"] == 7 and kwargs["max_model_len"] == 1024 and kwargs["gpu_memory_utilization"] == 0.3
    assert kwargs["enable_sleep_mode"] and kwargs["dtype"] == "bfloat16"
    assert kwargs["logprobs_mode"] == "processed_logprobs" and kwargs["generation_config"] == "vllm"
    assert "max_model_len" not in engine_kwargs("dir", precision="fp32", seed=0, gpu_memory_utilization=0.3,
                                                max_model_len=None, sleep=False)  # fmt: skip


def test_the_vllm_backend_without_a_gpu_fails_in_one_line():
    rollout = {"backend": "vllm", "gpu_memory_utilization": 0.3, "max_model_len": None, "sleep": True, "is_cap": 2.0}
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="rollout=vllm needs a CUDA GPU"):
        make_backend(rollout, _policy(), CharTokenizer(), "bf16", seed=0)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("rollout.is_cap=0", "rollout.is_cap=0 must be a positive number, or null"),
        ("rollout.max_model_len=6", "rollout.max_model_len=6 must exceed rollout.max_new_tokens=6"),
        ("rollout.gpu_memory_utilization=1.5", "rollout.gpu_memory_utilization=1.5 must be in (0, 1]"),
        ("+rollout.batch_size=64", "rollout=vllm: unknown key(s) ['batch_size']"),
    ],
)
def test_bad_vllm_settings_fail_in_one_line_before_any_model_loads(tmp_path, override, needle):
    from conftest import compose, tiny_overrides
    from passk_exp.config import ConfigError, validate_config

    validate_config(compose([*tiny_overrides(tmp_path), "rollout=vllm", "rollout.max_new_tokens=6"]))  # defaults pass
    with pytest.raises(ConfigError) as error:
        validate_config(compose([*tiny_overrides(tmp_path), "rollout=vllm", "rollout.max_new_tokens=6", override]))
    assert needle in str(error.value) and "\n" not in str(error.value)
