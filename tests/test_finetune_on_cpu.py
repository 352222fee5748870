"""Fine-tune modes (`finetune=top_layers | full | lora`): config checks, parameter counts, LoRA through the log-prob
path, bf16 storage, the adapter-off KL reference, merged weights for vLLM, and whole runs that train, log their counts,
checkpoint only what trains and resume to the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import compose, tiny_overrides
from passk_exp.checkpoint import save_checkpoint
from passk_exp.config import ConfigError, validate_config
from passk_exp.finetune import MODES, adaptable_module_names, apply_finetune, merged_state_dict, parse_finetune
from passk_exp.logprobs import completion_logprobs
from passk_exp.models import decoder_layers, load_policy
from passk_exp.precision import autocast, store_frozen_linears_in_bf16
from test_logprobs_on_cpu import ragged_batch, tiny_llama, unpadded_reference

TINY = {"name": "tiny", "source": "tiny", "tokenizer_from": "smollm2_135m", "trainable_layers": None}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora(**changes) -> dict:
    return {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": LORA_TARGETS, **changes}


def expected_lora_params(model: nn.Module, r: int, targets) -> int:
    """r·(in + out) per adapted linear: A is [r, in], B is [out, r]."""
    return sum(
        r * (m.in_features + m.out_features)
        for name, m in decoder_layers(model).named_modules()
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )


def perturb_adapters(model: nn.Module, seed: int = 1) -> None:
    """B starts at zero (the adapted model IS the base model at step 0); random B makes the adapters matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


# ------------------------------------------------------------------------------------------------------- config
def test_every_finetune_yaml_is_a_registered_mode_and_the_default_is_top_layers():
    from conftest import REPO

    assert {p.stem for p in (REPO / "conf" / "finetune").glob("*.yaml")} == set(MODES)
    assert compose([]).finetune.name == "top_layers"
    for name in MODES:
        cfg = compose([f"finetune={name}", "model=tiny"])
        validate_config(cfg)
        assert parse_finetune(cfg.finetune).name == name


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["finetune=lora", "finetune.r=0"], "finetune.r=0 must be an integer >= 1"),
        (["finetune=lora", "finetune.dropout=1.0"], "finetune.dropout=1.0 must be in [0, 1)"),
        (["finetune=lora", "finetune.alpha=0"], "finetune.alpha=0 must be a number > 0"),
        (["finetune=lora", "finetune.target_modules=[]"], "finetune.target_modules=[] must be a non-empty list"),
        (["finetune=lora", "+finetune.rank=4"], "finetune=lora: unknown key(s) ['rank']"),
        (["finetune=full", "+finetune.r=4"], "finetune=full: unknown key(s) ['r']"),
        (["finetune=lora", "~finetune.alpha"], "finetune=lora: missing key(s) ['alpha']"),
    ],
)
def test_bad_finetune_values_stop_before_a_model_loads_with_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_config(compose(["model=tiny", *overrides]))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_mode_names_the_modes():
    with pytest.raises(ConfigError, match=r"finetune='qlora' is not one of \['full', 'lora', 'top_layers'\]"):
        parse_finetune({"name": "qlora"})


def test_target_modules_the_model_lacks_fail_after_load_listing_the_ones_it_has():
    model, _ = load_policy(TINY)
    with pytest.raises(ConfigError) as error:
        apply_finetune(model, lora(target_modules=["q_proj", "query_key_value"]))
    text = str(error.value)
    assert "['query_key_value'] are not linear layers" in text and "\n" not in text
    assert all(name in text for name in adaptable_module_names(model)) and "lm_head" not in text


# ------------------------------------------------------------------------------------------------------- counts
def test_parameter_counts_of_each_mode():
    model, _ = load_policy({**TINY, "trainable_layers": 2})
    total = sum(p.numel() for p in model.parameters())
    top_two = sum(p.numel() for p in decoder_layers(model)[2:].parameters()) + model.model.norm.weight.numel()
    top = apply_finetune(model, {"name": "top_layers"})
    assert (top.trainable_params, top.total_params) == (top_two, total)
    assert top.params() == {"model/trainable_params": str(top_two), "model/total_params": str(total)}
    full = apply_finetune(model, {"name": "full"})
    assert (full.trainable_params, full.total_params) == (total, total)

    model, _ = load_policy(TINY)
    adapter = expected_lora_params(model, 4, ["q_proj", "v_proj"])
    applied = apply_finetune(model, lora(target_modules=["q_proj", "v_proj"]))
    assert (applied.trainable_params, applied.total_params) == (adapter, total + adapter)
    trainable = [name for name, p in applied.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in name or "lora_B" in name for name in trainable)


# ----------------------------------------------------------------------------------- LoRA inside the forward paths
def test_logprobs_of_the_lora_model_are_its_forward_log_softmax_and_only_adapters_get_gradients():
    model = tiny_llama()
    policy = apply_finetune(model, lora()).model
    perturb_adapters(policy)
    batch = ragged_batch()
    with torch.no_grad():
        expected, _ = unpadded_reference(policy, *batch)
        with policy.disable_adapter():
            base, _ = unpadded_reference(policy, *batch)
    assert not torch.allclose(expected, base, atol=1e-3)  # the adapters change the numbers checked below
    for shared in (True, False):
        policy.zero_grad(set_to_none=True)
        stats = completion_logprobs(policy, *batch, shared_prefix=shared)
        torch.testing.assert_close(stats.logprobs, expected, rtol=1e-5, atol=1e-5)
        (stats.logprobs * batch[3]).sum().backward()
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                assert p.grad is not None and p.grad.abs().sum() > 0, name
            if not p.requires_grad:
                assert p.grad is None, name


def test_lora_trains_under_activation_checkpointing_with_the_embeddings_frozen():
    model, _ = load_policy({**TINY, "gradient_checkpointing": True})
    policy = apply_finetune(model, lora()).model
    perturb_adapters(policy)
    batch = ragged_batch(groups=2)
    stats = completion_logprobs(policy, *batch)  # the checkpointed decoder turns the shared prefix off by itself
    (stats.logprobs * batch[3]).sum().backward()
    grads = [p.grad for name, p in policy.named_parameters() if "lora_B" in name]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_frozen_base_linears_of_lora_layers_go_bf16_and_compute_the_same_numbers():
    model = tiny_llama()
    policy = apply_finetune(model, lora()).model
    perturb_adapters(policy)
    batch = ragged_batch()
    with torch.no_grad(), autocast("bf16", "cpu"):
        before = completion_logprobs(policy, *batch).logprobs

    changed = store_frozen_linears_in_bf16(policy)

    layers = len(decoder_layers(policy))
    assert changed == layers * len(LORA_TARGETS) + 1  # every adapted base linear, and the untied LM head
    for name, p in policy.named_parameters():
        assert p.dtype == (torch.float32 if p.requires_grad or "embed" in name or "norm" in name else torch.bfloat16), name
    with autocast("bf16", "cpu"):
        stats = completion_logprobs(policy, *batch)
        torch.testing.assert_close(stats.logprobs.detach(), before, rtol=0, atol=0)
        (stats.logprobs * batch[3]).sum().backward()
    grads = [p.grad for name, p in policy.named_parameters() if "lora_B" in name]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_the_kl_reference_is_the_base_model_with_adapters_off_and_the_policy_is_left_as_it_was():
    model = tiny_llama()
    batch = ragged_batch()
    with torch.no_grad():
        base = completion_logprobs(model, *batch).logprobs
    applied = apply_finetune(model, lora())
    perturb_adapters(applied.model)
    reference = applied.reference_model()
    assert reference is not applied.model
    with torch.no_grad():
        adapted = completion_logprobs(applied.model, *batch).logprobs
        with applied.reference_scope():
            ref = completion_logprobs(reference, *batch).logprobs
        after = completion_logprobs(applied.model, *batch).logprobs
    torch.testing.assert_close(ref, base, rtol=0, atol=0)
    assert not torch.allclose(adapted, base, atol=1e-3)
    torch.testing.assert_close(after, adapted, rtol=0, atol=0)
    assert applied.model.training  # the scope puts train mode back

    full = apply_finetune(tiny_llama(), {"name": "full"})
    copied = full.reference_model()
    assert copied is not full.model and not any(p.requires_grad for p in copied.parameters())


# ------------------------------------------------------------------------------------------------ merged weights
def test_merged_state_dict_loads_into_the_plain_model_and_computes_the_adapted_outputs():
    model, tokenizer = load_policy(TINY)
    names = list(model.state_dict())
    config = model.config
    applied = apply_finetune(model, lora())
    perturb_adapters(applied.model)
    applied.model.eval()
    merged = merged_state_dict(applied.model)
    assert sorted(merged) == sorted(names)

    from transformers import LlamaForCausalLM

    plain = LlamaForCausalLM(config).eval()
    plain.load_state_dict(merged, strict=True)
    ids = tokenizer(["What is 3 + 4?", "Say hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        adapted = applied.model(**ids).logits
        base_only = None
        with applied.model.disable_adapter():
            base_only = applied.model(**ids).logits
        torch.testing.assert_close(plain(**ids).logits, adapted, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(adapted, base_only, atol=1e-3)
    assert any("lora_A" in name for name, _ in applied.model.named_parameters())  # merging left the model as it was

    untouched, _ = load_policy(TINY)
    assert merged_state_dict(untouched).keys() == untouched.state_dict().keys()


# ------------------------------------------------------------------------------------------------------ whole runs
def _alternating_rewards(problems, texts):
    """Stands in for the verifier: every group of completions gets rewards 0, 1, 0, 1, ..., so every group carries a
    gradient (a random model scores 0 everywhere, which would leave the adapters untouched)."""
    return [float(i % 2) for i in range(len(texts))]


def _trainer(tmp_path, model: str, finetune: list[str], **extra):
    from passk_exp.trainer import Trainer

    cfg = compose([*tiny_overrides(tmp_path, model=model, **extra), *finetune])
    validate_config(cfg)
    trainer = Trainer(cfg)
    trainer.bench.score = _alternating_rewards
    return trainer


RUNS = [
    pytest.param("tiny", ["finetune=lora", "finetune.r=4"], {}, id="tiny-lora"),
    pytest.param("tiny", ["finetune=full"], {}, id="tiny-full", marks=pytest.mark.slow),
    pytest.param(
        "tiny", ["finetune=top_layers", "model.trainable_layers=1"], {}, id="tiny-top_layers", marks=pytest.mark.slow
    ),
    pytest.param(
        "smollm2_135m",
        ["finetune=lora"],
        {"n": 2, "train.prompts_per_step": 1, "rollout.max_new_tokens": 4, "n_eval": 1, "benchmark.eval_size": 1},
        id="smollm2-lora",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("model, finetune, extra", RUNS)
def test_a_run_trains_logs_its_counts_checkpoints_what_trains_and_resumes_to_the_same_weights(
    tmp_path, mlflow_client, model, finetune, extra
):
    trainer = _trainer(tmp_path, model, finetune, **extra)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.run()

    run = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("test").experiment_id])[0]
    assert run.info.status == "FINISHED"
    for key in ("train/loss", "train/reward_mean"):
        assert [m.step for m in mlflow_client.get_metric_history(run.info.run_id, key)] == [1, 2], key
    base, _ = load_policy(compose([f"model={model}"]).model, seed=0)
    base_total = sum(p.numel() for p in base.parameters())
    trainable = sum(p.numel() for p in before.values())
    if "finetune=lora" in finetune:
        r = trainer.cfg.finetune.r
        assert trainable == expected_lora_params(base, r, trainer.cfg.finetune.target_modules)
        assert all("lora_A" in name or "lora_B" in name for name in before)
        total = base_total + trainable
    else:
        total = base_total
    params = run.data.params
    assert (int(params["model/trainable_params"]), int(params["model/total_params"])) == (trainable, total)
    print(f"{model} {' '.join(finetune)}: trainable {trainable:,} of {total:,} = {trainable / total:.4%}")

    moved = [name for name, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[name])]
    assert moved, "no trainable parameter changed in two steps"
    (checkpoint,) = (tmp_path / "ckpt").rglob("last.pt")  # the run's own <run key>/<run id>/ directory
    saved = torch.load(checkpoint, weights_only=False)
    assert set(saved["model"]) == set(before)  # only what trains: the adapter alone with LoRA
    assert len(saved["optimizer"]["state"]) == len(before)
    print(f"checkpoint: {checkpoint.stat().st_size:,} bytes")

    resumed = _trainer(tmp_path, model, finetune, resume="true", **extra)
    resumed.run()  # restores step 2 of 2: nothing left to train
    assert resumed.step == 2
    finished = dict(trainer.model.named_parameters())
    again = dict(resumed.model.named_parameters())
    assert finished.keys() == again.keys()
    for name, p in again.items():
        assert torch.equal(p, finished[name]), name


@pytest.mark.slow
def test_a_lora_run_with_the_kl_regularizer_measures_kl_to_the_base_model(tmp_path, mlflow_client):
    trainer = _trainer(tmp_path, "tiny", ["finetune=lora", "finetune.r=4", "regularizer=kl", "regularizer.beta=0.1"])
    trainer.run()
    run = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("test").experiment_id])[0]
    kl = {m.step: m.value for m in mlflow_client.get_metric_history(run.info.run_id, "train/kl")}
    assert sorted(kl) == [1, 2]
    assert abs(kl[1]) < 1e-6  # B = 0 at the start: the adapted policy is the base model
    assert kl[2] > 0  # after one update the adapters are on for the policy and off for the reference
