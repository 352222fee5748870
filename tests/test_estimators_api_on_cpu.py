"""The estimator interface: registry, params, flags, one-line ValueErrors, state, dtype/device, properties."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from passk_exp import estimators as E
from passk_exp.estimators import REGISTRY, compute_advantages
from passk_exp.estimators import compute_advantages as ca

F64 = torch.float64
NAMES = {
    "reinforce", "rloo", "grpo", "reinforce_k", "rloo_k", "grpo_k", "wk25", "passk_shaping", "passk_mix", "skew_r",
    "entropy_reg", "biased_k", "pkpo", "pkpo_loo", "pkpo_loo_minus_one", "passk_multi",
}
NEEDS_K_LE_N = {"reinforce_k", "rloo_k", "grpo_k", "passk_shaping", "passk_mix", "wk25", "pkpo", "pkpo_loo",
                "pkpo_loo_minus_one"}
BINARY_ONLY = {"reinforce_k", "rloo_k", "grpo_k", "passk_shaping", "passk_mix", "wk25", "passk_multi"}
UNIT = {"skew_r", "entropy_reg", "biased_k"}


def _ones(b=2, n=4):
    r = torch.zeros(b, n, dtype=F64)
    r[:, 0] = 1.0
    return r


def test_registry_holds_exactly_the_issue_methods_with_their_flags():
    assert NAMES <= set(REGISTRY)
    for m in NAMES:
        assert E.needs_k_le_n(m) == (m in NEEDS_K_LE_N), m
        assert E.is_binary_only(m) == (m in BINARY_ONLY), m
        assert E.reward_domain(m) == ("binary" if m in BINARY_ONLY else "unit" if m in UNIT else "real"), m


def test_method_params_names_and_spec_defaults():
    assert E.method_params("grpo") == {"std_ddof": 0, "eps": 1e-6}
    assert E.method_params("rloo_k") == {"k_factor": True}
    assert E.method_params("passk_mix") == {"variant": "shaping", "std_ddof": 0, "eps": 1e-6}
    assert E.method_params("entropy_reg")["lam"] == 0.1
    assert E.method_params("biased_k") == {
        "k_factor": True, "base": "grpo", "p_hat": "group", "std_ddof": 0, "eps": 1e-6
    }
    assert E.method_params("passk_multi") == {"ks": (1, 4, 16, 64), "weights": None}
    assert E.method_params("pkpo") == {}
    E.method_params("grpo")["eps"] = 5.0  # a fresh dict every time
    assert E.method_params("grpo")["eps"] == 1e-6


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ca("grpo_x", _ones(), 1), r"method='grpo_x' is not a registered .*'biased_k'"),
        (lambda: ca("rloo", _ones(), 1, eps=1e-6), r"unknown param\(s\) \['eps'\]; it takes no params"),
        (lambda: ca("grpo", _ones(), 1, k_factor=True), r"unknown param\(s\) \['k_factor'\]"),
        (lambda: ca("grpo", _ones(), 1, std_ddof=2), r"std_ddof=2 must be 0"),
        (lambda: ca("grpo", _ones(), 1, eps=-1.0), r"eps=-1.0 must be a finite real >= 0"),
        (lambda: ca("rloo_k", _ones(), 2, k_factor="yes"), r"k_factor='yes' must be true or false"),
        (lambda: ca("passk_mix", _ones(), 2, variant="mix"), r"variant='mix' is not one of"),
        (lambda: ca("biased_k", _ones(), 2, base="ppo"), r"base='ppo' is not one of"),
        (lambda: ca("biased_k", _ones(), 2, p_hat="x"), r"p_hat='x' is not one of"),
        (lambda: ca("biased_k", _ones(), 2, base="rloo", eps=0.1), r"only apply to base='grpo'"),
        (lambda: ca("entropy_reg", _ones(), 2, lam=float("nan")), r"lam=nan must be"),
        (lambda: ca("passk_multi", _ones(), 2, ks=[0, 4]), r"ks=\[0, 4\] must be a non-empty"),
        (lambda: ca("passk_multi", _ones(), 2, ks=[1, 1]), r"repeats a k"),
        (lambda: ca("passk_multi", _ones(), 2, weights=[1.0]), r"weights has 1 entries but ks"),
        (lambda: ca("rloo_k", _ones(2, 16), 17), r"^k=17 > n=16 samples per prompt: .*raise n or lower K$"),
        (lambda: ca("pkpo", _ones(), 0), r"k=0 must be >= 1"),
        (lambda: ca("grpo", _ones(), 0), r"k=0 must be >= 1"),
        (lambda: ca("pkpo", _ones(), 2.0), r"k=2.0 must be an integer"),
        (lambda: ca("pkpo", _ones(), True), r"k=True must be an integer"),
        (lambda: ca("grpo", torch.zeros(4), 1), r"must be 2-D \[B, n\].*got shape \(4,\)"),
        (lambda: ca("grpo", torch.zeros(2, 3, 4), 1), r"got shape \(2, 3, 4\)"),
        (lambda: ca("grpo", torch.zeros(2, 3, dtype=torch.long), 1), r"dtype torch.int64 is not floating"),
        (lambda: ca("grpo", [[1.0, 0.0]], 1), r"must be a torch.Tensor"),
        (lambda: ca("rloo", torch.zeros(3, 1), 1), r"^n=1 samples per prompt: method='rloo' needs n >= 2"),
        (lambda: ca("pkpo_loo", torch.zeros(3, 1), 1), r"needs n >= 2"),
        (lambda: ca("biased_k", torch.zeros(3, 1), 4, base="rloo"), r"needs n >= 2"),
        (lambda: ca("grpo", torch.tensor([[0.0, float("nan")]]), 1), r"non-finite value nan at \[0, 1\]"),
        (lambda: ca("pkpo", torch.tensor([[0.0, float("inf")]]), 1), r"non-finite value inf"),
        (lambda: ca("rloo_k", torch.tensor([[0.0, 0.5]]), 1), r"0.5 at \[0, 1\] .* needs binary"),
        (lambda: ca("skew_r", torch.tensor([[0.0, 1.5]]), 1), r"1.5 at \[0, 1\] .* in \[0, 1\]"),
        (lambda: ca("biased_k", torch.tensor([[-0.1, 1.0]]), 1), r"-0.1.* in \[0, 1\]"),
        (lambda: ca("grpo", _ones(), 1, state=object()), r"takes no state= argument \(only \['biased_k'\]"),
        (lambda: ca("biased_k", _ones(), 2, state=E.BiasedKState("ema")), r"only used with p_hat='ema' or 'global'"),
        (
            lambda: ca("biased_k", _ones(), 2, p_hat="global", state=E.BiasedKState("ema")),
            r"BiasedKState with p_hat='global'",
        ),
        (lambda: E.needs_k_le_n("nope"), r"not a registered estimator"),
        (lambda: E.make_state("biased_k", {"p_hat": "ema", "bogus": 1}), r"unknown param\(s\) \['bogus'\]"),
    ],
)
def test_bad_input_raises_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_k_above_n_is_allowed_where_the_spec_allows_it():
    r = _ones(2, 4)
    for m in ("biased_k", "passk_multi", "reinforce", "rloo", "grpo", "skew_r", "entropy_reg"):
        out = compute_advantages(m, r, 64)
        assert out.shape == r.shape and torch.isfinite(out).all(), m


def test_resolve_method_dispatches_pkpo_loo_minus_one_at_k1_to_rloo():
    assert E.resolve_method("pkpo_loo_minus_one", 1) == "rloo"
    assert E.resolve_method("pkpo_loo_minus_one", 2) == "pkpo_loo_minus_one"
    assert E.resolve_method("grpo", 1) == "grpo"
    with pytest.raises(ValueError, match="not a registered"):
        E.resolve_method("nope", 1)


def test_empty_batch_and_dtype_and_float32_accuracy():
    assert compute_advantages("pkpo", torch.zeros(0, 4), 2).shape == (0, 4)
    gen = torch.Generator().manual_seed(0)
    r64 = (torch.rand(32, 8, generator=gen) < 0.5).double()
    for m in sorted(NAMES):
        a64 = compute_advantages(m, r64, 3)
        a32 = compute_advantages(m, r64.float(), 3)
        assert a32.dtype == torch.float32 and a64.dtype == F64
        assert torch.allclose(a32.double(), a64, rtol=1e-5, atol=1e-5), m


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(0)
    r = (torch.rand(64, 16, generator=gen) < 0.3).double()
    for m in sorted(NAMES):
        for dtype in (torch.float32, F64):
            out = compute_advantages(m, r.to("cuda", dtype), 5)
            assert out.device.type == "cuda" and out.dtype == dtype
            assert torch.allclose(out.cpu().double(), compute_advantages(m, r.to(dtype), 5).double(), atol=1e-5), m


# ------------------------------------------------------------------------------------------------------ state
def test_make_state_only_for_stateful_p_hat():
    assert E.make_state("grpo", {}) is None
    assert E.make_state("biased_k", {}) is None
    assert isinstance(E.make_state("biased_k", {"p_hat": "ema"}), E.BiasedKState)
    assert E.make_state("biased_k", {"p_hat": "global"}).p_hat == "global"


def test_ema_and_global_semantics_and_checkpoint_round_trip():
    ema = E.make_state("biased_k", {"p_hat": "ema"})
    glob = E.make_state("biased_k", {"p_hat": "global"})
    b1 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # mean 1/4
    b2 = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])  # mean 3/4
    for b in (b1, b2):
        compute_advantages("biased_k", b, 2, p_hat="ema", state=ema)
        compute_advantages("biased_k", b, 2, p_hat="global", state=glob)
    assert ema.p == pytest.approx(0.9 * 0.25 + 0.1 * 0.75)  # first call initialises, value after update used
    assert glob.p == pytest.approx((1 + 6) / 12)
    restored = E.BiasedKState("ema")
    restored.load_state_dict(ema.state_dict())
    b3 = torch.tensor([[0.0, 1.0, 0.5, 0.5]])
    assert torch.equal(
        compute_advantages("biased_k", b3, 3, p_hat="ema", state=ema),
        compute_advantages("biased_k", b3, 3, p_hat="ema", state=restored),
    )
    # One α for the whole batch: A = K(1 − p̂)^{K−1}·A^GRPO with the state's p̂.
    out = compute_advantages("biased_k", b3, 3, p_hat="ema", state=restored)
    assert torch.allclose(out, 3 * (1 - restored.p) ** 2 * compute_advantages("grpo", b3, 3))
    with pytest.raises(ValueError, match="p_hat='global' but this run uses p_hat='ema'"):
        E.BiasedKState("ema").load_state_dict(glob.state_dict())


def test_ema_per_prompt_ids_and_stateless_call():
    state = E.BiasedKState("ema")
    r = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    compute_advantages("biased_k", r, 2, p_hat="ema", state=state, prompt_ids=["a", "b", "a"])
    assert state.p_by_id == {"a": pytest.approx(0.75), "b": pytest.approx(0.25)}
    compute_advantages("biased_k", r[:1], 2, p_hat="ema", state=state, prompt_ids=["b"])
    assert state.p_by_id["b"] == pytest.approx(0.9 * 0.25 + 0.1 * 0.5)
    with pytest.raises(ValueError, match="prompt_ids has 1 entries but rewards has B=3"):
        compute_advantages("biased_k", r, 2, p_hat="ema", state=state, prompt_ids=["a"])
    # Without state=, 'ema' behaves like the first call of a run: p̂ = the batch mean.
    fresh = compute_advantages("biased_k", r, 2, p_hat="ema")
    assert torch.allclose(fresh, 2 * (1 - r.mean()) * compute_advantages("grpo", r, 2))


# ------------------------------------------------------------------------------------------------- registration
def test_registering_a_different_function_under_a_taken_name_raises():
    with pytest.raises(ValueError, match="'grpo' is already registered"):
        E.register("grpo", rewards="real", needs_k_le_n=False)(lambda rewards, k: rewards)
    fn = REGISTRY["rloo"]
    assert E.register("rloo", rewards="real", needs_k_le_n=False)(fn) is fn  # same function: no-op


# ------------------------------------------------------------------------------------------------- properties
def _rewards(draw, n, domain):
    b = draw(st.integers(1, 4))
    if domain == "binary":
        vals = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=b * n, max_size=b * n))
    else:
        vals = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0, 1), min_size=b * n, max_size=b * n))
    return torch.tensor(vals, dtype=F64).view(b, n)


@st.composite
def cases(draw):
    method = draw(st.sampled_from(sorted(NAMES)))
    n = draw(st.integers(2, 12))
    k = draw(st.integers(1, n))
    r = _rewards(draw, n, E.reward_domain(method))
    return method, r, k


@settings(max_examples=150, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_shape_dtype_finiteness_and_permutation_equivariance(case, rnd):
    method, r, k = case
    out = compute_advantages(method, r, k)
    assert out.shape == r.shape and out.dtype == r.dtype and torch.isfinite(out).all()
    perm = list(range(r.shape[1]))
    rnd.shuffle(perm)
    permuted = compute_advantages(method, r[:, perm], k)
    assert torch.allclose(permuted, out[:, perm], rtol=1e-12, atol=1e-12)
    # Rows are independent: the first row alone gives the same advantages.
    assert torch.allclose(compute_advantages(method, r[:1], k), out[:1], rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["rloo", "grpo", "pkpo_loo_minus_one"]), st.integers(2, 10), st.data())
def test_shift_invariance_of_baselined_real_reward_methods(method, n, data):
    k = data.draw(st.integers(2 if method == "pkpo_loo_minus_one" else 1, n))
    vals = data.draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n))
    shift = data.draw(st.floats(-100, 100))
    r = torch.tensor([vals], dtype=F64)
    assert torch.allclose(compute_advantages(method, r + shift, k), compute_advantages(method, r, k), atol=1e-9)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(sorted(NAMES)), st.sampled_from([1, 2, 31, 512, 1023, 1024]), st.data())
@example(method="passk_shaping", k=1024, data=None)
def test_finite_up_to_n_equals_k_equals_1024(method, k, data):
    n = 1024
    c = torch.tensor([0, 1, 2, 511, 1022, 1023, 1024])
    r = (torch.arange(n)[None, :] < c[:, None]).double()
    if E.reward_domain(method) != "binary":
        r[0] = torch.linspace(0, 1, n)
    out = compute_advantages(method, r, k)
    assert torch.isfinite(out).all() and out.shape == r.shape
