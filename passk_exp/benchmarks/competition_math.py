"""`math`: competition mathematics (MATH, MATH-500) with boxed answers and symbolic equivalence via math-verify.

Rows carry `problem` and either `answer` (MATH-500) or only `solution` (original MATH), whose last `\\boxed{}` is then
the reference. A completion is right when its last `\\boxed{}` (or, without one, the final answer math-verify finds in
it) is equivalent to the reference: 1/2 = 0.5 = \\dfrac{1}{2}, 2\\sqrt{2} = \\sqrt{8}, [1, 2) as an interval, and so on.
Named `competition_math` so that it never shadows the standard `math` module; the registry name is `math`. Tests use
tests/fixtures/math_mini.jsonl, written for this project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from passk_exp.benchmarks.answers import canonical_answer, last_boxed
from passk_exp.benchmarks.base import Problem, Record
from passk_exp.benchmarks.files import FileBenchmark, FileOptions
from passk_exp.benchmarks.mathcheck import score_math


@dataclass(frozen=True)
class MathOptions(FileOptions):
    """solution_field: the worked solution (few-shot replies; the reference's source when a row has no answer)."""

    dataset: str = "HuggingFaceH4/MATH-500"
    dataset_config: Optional[str] = None
    question_field: str = "problem"
    answer_field: str = "answer"
    solution_field: str = "solution"


class CompetitionMath(FileBenchmark):
    name = "math"
    Options = MathOptions
    verifier = staticmethod(score_math)

    def _row_record(self, row: dict[str, Any], split: str, index: int, where: str) -> Record:
        solution = row.get(self.options.solution_field)
        if row.get(self.options.answer_field) is not None:
            reference = str(row[self.options.answer_field]).strip()
        elif solution is not None and last_boxed(str(solution)) is not None:
            reference = last_boxed(str(solution))
        else:
            raise ValueError(
                f"{where}: no {self.options.answer_field!r} field and no \\boxed{{}} answer in "
                f"{self.options.solution_field!r}"
            )
        demo = str(solution) if solution is not None else f"The answer is $\\boxed{{{reference}}}$."
        return Record(
            id=f"math/{split}/{index}",
            question=self._field(row, self.options.question_field, where),
            answer=reference,
            demo=demo,
            meta={key: row[key] for key in ("level", "subject", "type") if key in row},
        )

    def final_answer(self, problem: Problem, completion: str) -> Optional[str]:
        """The last `\\boxed{}` answer `score_math` checks first (numbers canonical, LaTeX verbatim: two spellings of
        one expression count as two answers). A completion without a box gives None: math-verify's fallback extraction
        is a sympy parse, too slow to run on every eval sample for a diversity count."""
        boxed = last_boxed(completion)
        return canonical_answer(boxed) if boxed is not None else None
