"""keep_freed_memory: glibc gets the two settings (no mmap for large blocks, no trimming of the heap top) and the
trainer's `keep_freed_memory` switch decides whether they are applied.

What the settings do to page faults and step times depends on the kernel and the machine's day: that is measured by
bench/allocator.py (bench/RESULTS.md), never asserted here. These tests read glibc's own bookkeeping instead
(mallinfo2: how many blocks it serves by mmap, how many free bytes it keeps), which follows from the settings alone.
"""

import json
import platform
import subprocess
import sys
import textwrap

import pytest
from conftest import compose, tiny_overrides

from passk_exp.allocator import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A child process: the malloc settings are process-wide, so the default case must start clean. 64 MiB is above
# glibc's largest mmap threshold (32 MiB), so by default it is always served by mmap and returned on free.
PROBE = textwrap.dedent(
    """
    import ctypes, json, sys
    from passk_exp.allocator import keep_freed_memory

    libc = ctypes.CDLL(None)
    names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    # mallinfo2 (glibc >= 2.33) has size_t fields; older glibc only has mallinfo with int fields (fine below 2 GiB).
    field = ctypes.c_size_t if hasattr(libc, "mallinfo2") else ctypes.c_int
    Mallinfo = type("Mallinfo", (ctypes.Structure,), {"_fields_": [(name, field) for name in names]})
    mallinfo = getattr(libc, "mallinfo2", None) or libc.mallinfo
    mallinfo.restype = Mallinfo
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    size = 64 << 20
    before = mallinfo()
    block = libc.malloc(size)
    held = mallinfo()
    libc.free(block)
    freed = mallinfo()
    print(json.dumps({
        "applied": applied,
        "mmapped_blocks": held.hblks - before.hblks,
        "free_bytes_kept": freed.fordblks - before.fordblks,
        "size": size,
    }))
    """
)


def probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="keep_freed_memory only acts on glibc")
def test_glibc_serves_large_blocks_from_the_heap_and_keeps_them_only_when_kept():
    default, kept = probe("default"), probe("keep")
    # By default a 64 MiB block is its own mmap, unmapped again on free: nothing stays in the heap.
    assert default["mmapped_blocks"] == 1 and default["free_bytes_kept"] < default["size"]
    # Kept, it comes from the heap (no mmap) and, once freed, stays there for the next allocation.
    assert kept["applied"] is True
    assert kept["mmapped_blocks"] == 0 and kept["free_bytes_kept"] >= kept["size"]


def test_keep_freed_memory_reports_whether_it_acted():
    assert keep_freed_memory() is GLIBC


@pytest.mark.parametrize("switch", [True, False])
def test_the_trainer_applies_the_settings_only_when_switched_on(monkeypatch, tmp_path, switch):
    import passk_exp.trainer as trainer

    calls = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append(True) or True)
    trainer.Trainer(compose(tiny_overrides(tmp_path, keep_freed_memory=str(switch).lower(), device="cpu")))
    assert calls == ([True] if switch else [])
