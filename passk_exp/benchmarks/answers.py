"""Final-answer extraction from free text: the GSM8K `#### 42` form, the last `\\boxed{...}`, the last number.

Pure string functions (no sympy): the symbolic comparison of what they extract is `mathcheck.py`'s job. Numbers may
carry a sign, thousands separators ("1,000") and decimals; a trailing sentence period is not part of a number.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Optional

# A number: optional minus, then either comma-grouped thousands (1,234,567) or plain digits, then optional decimals.
# The lookbehind keeps "x2" or "3.14.15" fragments from yielding a number glued to a word.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_HASHES = re.compile(r"####\s*([^\n]*)")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_number(text: str) -> Optional[str]:
    """The last number in `text`, without thousands separators ("1,000" -> "1000"), or None."""
    matches = _NUMBER.findall(text)
    return matches[-1].replace(",", "") if matches else None


def to_fraction(number: str) -> Optional[Fraction]:
    """Exact value of a decimal string ("8.0" and "8" are equal), or None when it is not a number."""
    try:
        return Fraction(Decimal(number.replace(",", "").strip()))
    except (InvalidOperation, ValueError):
        return None


def canonical_answer(answer: str) -> str:
    """A plain decimal number as its exact value ("8.0", "8" and "1,000.00" -> "8", "8", "1000"; "0.5" -> "1/2"),
    anything else (expressions, exponents, words) stripped verbatim."""
    stripped = answer.strip()
    value = to_fraction(stripped) if _NUMBER.fullmatch(stripped) else None
    return str(value) if value is not None else stripped


def numbers_equal(a: str, b: object) -> bool:
    """Exact numeric equality of two decimal strings (or a string and an int/Fraction)."""
    left = to_fraction(a)
    right = b if isinstance(b, (int, Fraction)) else to_fraction(str(b))
    return left is not None and right is not None and left == right


def hash_answer(text: str) -> Optional[str]:
    """The GSM8K reference form: the text after the last `####` on its line, or None."""
    matches = _HASHES.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip()
    return answer or None


def last_boxed(text: str) -> Optional[str]:
    """Contents of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced, or None."""
    starts = [m.end() for m in _BOX.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
        # unbalanced: try an earlier box
    return None


def final_answer(text: str) -> Optional[str]:
    """GSM8K-style final answer of a completion: `####` form, else the last boxed answer, else the last number.

    The `####` and boxed forms are reduced to their last number when they contain one ("#### $1,200." -> "1200"),
    and kept verbatim otherwise (so a boxed fraction still reaches the symbolic check).
    """
    for candidate in (hash_answer(text), last_boxed(text)):
        if candidate is not None:
            number = last_number(candidate.replace("$", " "))
            return number if number is not None and _only_number(candidate) else candidate
    return last_number(text)


def _only_number(candidate: str) -> bool:
    """True when the candidate is a single number dressed in units/currency/punctuation, not an expression."""
    stripped = _NUMBER.sub("#", candidate.replace("\\$", " ").replace("$", " "))
    return stripped.count("#") == 1 and not re.search(r"[\\/^*+=]|\d", stripped)
