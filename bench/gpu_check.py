"""Check and time the GPU path on a CUDA machine: `python bench/gpu_check.py --tokenizer DIR --out DIR`.

Made for a lent GPU machine that has torch and transformers but no hub access and no room for the embedded model's
weights, so every model here is randomly initialised from a config with the real SmolLM2 tokenizer (`--tokenizer`, a
save_pretrained directory; `python bench/gpu_check.py --export-tokenizer DIR` writes one from the embedded model).
Random weights are fine for what is checked: the same numbers on CUDA as on CPU, and how long a step takes.

  1. estimators: every registered method on CUDA (float32 and float64) equals the CPU float64 result, dtype and
     device kept;
  2. log-probs: shared-prefix vs plain forward on CUDA, fp32 (max |d log p|, relative gradient difference);
  3. the harness end to end: `python -m passk_exp` on CUDA with precision=auto (expects bf16), a few real steps
     with evaluation, tracking off (MLflow is checked on CPU by the tests);
  4. step time: bench/step.py on a Qwen2.5-0.5B-shaped model (24 layers, 896 wide), experiment=trl_parity's job,
     bf16 vs fp32 and shared-prefix vs plain, one JSON each;
  5. vLLM rollouts, only where `vllm` imports.
Prints a markdown summary; writes the JSON files under --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# Qwen2.5-0.5B's decoder shape (its own 151k vocabulary replaced by the SmolLM2 tokenizer's 49k).
HALF_B_SHAPE = dict(
    hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864
)
TINY_SHAPE = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64)


def export_tokenizer(target: Path) -> None:
    """Copy the embedded model's tokenizer (the harness's cached save_pretrained directory) to `target`."""
    import shutil

    from passk_exp.models import model_config
    from passk_exp.models.gguf import gguf_tokenizer_dir

    shutil.copytree(gguf_tokenizer_dir(model_config("smollm2_135m")), target, dirs_exist_ok=True)


def build_random_model(tokenizer_dir: Path, shape: dict, target: Path, seed: int = 0) -> Path:
    """A randomly initialised Llama of `shape` with the given tokenizer, saved as a source=local directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        max_position_embeddings=2048,
        **shape,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def check_estimators(device: str) -> dict:
    import torch

    from passk_exp.estimators import REGISTRY, compute_advantages

    generator = torch.Generator().manual_seed(0)
    binary = (torch.rand(64, 16, generator=generator, dtype=torch.float64) < 0.3).to(torch.float64)
    worst, failures = 0.0, []
    for method in sorted(REGISTRY):
        k = 1 if method in {"reinforce", "rloo", "grpo"} else 4
        params = {"ks": [1, 4, 16], "weights": [1.0, 1.0, 1.0]} if method == "passk_multi" else {}
        reference = compute_advantages(method, binary, k, **params)
        for dtype in (torch.float32, torch.float64):
            result = compute_advantages(method, binary.to(device, dtype), k, **params)
            if result.device.type != device or result.dtype != dtype:
                failures.append(f"{method}: {result.device}/{result.dtype}")
            tolerance = 1e-5 if dtype == torch.float32 else 1e-12
            difference = float((result.double().cpu() - reference).abs().max())
            worst = max(worst, difference) if dtype == torch.float32 else worst
            if difference > tolerance * max(1.0, float(reference.abs().max())):
                failures.append(f"{method} {dtype}: max |cuda - cpu| = {difference:.2e}")
    return {"methods": len(REGISTRY), "max_abs_diff_fp32": worst, "failures": failures}


def check_logprobs(model_dir: Path, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from logprobs_speed import make_batch, parity

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).train()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    batch = [t.to(device) for t in make_batch(tokenizer, groups=4, n=8, tokens=32)]
    torch.backends.cuda.matmul.allow_tf32 = False  # parity in true fp32
    max_dlogp, rel_dgrad = parity(model, batch)
    return {"max_abs_dlogp": max_dlogp, "rel_grad_diff": rel_dgrad}


def run(command: list[str], log: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    return code, time.perf_counter() - started


def model_overrides(model_dir: Path) -> list[str]:
    return ["model=qwen2.5_0.5b", "model.source=local", f"model.path={model_dir}", f"model.name={model_dir.name}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="a save_pretrained tokenizer directory (SmolLM2's)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--export-tokenizer", type=Path, help="write the embedded model's tokenizer here and stop")
    parser.add_argument("--device", default="cuda", help="cpu only to rehearse this script where there is no GPU")
    args = parser.parse_args()
    if args.export_tokenizer:
        export_tokenizer(args.export_tokenizer)
        return

    import torch
    import transformers

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible (torch.cuda.is_available() is False)")
    args.out.mkdir(parents=True, exist_ok=True)
    models = Path(os.environ.get("TMPDIR", "/tmp")) / "passk_gpu_models"
    report: dict = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bf16": torch.cuda.is_bf16_supported() if device == "cuda" else None,
    }
    print(f"# {report}", flush=True)
    report["estimators"] = check_estimators(device)
    print(f"estimators: {report['estimators']}", flush=True)

    tiny = build_random_model(args.tokenizer, TINY_SHAPE, models / "tiny_random")
    half_shape = HALF_B_SHAPE if device == "cuda" else TINY_SHAPE  # a CPU rehearsal keeps to the tiny shape
    half = build_random_model(args.tokenizer, half_shape, models / "llama_0.5b_random")
    report["logprobs_tiny"] = check_logprobs(tiny, device)
    report["logprobs_0.5b"] = check_logprobs(half, device)
    print(f"logprobs parity: tiny {report['logprobs_tiny']}, 0.5B-shaped {report['logprobs_0.5b']}", flush=True)

    e2e = [sys.executable, "-m", "passk_exp", *model_overrides(tiny), f"device={device}", "steps=3", "eval_every=2",
           "n_eval=8", "benchmark.eval_size=8", "save_every=2", f"checkpoint_dir={models / 'ckpt'}",
           "tracking.enabled=false", "quiet=true"]  # fmt: skip
    code, seconds = run(e2e, args.out / "e2e.log")
    report["e2e"] = {"exit": code, "seconds": round(seconds, 1)}
    print(f"harness e2e on CUDA: exit {code} in {seconds:.1f} s (log: e2e.log)", flush=True)

    rows = []
    for precision in ("bf16", "fp32"):
        for shared in ("true", "false"):
            name = f"step_{precision}_shared-{shared}.json"
            command = [sys.executable, "bench/step.py", "--steps", str(args.steps), "--warmup", "1", "--json", str(args.out / name),
                       "experiment=trl_parity", *model_overrides(half), f"device={device}", f"precision={precision}",
                       f"train.shared_prefix={shared}"]  # fmt: skip
            code, _ = run(command, models / name.replace(".json", ".log"))
            if code == 0:
                record = json.loads((args.out / name).read_text())
                median = lambda key: sorted(record[key])[len(record[key]) // 2]  # noqa: E731
                rows.append(f"| {precision} | {shared} | {median('step_s'):.3f} | {median('generate_s'):.3f} | "
                            f"{median('train_s'):.3f} |")  # fmt: skip
            else:
                rows.append(f"| {precision} | {shared} | failed (exit {code}) | | |")
                print((models / name.replace(".json", ".log")).read_text()[-3000:], flush=True)
    report["vllm_importable"] = importlib.util.find_spec("vllm") is not None
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print("\n| precision | shared prefix | median step s | generate s | update s |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"vllm importable: {report['vllm_importable']}")


if __name__ == "__main__":
    main()
