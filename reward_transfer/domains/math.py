"""Math (NuminaMath-CoT): the reference is the solution's \\boxed{} answer; a candidate is correct (1) or not (0)."""

from collections import Counter
from typing import Any

from datasets import Value

from reward_transfer.domains import Domain, binary_level


def read(row: dict, columns: dict[str, str]) -> tuple[str | None, Any, str]:
    """The problem text and its reference answer, or why the problem has none to compare with."""
    from reward_transfer.verifiers.math import extract_answer, reference_problem

    text, solution = row[columns["problem"]], row[columns["solution"]]
    if not isinstance(solution, str):
        return text, None, "solution is not text"
    answer = extract_answer(solution)
    if answer is None or not str(answer).strip():
        return text, None, "reference has no \\boxed{} answer"
    reason = reference_problem(text, answer)
    return (text, None, reason) if reason else (text, answer, "")


def check_references(rows: list[tuple], verifier_cfg: Any, skipped: Counter) -> list[tuple]:
    """Keep the problems whose reference answer parses to a value (checked in the verifier's time-limited workers)."""
    from reward_transfer.verifiers.math import references_parse

    parsed = references_parse([row[3] for row in rows], verifier_cfg.math_timeout_s, verifier_cfg.workers)
    if parsed.count(False):
        skipped["answer does not parse"] += parsed.count(False)
    return [row for row, ok in zip(rows, parsed, strict=True) if ok]


def label(flat: list[tuple[Any, int, str]], verifier_cfg: Any) -> list[dict]:
    from reward_transfer.verifiers.math import are_equivalent, extract_answer

    verdicts = are_equivalent([response for _, _, response in flat], [problem.reference for problem, _, _ in flat],
                              timeout_s=verifier_cfg.math_timeout_s, workers=verifier_cfg.workers)
    return [{"score": float(ok), "correct": bool(ok), "answer": extract_answer(response) or "",
             "reference": problem.reference}
            for (problem, _, response), ok in zip(flat, verdicts, strict=True)]


def solutions(row: dict, columns: dict[str, str], reference: Any) -> list[str]:
    """NuminaMath's worked solution (it ends with the \\boxed{} answer the verifier compares)."""
    solution = row[columns["solution"]]
    return [solution] if isinstance(solution, str) and solution.strip() else []


DOMAIN = Domain(
    name="math",
    columns={"problem": "problem", "solution": "solution"},
    required=("problem", "solution"),
    read=read,
    label=label,
    candidate_features={"answer": Value("string"), "reference": Value("string")},
    level=binary_level,
    check_references=check_references,
    solutions=solutions,
)
