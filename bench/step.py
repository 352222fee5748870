"""Time N RL steps of the harness: `python bench/step.py --steps N --json PATH [Hydra overrides]`.

Builds the same Trainer `python -m passk_exp` builds (same config, same code path), then runs `train_step` N times on
the benchmark's train stream with tracking, evaluation and checkpoints out of the way, and writes JSON with one value
per step for `step_s`, `generate_s`, `train_s` (update) and `score_s`, plus `peak_rss_gb`, `peak_gpu_gb` (CUDA's
`max_memory_allocated`, null without a GPU) and the resolved precision.
`experiment=trl_parity` selects the job bench/vs_trl.py compares with TRL's GRPOTrainer.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (allocator, caches)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=trl_parity precision=fp32")
    args = parser.parse_args(argv)

    import torch
    from hydra import compose, initialize_config_dir

    from passk_exp.config import register_schema, validate_config
    from passk_exp.paths import conf_dir
    from passk_exp.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    register_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*args.overrides, "tracking.enabled=false", "quiet=true"])
    validate_config(cfg)
    trainer = Trainer(cfg)
    stream = trainer.bench.train_stream(cfg.seed)
    record: dict = {"step_s": [], "generate_s": [], "score_s": [], "train_s": [], "reward_mean": []}
    for index in range(args.warmup + args.steps):
        problems = [next(stream) for _ in range(cfg.train.prompts_per_step)]
        started = time.perf_counter()
        metrics = trainer.train_step(problems)
        elapsed = time.perf_counter() - started
        trainer.step += 1
        if index < args.warmup:
            continue
        record["step_s"].append(elapsed)
        record["generate_s"].append(metrics["train/generate_s"])
        record["score_s"].append(metrics["train/score_s"])
        record["train_s"].append(metrics["train/update_s"])
        record["reward_mean"].append(metrics["train/reward_mean"])
    trainer.bench.close()
    record.update(
        precision=trainer.precision,
        shared_prefix=trainer.shared_prefix,
        threads=torch.get_num_threads(),
        overrides=list(args.overrides),
        peak_rss_gb=peak_rss_gb(),
        peak_gpu_gb=torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None,
        median_step_s=statistics.median(record["step_s"]),
    )
    print(
        f"precision={record['precision']} shared_prefix={record['shared_prefix']} "
        f"median step {record['median_step_s']:.2f}s (generate {statistics.median(record['generate_s']):.2f}s, "
        f"train {statistics.median(record['train_s']):.2f}s), peak RSS {record['peak_rss_gb']:.2f} GB"
    )
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
