"""Symbolic answer checking with `math-verify`: a reference answer against a completion, as a 0/1 reward.

Numbers compare exactly without sympy (fast path: most GSM8K answers); everything else goes through math-verify,
which handles fractions, radicals, intervals, sets and LaTeX variants (\\dfrac, \\tfrac, \\left(, units). The functions
are module-level and picklable so the verifier pool can run them in worker processes. This file does not extract
answers from text beyond what `answers.py` offers and math-verify's own boxed / "final answer" anchors.
"""

from __future__ import annotations

import threading
from typing import Optional

from passk_exp.benchmarks.answers import final_answer, last_boxed, to_fraction

# Seconds math-verify may spend parsing / comparing one answer. Its timeouts use SIGALRM, which only the main thread of
# a process may set: in pool workers that always holds; inline calls from another thread run without a timeout.
PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5


def _timeout(seconds: int) -> Optional[int]:
    return seconds if threading.current_thread() is threading.main_thread() else None


def _as_latex(answer: str) -> str:
    """Wrap a bare reference answer in $...$ so math-verify reads it as LaTeX ("\\frac12", "[1,2)")."""
    stripped = answer.strip()
    return stripped if "$" in stripped or "\\boxed" in stripped else f"${stripped}$"


def parse_answer(text: str) -> list:
    from math_verify import parse

    return parse(text, parsing_timeout=_timeout(PARSE_TIMEOUT_S))


def equivalent(reference: str, candidate: str) -> bool:
    """True when `candidate` (an extracted answer, or a whole completion) equals `reference` symbolically."""
    from math_verify import verify

    ref_num, cand_num = to_fraction(reference), to_fraction(candidate)
    if ref_num is not None and cand_num is not None:
        return ref_num == cand_num
    gold = parse_answer(_as_latex(reference))
    if not gold:
        raise ValueError(f"math-verify could not parse the reference answer {reference!r}")
    target = parse_answer(_as_latex(candidate))
    return bool(target) and bool(verify(gold, target, timeout_seconds=_timeout(VERIFY_TIMEOUT_S)))


def score_gsm8k(reference: str, completion: str) -> float:
    """GSM8K reward: the completion's final answer (`####`, boxed, last number) equals the reference. 0/1."""
    candidate = final_answer(completion)
    return float(candidate is not None and equivalent(reference, candidate))


def score_math(reference: str, completion: str) -> float:
    """MATH reward: the last \\boxed{} answer equals the reference symbolically; without a box, math-verify's own
    extraction over the whole completion ("the final answer is ..."). 0/1."""
    from math_verify import verify

    boxed = last_boxed(completion)
    if boxed is not None:
        return float(equivalent(reference, boxed))
    gold = parse_answer(_as_latex(reference))
    if not gold:
        raise ValueError(f"math-verify could not parse the reference answer {reference!r}")
    target = parse_answer(completion)
    return float(bool(target) and verify(gold, target, timeout_seconds=_timeout(VERIFY_TIMEOUT_S)))
