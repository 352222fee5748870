"""Keep freed heap memory inside the process (glibc malloc), so that an RL step on CPU reuses its previous step's pages.

Why: glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh `mmap` and
returns it to the kernel on `free`. A CPU RL step allocates hundreds of such tensors (logits of 64 × 49k vocabulary,
activations, gradients) and frees them again, so every step takes a page fault, and the kernel zeroes a page, for
every 4 KiB it touches. With mmap off and the trim threshold at its maximum, large blocks come from the heap and stay
there when freed, and later steps reuse most of them. Measured on SmolLM2-135M, experiment=trl_parity, 2 cores
(bench/RESULTS.md): minor page faults of a 4-step benchmark 5.9-6.2 M -> 1.5 M, a bf16 step 17.5-18.8 s -> 13.6-15.8 s
in alternating runs, peak RSS 5.4 GB -> 5.65 GB.

It is process-wide and only affects later allocations. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1  # mallopt takes a C int: the largest trim threshold it accepts (2 GiB)


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Turn off glibc's mmap for large blocks and trimming of the heap top, for the rest of the process.
    Returns True when glibc accepted both settings, False where there is no glibc (nothing changed)."""
    libc = _glibc()
    if libc is None:
        log.info("keep_freed_memory: not a glibc system, allocator left as it is")
        return False
    accepted = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    if not accepted:
        log.warning("keep_freed_memory: glibc mallopt refused the settings; allocator left as it is")
    return accepted
