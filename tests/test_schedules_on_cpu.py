"""K schedules: fixed, piecewise-constant annealing (PKPO) and adaptive K (docs/methods.md §8)."""

import pytest

from passk_exp.schedules import adaptive_k, anneal_k, fixed


def test_fixed():
    assert fixed(8) == 8
    with pytest.raises(ValueError, match="k=0 must be an integer >= 1"):
        fixed(0)


def test_anneal_follows_the_last_started_piece():
    w = [(0, 8), (1500, 1)]  # W's run
    assert [anneal_k(s, w) for s in (0, 1, 1499, 1500, 10**6)] == [8, 8, 8, 1, 1]
    assert anneal_k(7, [[0, 4], [5, 2], [7, 16]]) == 16  # lists from YAML work too


@pytest.mark.parametrize(
    "step, schedule, match",
    [
        (0, [], "non-empty"),
        (0, [(1, 8)], "first must be 0"),
        (0, [(0, 8), (0, 2)], "strictly increasing"),
        (0, [(0, 0)], "schedule k=0"),
        (-1, [(0, 8)], "step=-1"),
        (0, [(0, 8, 1)], "pairs"),
    ],
)
def test_anneal_rejects_bad_schedules(step, schedule, match):
    with pytest.raises(ValueError, match=match):
        anneal_k(step, schedule)


def test_adaptive_k_rounds_half_up_and_clips():
    assert adaptive_k(0.0, 1, 16, 0.5) == 1
    assert adaptive_k(0.5, 1, 16, 0.5) == 16
    assert adaptive_k(0.9, 1, 16, 0.5) == 16  # clip(p/p_target) at 1
    assert adaptive_k(-0.2, 2, 16, 0.5) == 2
    assert adaptive_k(0.25, 1, 8, 0.5) == 5  # 1 + 7·0.5 = 4.5 → 5 (half up)
    assert adaptive_k(0.25, 2, 8, 0.5) == 5  # 2 + 3 = 5
    assert adaptive_k(0.1, 1, 16, 0.5) == 4  # 1 + 15·0.2 = 4.0
    assert adaptive_k(0.5, 1, 64, 0.5, n=16) == 16  # clipped to n for methods needing K ≤ n
    assert adaptive_k(0.5, 4, 4, 0.3) == 4


@pytest.mark.parametrize(
    "args, match",
    [((0.1, 4, 2, 0.5), "k_min=4 > k_max=2"), ((0.1, 0, 2, 0.5), "k_min=0"), ((0.1, 1, 2, 0.0), "p_target=0.0"),
     ((float("nan"), 1, 2, 0.5), "p_t=nan"), ((0.1, 1, 2, 0.5, 0), "n=0")],
)
def test_adaptive_k_rejects_bad_settings(args, match):
    with pytest.raises(ValueError, match=match):
        adaptive_k(*args)
