"""passk-exp: an experiment harness for Pass@K policy optimization of language models.

The math lives in `passk_exp.estimators`, `passk_exp.metrics` and `passk_exp.schedules` (pure torch /
numpy, no I/O); everything else (rollouts, verifiers, the RL step, MLflow tracking, the Hydra entry
point) is plumbing around it.
"""

__version__ = "0.1.0"
