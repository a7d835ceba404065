"""Multiple-choice STEM questions in MMLU-Pro's format (`TIGER-Lab/MMLU-Pro`: question, options, answer letter,
category): the prompt lists the lettered options, a candidate is correct (1) when the letter it commits to
(`verifiers/choice.py`, strict) is the answer, else 0. Pairs: correct vs incorrect, as math."""

from typing import Any

from datasets import Value

from reward_transfer.domains import Domain, binary_level
from reward_transfer.verifiers.choice import LETTERS, extract_choice


def problem_text(question: str, options: list[str]) -> str:
    """The question with its lettered options: what the model answers and the reward model judges."""
    return question.strip() + "\n\nOptions:\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def read(row: dict, columns: dict[str, str]) -> tuple[str | None, Any, str]:
    question, options, answer = row[columns["problem"]], row[columns["options"]], row[columns["answer"]]
    if not isinstance(question, str) or not question.strip():
        return None, None, "empty problem text"
    if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS) or not all(
            isinstance(o, str) and o.strip() for o in options):
        return None, None, f"{columns['options']} is not a list of 2 to {len(LETTERS)} option texts"
    if not isinstance(answer, str) or answer.strip() not in LETTERS[:len(options)]:
        return None, None, f"{columns['answer']} is not the letter of one of the options"
    return problem_text(question, options), {"answer": answer.strip(), "options": list(options)}, ""


def label(flat: list[tuple[Any, int, str]], verifier_cfg: Any) -> list[dict]:
    rows = []
    for problem, _, response in flat:
        choice = extract_choice(response, problem.reference["options"])
        correct = choice == problem.reference["answer"]
        rows.append({"score": float(correct), "correct": correct, "answer": choice or "",
                     "reference": problem.reference["answer"]})
    return rows


def solutions(row: dict, columns: dict[str, str], reference: Any) -> list[str]:
    """MMLU-Pro's chain of thought where it has one, ending with the boxed letter; else the boxed letter alone."""
    thought = row.get(columns["explanation"])
    answer = f"The answer is \\boxed{{{reference['answer']}}}."
    return [f"{thought.strip()}\n\n{answer}" if isinstance(thought, str) and thought.strip() else answer]


DOMAIN = Domain(
    name="mcq",
    columns={"problem": "question", "options": "options", "answer": "answer", "category": "category",
             "explanation": "cot_content"},
    required=("problem", "options", "answer"),
    read=read,
    label=label,
    candidate_features={"answer": Value("string"), "reference": Value("string")},
    level=binary_level,
    solutions=solutions,
    solution_role="explanation",
)
