"""Code (APPS): the reference is the problem's test cases; a candidate scores the share of tests it passes, run in
the project's sandbox."""

import json
from typing import Any

from datasets import Value

from reward_transfer.domains import Domain


def parse_tests(raw: Any) -> dict | None:
    """APPS `input_output` (a JSON string or an already parsed dict) → tests, or None when unusable."""
    if isinstance(raw, str):
        from reward_transfer.verifiers import exact_json

        try:
            raw = exact_json.loads(raw)
        except (ValueError, RecursionError):  # malformed, or nested beyond the parser's depth
            return None
    if not isinstance(raw, dict):
        return None
    inputs, outputs = raw.get("inputs"), raw.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or not inputs or len(inputs) != len(outputs):
        return None
    tests = {"inputs": inputs, "outputs": outputs}
    if raw.get("fn_name"):
        if not isinstance(raw["fn_name"], str):
            return None
        tests["fn_name"] = raw["fn_name"]
    return tests


def read(row: dict, columns: dict[str, str]) -> tuple[str | None, Any, str]:
    tests = parse_tests(row[columns["tests"]])
    return row[columns["problem"]], tests, "" if tests else f"{columns['tests']} is not valid JSON with test cases"


def extend_prompt(prompt: str, row: dict, columns: dict[str, str], prompt_cfg: Any) -> str:
    """Append the starter code (call-based APPS problems) through `prompt.starter_code_template`."""
    from reward_transfer.generation.problems import read_template

    starter = row.get(columns["starter_code"])
    template = read_template(prompt_cfg.starter_code_template, "prompt.starter_code_template")
    if isinstance(starter, str) and starter.strip() and template:
        prompt += template.replace("{starter_code}", starter).rstrip()
    return prompt


def label(flat: list[tuple[Any, int, str]], verifier_cfg: Any) -> list[dict]:
    from reward_transfer.verifiers.code import extract_code, run_tests_batch

    codes = [extract_code(response) for _, _, response in flat]
    results = run_tests_batch(codes, [problem.reference for problem, _, _ in flat], workers=verifier_cfg.workers,
                              timeout_s=verifier_cfg.code_timeout_s, memory_mb=verifier_cfg.code_memory_mb)
    return [{"score": result.score, "correct": result.all_passed, "passed": result.passed, "total": result.total}
            for result in results]


def solutions(row: dict, columns: dict[str, str], reference: Any) -> list[str]:
    """APPS's `solutions` (a JSON list of programs) as the fenced Python block a candidate answers with."""
    raw = row.get(columns["solutions"])
    try:
        programs = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return []
    if not isinstance(programs, list):
        return []
    return [f"```python\n{program.strip()}\n```" for program in programs if isinstance(program, str) and program.strip()]


def level(score: float) -> str:
    return "pass" if score >= 1.0 else "fail" if score <= 0.0 else "partial"


DOMAIN = Domain(
    name="code",
    columns={"problem": "question", "tests": "input_output", "starter_code": "starter_code", "solutions": "solutions"},
    required=("problem", "tests"),
    read=read,
    label=label,
    candidate_features={"passed": Value("int64"), "total": Value("int64")},
    level=level,
    extend_prompt=extend_prompt,
    solutions=solutions,
    solution_role="solutions",
)
