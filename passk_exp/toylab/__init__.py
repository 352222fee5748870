"""The toy lab: Pass@K methods on policies small enough that every objective and gradient is exact (issue 8).

`python -m passk_exp.toylab [method=... K=... schedule=... regularizer=... toylab_population=...]` trains one toy run
(train.py) and logs it to MLflow with the LLM harness's tags and metric names; `task=diagnose` measures every
estimator's bias and variance against exact gradients instead (diagnostics.py, report.py). The populations are a
tabular softmax over problems with known correct-answer sets (tabular.py) and a Gaussian policy rewarded by closeness
to a target (gaussian.py); targets.py states what each method's expected gradient should equal. The estimators are
never re-implemented here: every advantage comes from `passk_exp.estimators.compute_advantages`.
"""
