"""`gsm8k`: grade-school word problems (GSM8K train/test) with final-answer extraction and math-verify checking.

Rows carry `question` and `answer`, the worked solution ending in `#### <number>` (the reference is the text after
`####`; a row whose answer has no `####` is taken as the bare final answer). A completion's answer is its own `####`
line, else its last `\\boxed{}`, else its last number (`answers.final_answer`); it is compared exactly when both are
numbers and symbolically by math-verify otherwise. Rows come from `path=` or the Hub (`files.py`); no copy ships with a
package, so tests use tests/fixtures/gsm8k_mini.jsonl, written for this project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from passk_exp.benchmarks.answers import canonical_answer, hash_answer
from passk_exp.benchmarks.answers import final_answer as extract_final_answer
from passk_exp.benchmarks.base import Problem, Record
from passk_exp.benchmarks.files import FileBenchmark, FileOptions
from passk_exp.benchmarks.mathcheck import score_gsm8k


@dataclass(frozen=True)
class GSM8KOptions(FileOptions):
    dataset: str = "openai/gsm8k"
    dataset_config: Optional[str] = "main"


class GSM8K(FileBenchmark):
    name = "gsm8k"
    Options = GSM8KOptions
    verifier = staticmethod(score_gsm8k)

    def _row_record(self, row: dict[str, Any], split: str, index: int, where: str) -> Record:
        solution = self._field(row, self.options.answer_field, where)
        reference = hash_answer(solution) or solution.strip()
        reference = reference.replace(",", "") if reference.replace(",", "").lstrip("-").isdigit() else reference
        demo = solution if "####" in solution else f"#### {reference}"
        return Record(
            id=f"gsm8k/{split}/{index}",
            question=self._field(row, self.options.question_field, where),
            answer=reference,
            demo=demo,
        )

    def final_answer(self, problem: Problem, completion: str) -> Optional[str]:
        """The answer `score_gsm8k` checks: `####`, else the last boxed answer, else the last number."""
        answer = extract_final_answer(completion)
        return canonical_answer(answer) if answer is not None else None
