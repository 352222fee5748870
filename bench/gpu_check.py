"""The GPU check as one prepared script: `python bench/gpu_check.py --tokenizer DIR --out DIR [--budget-s 450]`.

Made for a lent GPU machine (torch and transformers there, no hub access, nothing to download, at most 64 MiB carried)
and sized to finish inside 8 minutes. Every model is randomly initialised from a config with the real SmolLM2
tokenizer (`--tokenizer`, a save_pretrained directory; `--export-tokenizer DIR` writes one here from the embedded
model). Random weights are fine for what is checked: agreement of numbers and how long a step takes. Sections run in
order of priority, each only if the time left (`--budget-s`) covers its estimate, so a slow machine loses the last
sections rather than the whole report; `report.json` is rewritten after every section.

  fsdp          issue 17 item 1: `torchrun --nproc_per_node 1 -m passk_exp` with distributed.strategy=fsdp over NCCL
                (FSDP2 on a 1-GPU mesh), a few real steps on the tiny random model; skipped where the tree has no
                `distributed` config section;
  sampling      item 2: the `gpu`-marked tests: rollout.cache=static_compiled samples from the logits the trainer's
                log-probs assume (tests/test_rollout_cache_on_cpu.py) and the estimators on CUDA;
  cache_speed   item 2: bench/step.py on the Qwen2.5-0.5B-shaped model, 8 prompts x 8 completions of 128 tokens, bf16,
                rollout.cache = dynamic | static_compiled (static on a CPU rehearsal); says which to turn on (the one
                with the lowest median step, if it beats dynamic by more than 10 %);
  vs_trl_*      item 4: bench/vs_trl.py --device cuda: TRL's GRPOTrainer (HF generate, bf16) against passk-exp on the
                same job, 0.5B-shaped full fine-tune, then 1.5B-shaped full and LoRA; median step and peak GPU memory;
                passk-exp uses the rollout.cache that cache_speed found to pay (named in the table's header line);
  e2e, logprobs the earlier checks: `python -m passk_exp` on CUDA end to end; shared-prefix log-prob parity.

Writes `report.json`, `summary.md` (the tables for bench/RESULTS.md) and `log.txt` (every child's output) under --out.
`--device cpu` rehearses the whole script on CPU with tiny shapes and few tokens (the figures mean nothing there).

On the device machine (TRL, datasets and the config libraries travel as wheels; `bash bench/gpu_payload.sh` puts them
and the tokenizer under .gpu/, which the run carries):
  python3 -m pip install -q --no-index --no-deps --no-compile --target .gpu/site .gpu/wheels/*.whl &&
  PYTHONPATH=.gpu/site PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --tokenizer .gpu/tokenizer --out $OUT/gpu_check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# Qwen2.5-0.5B / 1.5B decoder shapes (their own 151k vocabulary replaced by the SmolLM2 tokenizer's 49k).
HALF_B_SHAPE = dict(
    hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864
)
ONE_HALF_B_SHAPE = dict(
    hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, intermediate_size=8960
)
TINY_SHAPE = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64)
CACHES = ("dynamic", "static", "static_compiled")
PAYS = 0.9  # turn a cache mode on only if its median step is below 90 % of dynamic's


def export_tokenizer(target: Path) -> None:
    """Copy the embedded model's tokenizer (the harness's cached save_pretrained directory) to `target`."""
    import shutil

    from passk_exp.models import model_config
    from passk_exp.models.gguf import gguf_tokenizer_dir

    shutil.copytree(gguf_tokenizer_dir(model_config("smollm2_135m")), target, dirs_exist_ok=True)


def build_random_model(tokenizer_dir: Path, shape: dict, target: Path, device: str = "cpu", seed: int = 0) -> Path:
    """A randomly initialised Llama of `shape` with the given tokenizer, saved as a source=local directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        max_position_embeddings=2048,
        architectures=["LlamaForCausalLM"],
        **shape,
    )
    torch.manual_seed(seed)
    with torch.device(device):  # initialising 1.5B parameters is seconds on a GPU, much longer on the CPU
        model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def model_overrides(model_dir: Path) -> list[str]:
    return ["model=qwen2.5_0.5b", "model.source=local", f"model.path={model_dir}", f"model.name={model_dir.name}"]


def median(values: list[float]) -> float:
    return statistics.median(values)


class Check:
    """Runs sections against a time budget; children's output goes to one log; the report is saved after each."""

    def __init__(self, out: Path, budget_s: float, report: dict) -> None:
        self.out, self.budget_s, self.report = out, budget_s, report
        self.started = time.perf_counter()
        self.log = out / "log.txt"
        self.log.write_text("")

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def section(self, name: str, estimate_s: float, run: Callable[[], dict]) -> None:
        if self.left() < estimate_s:
            self.report[name] = {"skipped": f"time budget: {self.left():.0f} s left, the section needs ~{estimate_s:.0f} s"}
        else:
            started = time.perf_counter()
            try:
                result = run()
            except Exception as error:  # a failed section is a result; the later sections still run
                result = {"error": f"{type(error).__name__}: {error}"[-2000:]}
            result["seconds"] = round(time.perf_counter() - started, 1)
            self.report[name] = result
        print(f"{name}: {json.dumps(self.report[name])[:600]}", flush=True)
        (self.out / "report.json").write_text(json.dumps(self.report, indent=2))

    def command(self, title: str, argv: list[str], env: dict | None = None) -> int:
        """Run a child (its own output appended to log.txt); killed when the budget runs out."""
        with self.log.open("a") as handle:
            handle.write(f"\n===== {title}: {' '.join(argv)}\n")
            handle.flush()
            try:
                return subprocess.call(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                                       env={**os.environ, **(env or {})}, timeout=max(self.left(), 1))  # fmt: skip
            except subprocess.TimeoutExpired:
                handle.write(f"\n===== {title}: killed, time budget spent\n")
                return 124


# ------------------------------------------------------------------------------------------------------- sections
def fsdp_check(check: Check, tiny: Path, device: str, models: Path) -> dict:
    config = (REPO / "conf" / "config.yaml").read_text()
    if "\ndistributed:" not in config:
        return {"skipped": "this tree has no `distributed` config section (passk_exp/distributed.py not merged)"}
    backend = "nccl" if device == "cuda" else "gloo"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "passk_exp",
            *model_overrides(tiny), f"device={device}", "steps=3", "eval_every=0", "n_eval=4", "benchmark.eval_size=4",
            "save_every=2", f"checkpoint_dir={models / 'ckpt_fsdp'}", "tracking.enabled=false", "quiet=true",
            "distributed.strategy=fsdp", f"distributed.backend={backend}"]  # fmt: skip
    return {"exit": check.command("fsdp", argv), "backend": backend, "command": " ".join(argv[1:])}


def sampling_check(check: Check, tiny: Path) -> dict:
    argv = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
            "tests/test_rollout_cache_on_cpu.py"]  # fmt: skip
    code = check.command("gpu tests", argv, env={"PASSK_EXP_TEST_MODEL_DIR": str(tiny)})
    # pytest's last line ("2 passed" / "2 skipped"): exit 0 alone would not tell a pass from a skip
    outcome = [line for line in check.log.read_text().splitlines() if " in " in line and ("passed" in line or
               "skipped" in line or "failed" in line)][-1:]  # fmt: skip
    return {"exit": code, "pytest": outcome[0].strip("= ") if outcome else None, "tests": argv[-1]}


def step_record(check: Check, title: str, overrides: list[str], json_path: Path, steps: int, warmup: int) -> dict:
    argv = [sys.executable, "bench/step.py", "--steps", str(steps), "--warmup", str(warmup), "--json", str(json_path),
            *overrides]  # fmt: skip
    code = check.command(title, argv)
    if code != 0:
        return {"exit": code}
    record = json.loads(json_path.read_text())
    return {
        "median_step_s": median(record["step_s"]),
        "median_generate_s": median(record["generate_s"]),
        "median_update_s": median(record["train_s"]),
        "step_s": record["step_s"],
        "peak_gpu_gb": record.get("peak_gpu_gb"),
    }


def cache_speed(check: Check, model: Path, device: str, tokens: int, steps: int, models: Path) -> dict:
    # On the GPU: dynamic against static_compiled (static alone, uncompiled, did not pay on CPU; the budget is tight).
    # On CPU: dynamic against static (static_compiled is CUDA only).
    caches = ("dynamic", "static_compiled") if device == "cuda" else ("dynamic", "static")
    precision = "bf16" if device == "cuda" else "fp32"
    result: dict[str, Any] = {"tokens": tokens, "precision": precision}
    for cache in caches:
        overrides = ["experiment=trl_parity", *model_overrides(model), f"device={device}", f"precision={precision}",
                     f"rollout.max_new_tokens={tokens}", f"rollout.cache={cache}",
                     "train.skip_uninformative=false"]  # a random model's groups are all uninformative  # fmt: skip
        # two warm-up steps: the compiled mode compiles (and may recompile for a longer prompt) in them
        result[cache] = step_record(check, f"cache {cache}", overrides, models / f"cache_{cache}.json", steps, 2)
    timed = {c: result[c]["median_step_s"] for c in caches if "median_step_s" in result[c]}
    if "dynamic" in timed:
        best = min(timed, key=timed.get)
        turn_on = best if best != "dynamic" and timed[best] < PAYS * timed["dynamic"] else "dynamic"
        result["turn_on"] = turn_on
        result["verdict"] = (
            f"rollout.cache={turn_on}" + ("" if turn_on == "dynamic" else f" ({timed[turn_on] / timed['dynamic']:.2f}x "
                                          "dynamic's median step)")  # fmt: skip
        )
    return result


def vs_trl(
    check: Check, model: Path, device: str, tokens: int, steps: int, finetune: str, models: Path, cache: str
) -> dict:
    if importlib.util.find_spec("trl") is None:
        return {"skipped": "trl is not importable (carry the wheels of bench/gpu_payload.sh)"}
    markdown = models / f"vs_trl_{model.name}_{finetune}.md"
    markdown.unlink(missing_ok=True)
    argv = [sys.executable, "bench/vs_trl.py", "--device", device, "--model-dir", str(model), "--max-new-tokens",
            str(tokens), "--finetune", finetune, "--precisions", "bf16" if device == "cuda" else "fp32",
            "--steps", str(steps), "--warmup", "1", "--markdown", str(markdown), "--cache", cache]  # fmt: skip
    code = check.command(f"vs_trl {model.name} {finetune}", argv)
    return {"exit": code, "cache": cache, "markdown": markdown.read_text() if markdown.is_file() else None}


def e2e_check(check: Check, tiny: Path, device: str, models: Path) -> dict:
    argv = [sys.executable, "-m", "passk_exp", *model_overrides(tiny), f"device={device}", "steps=3", "eval_every=2",
            "n_eval=8", "benchmark.eval_size=8", "save_every=2", f"checkpoint_dir={models / 'ckpt'}",
            "tracking.enabled=false", "quiet=true"]  # fmt: skip
    return {"exit": check.command("e2e", argv)}


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


# --------------------------------------------------------------------------------------------------------- summary
def summary(report: dict) -> str:
    lines = [f"# gpu_check on {report['device']} ({report['date']}; torch {report['torch']}, transformers "
             f"{report['transformers']}, trl {report['trl']}, peft {report['peft']})", ""]  # fmt: skip
    for name in ("fsdp", "sampling", "e2e"):
        lines.append(f"- {name}: {json.dumps(report.get(name))}")
    speed = report.get("cache_speed", {})
    lines += ["", "| rollout.cache | median step s | generate s | update s | peak GPU GiB |", "|---|---:|---:|---:|---:|"]
    for cache in CACHES:
        row = speed.get(cache)
        if row and "median_step_s" in row:
            gpu = f"{row['peak_gpu_gb']:.2f}" if row.get("peak_gpu_gb") is not None else "-"
            lines.append(f"| {cache} | {row['median_step_s']:.3f} | {row['median_generate_s']:.3f} | "
                         f"{row['median_update_s']:.3f} | {gpu} |")  # fmt: skip
        elif row:
            lines.append(f"| {cache} | failed: {json.dumps(row)} | | | |")
    lines.append(f"\nverdict: {speed.get('verdict', 'none (dynamic did not run)')}")
    for name in ("vs_trl_0.5b_full", "vs_trl_1.5b_full", "vs_trl_1.5b_lora"):
        section = report.get(name, {})
        lines += ["", f"## {name}", section.get("markdown") or json.dumps(section)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="a save_pretrained tokenizer directory (SmolLM2's)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop starting sections after this many seconds")
    parser.add_argument("--export-tokenizer", type=Path, help="write the embedded model's tokenizer here and stop")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu only to rehearse this script")
    args = parser.parse_args()
    if args.export_tokenizer:
        export_tokenizer(args.export_tokenizer)
        return
    if args.tokenizer is None or not (args.tokenizer / "tokenizer_config.json").is_file():
        parser.error(f"--tokenizer={args.tokenizer} is not a save_pretrained tokenizer directory (--export-tokenizer)")

    import datetime
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible (torch.cuda.is_available() is False)")
    args.out.mkdir(parents=True, exist_ok=True)
    models = Path(os.environ.get("TMPDIR", "/tmp")) / "passk_gpu_models"
    models.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (rehearsal: figures mean nothing)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        **{name: installed(name) for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets")},
        "cuda": torch.version.cuda,
        "vllm_importable": importlib.util.find_spec("vllm") is not None,
    }
    print(f"# {report}", flush=True)
    check = Check(args.out, args.budget_s, report)
    gpu = device == "cuda"
    tokens, steps = (128, 3) if gpu else (8, 2)
    half_shape, big_shape = (HALF_B_SHAPE, ONE_HALF_B_SHAPE) if gpu else (TINY_SHAPE, TINY_SHAPE)

    tiny = build_random_model(args.tokenizer, TINY_SHAPE, models / "tiny_random", device)
    check.section("fsdp", 40, lambda: fsdp_check(check, tiny, device, models))
    check.section("sampling", 60, lambda: sampling_check(check, tiny))
    half = build_random_model(args.tokenizer, half_shape, models / "qwen0.5b_shaped_random", device)
    check.section("cache_speed", 120, lambda: cache_speed(check, half, device, tokens, steps, models))
    # passk-exp runs the rollout.cache the speed section found fastest (dynamic, the default, if none paid)
    cache = report["cache_speed"].get("turn_on", "dynamic")
    check.section("vs_trl_0.5b_full", 90, lambda: vs_trl(check, half, device, tokens, steps, "full", models, cache))
    big = build_random_model(args.tokenizer, big_shape, models / "qwen1.5b_shaped_random", device)
    check.section("vs_trl_1.5b_full", 100, lambda: vs_trl(check, big, device, tokens, steps, "full", models, cache))
    check.section("vs_trl_1.5b_lora", 100, lambda: vs_trl(check, big, device, tokens, steps, "lora", models, cache))
    check.section("e2e", 30, lambda: e2e_check(check, tiny, device, models))
    check.section("logprobs", 20, lambda: {"tiny": check_logprobs(tiny, device), "0.5b": check_logprobs(half, device)})
    report["total_s"] = round(time.perf_counter() - check.started, 1)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    (args.out / "summary.md").write_text(summary(report))
    print(summary(report), flush=True)


if __name__ == "__main__":
    main()
