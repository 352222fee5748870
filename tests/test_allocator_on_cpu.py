"""keep_freed_memory: a large tensor freed and allocated again reuses its pages instead of faulting them in anew."""

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from passk_exp.allocator import keep_freed_memory

# Each case runs in a child process: the malloc settings are process-wide, so the default case must start clean.
PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from passk_exp.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    torch.manual_seed(0)
    weight = torch.randn(576, 4096)
    faults = []
    for _ in range(6):  # a step's shape: activations of a few MiB to 32 MiB made, used and freed
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.randn(2048, 576)
        hidden = (x @ weight).relu_()
        (hidden @ weight.T * x).sum()
        del x, hidden
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"applied": applied, "faults": faults}))
    """
)


def probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_memory only acts on glibc")
def test_later_steps_reuse_freed_pages_only_when_kept():
    hidden_pages = 2048 * 4096 * 4 // 4096  # the largest tensor of a step: 32 MiB
    default, kept = probe("default"), probe("keep")
    assert kept["applied"] is True
    # By default every step maps its large tensors afresh: a page fault for every 4 KiB it touches, every step.
    assert min(default["faults"][2:]) > hidden_pages // 2
    # Kept, the first steps grow the heap and the later ones reuse it.
    assert max(kept["faults"][3:]) < hidden_pages // 50


def test_keep_freed_memory_reports_whether_it_acted():
    assert keep_freed_memory() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
