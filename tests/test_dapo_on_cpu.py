"""DAPO's options and Dr. GRPO's aggregation: clip-higher and token_sum in the loss, overlong filtering, dynamic
sampling of zero-variance groups (passk_exp/dapo.py), and both options through one real trainer step (tiny model)."""

import pytest
import torch

from conftest import compose, tiny_overrides
from passk_exp.config import LOSS_AGGREGATIONS, ConfigError, validate_config
from passk_exp.dapo import overlong_keep, replace_groups, resample_zero_variance, zero_variance_groups
from passk_exp.loss import AGGREGATIONS, batch_denominator, policy_gradient_loss
from passk_exp.rollout.base import RolloutBatch


def test_one_list_of_aggregations():
    assert AGGREGATIONS is LOSS_AGGREGATIONS and "token_sum" in AGGREGATIONS


def test_token_sum_sums_each_completion_and_averages_over_completions():
    lp = (-torch.rand(2, 3, 5, dtype=torch.float64)).requires_grad_(True)
    mask = torch.ones(2, 3, 5, dtype=torch.long)
    mask[0, 0, 2:] = 0
    adv = torch.randn(2, 3, dtype=torch.float64)
    denom = batch_denominator("token_sum", mask, max_new_tokens=5)
    assert denom == 6
    policy_gradient_loss(lp, lp.detach(), adv, mask, clip_eps=0.2, agg="token_sum", denominator=denom).loss.backward()
    torch.testing.assert_close(lp.grad, -adv[..., None] * mask / 6)
    # the same direction as `constant`, max_new_tokens times larger
    assert denom * 5 == batch_denominator("constant", mask, max_new_tokens=5)


@pytest.mark.parametrize("log_ratio,adv,clipped", [(0.25, 1.0, False), (0.35, 1.0, True), (-0.25, -1.0, True)])
def test_clip_higher_widens_only_the_upper_side(log_ratio, adv, clipped):
    # ratio e^0.25 = 1.28 < 1 + 0.3: inside the raised upper bound; e^0.35 = 1.42: outside; e^-0.25 = 0.78 < 1 - 0.2
    lp = torch.full((1, 1, 1), log_ratio, dtype=torch.float64, requires_grad=True)
    parts = policy_gradient_loss(
        lp, torch.zeros(1, 1, 1, dtype=torch.float64), torch.tensor([[adv]], dtype=torch.float64),
        torch.ones(1, 1, 1, dtype=torch.long), clip_eps=0.2, clip_eps_high=0.3, agg="constant", denominator=1.0,
    )
    parts.loss.backward()
    assert (float(lp.grad.abs().sum()) == 0.0) == clipped
    assert float(parts.clip_fraction) == float(clipped)


def _batch(lengths: list[list[int]], width: int = 4, prompt: int = 2) -> RolloutBatch:
    lengths_t = torch.tensor(lengths)
    groups, n = lengths_t.shape
    mask = (torch.arange(width)[None, None, :] < lengths_t[..., None]).long()
    return RolloutBatch(
        torch.full((groups, prompt), 7), torch.ones(groups, prompt, dtype=torch.long),
        torch.arange(groups * n * width).view(groups, n, width) * mask, mask,
        [[f"g{g}s{i}" for i in range(n)] for g in range(groups)],
        lengths_t >= width,  # truncated: used the whole budget (these stand-ins have no EOS)
    )


def test_overlong_keep_drops_completions_that_hit_the_cap():
    assert overlong_keep(_batch([[4, 1], [3, 4]], width=4)).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_replace_groups_pads_both_layouts():
    old = _batch([[1, 2], [2, 2], [1, 1]], width=2, prompt=2)
    new = _batch([[3, 1]], width=3, prompt=4)
    out = replace_groups(old, torch.tensor([1]), new)
    assert out.completion_ids.shape == (3, 2, 3) and out.prompt_ids.shape == (3, 4)
    assert out.completion_lengths().tolist() == [[1, 2], [3, 1], [1, 1]]
    assert out.prompt_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]]  # left padding kept on the left
    assert out.texts[1] == ["g0s0", "g0s1"] and out.texts[0] == ["g0s0", "g0s1"] and old.texts[1] == ["g1s0", "g1s1"]
    assert old.completion_lengths().tolist() == [[1, 2], [2, 2], [1, 1]]  # the input batch is left as it was


def test_resample_regenerates_only_zero_variance_groups_up_to_the_budget():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert zero_variance_groups(rewards).tolist() == [1, 2]
    calls = []
    draws = iter([torch.tensor([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 0.0]])])

    def regenerate(index):
        calls.append(index)
        return _batch([[1, 1]] * len(index)), next(draws)

    batch, out, count = resample_zero_variance(_batch([[1, 1]] * 3), rewards, regenerate, max_rounds=2)
    assert calls == [[1, 2], [2]] and count == 3  # round 1 fixes group 1; round 2 retries group 2; budget spent
    assert out.tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]] and rewards[1].tolist() == [0.0, 0.0]
    _, _, none = resample_zero_variance(_batch([[1, 1]]), torch.tensor([[0.0, 1.0]]), regenerate, max_rounds=5)
    assert none == 0


def test_bad_values_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="clip_eps_high=-0.1 must be > 0"):
        validate_config(compose(["model=tiny", "train.clip_eps_high=-0.1"]))
    with pytest.raises(ConfigError, match="dynamic_sampling_max_rounds=-1 must be >= 0"):
        validate_config(compose(["model=tiny", "train.dynamic_sampling_max_rounds=-1"]))
    with pytest.raises(ConfigError, match="loss_agg='sum' is not one of"):
        validate_config(compose(["model=tiny", "train.loss_agg=sum"]))


def test_one_trainer_step_with_every_option(tmp_path):
    from passk_exp.trainer import Trainer

    cfg = compose(tiny_overrides(
        tmp_path, method="dr_grpo", **{
            "train.loss_agg": "token_sum", "train.clip_eps_high": 0.28, "train.overlong_filter": "true",
            "train.dynamic_sampling_max_rounds": 2, "tracking.enabled": "false", "rollout.max_new_tokens": 3,
        },
    ))
    validate_config(cfg)
    trainer = Trainer(cfg)
    problems = [next(trainer.bench.train_stream(0)) for _ in range(2)]
    metrics = trainer.train_step(problems)
    # a random tiny model almost never answers: its groups are all-zero, so both get regenerated, twice
    assert 0 <= metrics["train/resampled_groups"] <= 4
    assert metrics["train/resampled_groups"] == 4 or metrics["train/informative_groups"] > 0
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
