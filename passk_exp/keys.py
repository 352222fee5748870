"""One wording for a mapping that holds keys it does not accept: every config validator (top level, groups, model,
rollout, finetune, toy-lab population) refuses an unknown key with the same one line, so a typo reads the same
wherever it is made."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def refuse_unknown_keys(where: str, given: Iterable[str], allowed: Iterable[str], error: type[Exception] = ValueError) -> None:
    """Raise `error` when `given` holds a key outside `allowed`, with one line that names `where`, the unknown keys,
    the allowed key nearest the first of them (a typo) and every allowed key, e.g.
    `train: unknown key(s) ['lrr'] (did you mean 'lr'?); allowed: ['betas', 'lr', ...]`."""
    allowed = sorted(set(allowed))
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise error(f"{where}: unknown key(s) {unknown}{hint}; allowed: {allowed}")
