"""Run by tests/test_distributed_on_cpu.py, as one process or under torchrun: three updates of the tiny model on fixed
batches, written (by rank 0) as loss, gradients and weights after each update, then a checkpoint written and restored,
for the test to compare.

Usage: python tests/distributed_update_worker.py OUT.pt STRATEGY WORK_DIR (STRATEGY is ignored by one process).

The batch is sampled with a fixed seed from the same weights on every rank, so one process and every rank see the same
rollouts; the rewards are fixed so that the first update is uneven (the second rank's groups are all uninformative:
it trains nothing while the first trains two micro-batches), the second trains every group with the `token_mean`
aggregation, and the third trains nothing (no optimizer step anywhere).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from conftest import compose, tiny_overrides

REWARDS = {
    "uneven": [[1, 0, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    "all_groups": [[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]],
    "nothing": [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
}


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().cpu().clone()


def main(out: Path, strategy: str, work: Path) -> None:
    from passk_exp.config import validate_config
    from passk_exp.trainer import Trainer

    cfg = compose(
        tiny_overrides(
            work,
            precision="fp32",
            device="cpu",
            keep_freed_memory="false",
            n=4,
            **{
                "train.prompts_per_step": 4,
                "train.micro_batch_groups": 1,
                "distributed.strategy": strategy,
                "tracking.enabled": "false",
            },
        )
    )
    validate_config(cfg)
    trainer = Trainer(cfg)
    dist = trainer.dist
    stream = trainer.bench.train_stream(cfg.seed)
    problems = [next(stream) for _ in range(cfg.train.prompts_per_step)]
    torch.manual_seed(123)  # the same rollouts on every rank and in one process
    batch = trainer.backend.generate([p.prompt for p in problems], cfg.n, trainer.sampling)
    mine = dist.shard(range(batch.groups))
    results = []
    for case, rewards in REWARDS.items():
        trainer.cfg.train.loss_agg = "token_mean" if case == "all_groups" else "constant"
        adv = trainer.advantages(torch.tensor(rewards, dtype=torch.float64), k=cfg.K).float()
        metrics = trainer.update(batch.select(mine), dist.own_groups(adv))
        named = list(trainer.model.named_parameters())
        grads = {name: _full(p.grad) for name, p in named if p.grad is not None}
        weights = {name: _full(p) for name, p in named}  # a collective under FSDP: every rank gathers
        results.append({"case": case, "metrics": metrics, "grads": grads, "weights": weights})
    # Checkpoint round trip: rank 0 writes the one-process format, every rank reads it back into its (sharded) copy
    # of weights and AdamW moments, which are zeroed first so that only the restore can bring them back.
    dist.save_checkpoint(work / "ckpt", trainer.model, trainer.optimizer, {"step": len(REWARDS)})
    saved = torch.load(work / "ckpt" / "last.pt", weights_only=False)
    with torch.no_grad():
        for param in trainer.model.parameters():
            param.zero_()
        for moments in trainer.optimizer.state.values():
            moments["exp_avg"].zero_()
    dist.restore(trainer.model, trainer.optimizer, saved)
    restored = {
        "weights": {name: _full(p) for name, p in trainer.model.named_parameters()},
        "exp_avg": [_full(trainer.optimizer.state[p]["exp_avg"]) for p in trainer.trainable],
    }
    if dist.is_main:
        checkpoint = {key: saved[key] for key in ("model", "optimizer", "rank_rng") if key in saved}
        torch.save(
            {"world_size": dist.world_size, "strategy": dist.strategy, "results": results, "checkpoint": checkpoint,
             "restored": restored},
            out,
        )
    dist.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
