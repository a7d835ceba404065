"""Label candidates with the verifiers: math answer equivalence (1/0), code share of tests passed (0..1)."""

from collections.abc import Sequence

from reward_transfer.generation.problems import Problem


def label_candidates(problems: Sequence[Problem], responses: Sequence[Sequence[str]], domain: str,
                     verifier_cfg) -> list[dict]:
    """One record per candidate (problem order, then candidate order) with its score and correctness."""
    flat = [(problem, index, response) for problem, group in zip(problems, responses, strict=True)
            for index, response in enumerate(group)]
    labels = _label_math(flat, verifier_cfg) if domain == "math" else _label_code(flat, verifier_cfg)
    return [
        {"problem_id": problem.problem_id, "problem": problem.problem, "split": problem.split, "domain": domain,
         "candidate_index": index, "response": response, **label}
        for (problem, index, response), label in zip(flat, labels, strict=True)
    ]


def _label_math(flat: list[tuple[Problem, int, str]], verifier_cfg) -> list[dict]:
    from reward_transfer.verifiers.math import are_equivalent, extract_answer

    verdicts = are_equivalent([response for _, _, response in flat], [problem.reference for problem, _, _ in flat],
                              timeout_s=verifier_cfg.math_timeout_s, workers=verifier_cfg.workers)
    return [{"score": float(ok), "correct": bool(ok), "answer": extract_answer(response) or "",
             "reference": problem.reference}
            for (problem, _, response), ok in zip(flat, verdicts, strict=True)]


def _label_code(flat: list[tuple[Problem, int, str]], verifier_cfg) -> list[dict]:
    from reward_transfer.verifiers.code import extract_code, run_tests_batch

    codes = [extract_code(response) for _, _, response in flat]
    results = run_tests_batch(codes, [problem.reference for problem, _, _ in flat], workers=verifier_cfg.workers,
                              timeout_s=verifier_cfg.code_timeout_s, memory_mb=verifier_cfg.code_memory_mb)
    return [{"score": result.score, "correct": result.all_passed, "passed": result.passed, "total": result.total}
            for result in results]
